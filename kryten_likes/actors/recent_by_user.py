"""The like index's recent records on the users' side: most users counted
since start have liked one item since, so a user's one entry lives in a
flat column by user id, and only a user with more gets a sorted array of
their own.

An array per user was about 160 bytes each (the array object, its buffer,
its int key and dict slot): 16 MB after 100 000 users liked once. The
column is 8 bytes a user.
"""

from __future__ import annotations

import bisect
from array import array

# No entry. A real entry is ``liked_at << 32 | item id``: this one would be
# the 4 294 967 295th item of a namespace at the end of 2106.
NONE = 2**64 - 1


def remove_entry(arrays: dict[int, array], ident: int, entry: int) -> None:
    """Take ``entry`` out of ``ident``'s sorted array (the items' side's,
    and a user's with two or more); an emptied array goes."""
    a = arrays[ident]
    k = bisect.bisect_left(a, entry)
    if k < len(a) and a[k] == entry:
        del a[k]
    if not a:
        del arrays[ident]


class RecentByUser:
    def __init__(self, users: int) -> None:
        self._one = array("Q", [NONE]) * users  # by user id: their only entry
        self._more: dict[int, array] = {}  # users with two or more, sorted

    def add_user(self) -> None:
        self._one.append(NONE)

    def entries(self, u: int) -> array | tuple[int, ...]:
        """The user's entries, sorted."""
        more = self._more.get(u)
        if more is not None:
            return more
        e = self._one[u]  # (every user id has its slot: ``add_user``)
        return () if e == NONE else (e,)

    def add(self, u: int, entry: int) -> None:
        more = self._more.get(u)
        if more is not None:
            bisect.insort(more, entry)
            return
        e = self._one[u]
        if e == NONE:
            self._one[u] = entry
            return
        self._more[u] = array("Q", sorted((e, entry)))
        self._one[u] = NONE

    def remove(self, u: int, entry: int) -> None:
        if u not in self._more:
            if self._one[u] == entry:
                self._one[u] = NONE
            return
        remove_entry(self._more, u, entry)
        more = self._more[u]
        if len(more) == 1:  # back to the column: the array goes
            self._one[u] = more[0]
            del self._more[u]
