"""Who liked what, newest first: the like records of one namespace, held as
compact columns for ``likers`` and ``user_likes``.

Theory of operation
-------------------
A like record (``ns/{ns}/liked.{item}.{user}``, docs/kv-schema.md) is a
user's latest counted like of an item. Here each record is two 8-byte
entries: ``liked_at << 32 | user id`` in its item's array and ``liked_at <<
32 | item id`` in its user's array, each array sorted, so a page newest
first is a slice read from the end, and a cursor is the entry a page ended
on. Ids are interned once per namespace. At a million records over 100 000
items and 100 000 users that is 16 MB of entries and some 20 MB of arrays
holding them (an array is about 80 bytes before its first entry), against
some 200 MB as Python objects.

A user's array is short (the items one person liked), so "did this user
like this item before" is a scan of it; the item's old entry is then found
by bisection. A cursor names its namespace, its kind and its item or user,
so a cursor from another listing is refused, never followed.
"""

from __future__ import annotations

import base64
import bisect
import json
import sys
from array import array

from ..clock import iso

MAX_TIME = 2**32 - 1


class BadCursor(ValueError):
    """A cursor this listing did not hand out."""


def _entry(t: float, ident: int) -> int:
    return min(max(int(t), 0), MAX_TIME) << 32 | ident


class LikeIndex:
    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._user_id: dict[str, int] = {}
        self.users: list[str] = []  # folded, by id
        self.names: list[str] = []  # as first seen, by id
        self._item_id: dict[str, int] = {}
        self.items: list[str] = []  # video ids, by id
        # By id (a list, not a dict: 100 000 users cost 0.8 MB, not 5); None: no record.
        self._by_item: list[array | None] = []
        self._by_user: list[array | None] = []
        self.given = array("q")  # likes_given, by user id
        self.user_rev = array("q")  # the revision of the user's totals document, by user id

    def __len__(self) -> int:
        return sum(len(a) for a in self._by_item if a is not None)

    def _user(self, user: str, username: str) -> int:
        u = self._user_id.get(user)
        if u is None:
            u = self._user_id[user] = len(self.users)
            self.users.append(user)
            self._by_user.append(None)
            self.names.append(user if not username or username == user else username)  # one string when equal
            self.given.append(0)
            self.user_rev.append(0)
        return u

    def _item(self, video_id: str) -> int:
        i = self._item_id.get(video_id)
        if i is None:
            video_id = sys.intern(video_id)  # the item table's string (it interns its ids)
            i = self._item_id[video_id] = len(self.items)
            self.items.append(video_id)
            self._by_item.append(None)
        return i

    def name_of(self, user: str) -> str | None:
        u = self._user_id.get(user)
        return self.names[u] if u is not None else None

    def totals(self, user: str) -> tuple[int, int]:
        """``(likes_given, revision of the totals document)``; (0, 0) for a stranger."""
        u = self._user_id.get(user)
        return (self.given[u], self.user_rev[u]) if u is not None else (0, 0)

    def offer_totals(self, user: str, username: str, likes_given: int, revision: int) -> None:
        """Totals read from the store (a like record or an older store's
        ``users/`` document): the entry of highest revision holds them."""
        u = self._user(user, username)
        if revision > self.user_rev[u]:
            self.set_totals(user, username, likes_given, revision)

    def set_totals(self, user: str, username: str, likes_given: int, revision: int) -> None:
        u = self._user(user, username)
        if username and self.names[u] == user:  # the name as first seen, once a document says it
            self.names[u] = username
        self.given[u], self.user_rev[u] = likes_given, revision

    # --- changes ---------------------------------------------------------------------------

    def liked(self, video_id: str, user: str, username: str, liked_at: float) -> None:
        """A counted like: the user's record of the item is now this one."""
        i, u = self._item(video_id), self._user(user, username)
        self.forget(video_id, user)
        if self._by_item[i] is None:
            self._by_item[i] = array("Q")
        if self._by_user[u] is None:
            self._by_user[u] = array("Q")
        bisect.insort(self._by_item[i], _entry(liked_at, u))
        bisect.insort(self._by_user[u], _entry(liked_at, i))

    def forget(self, video_id: str, user: str) -> None:
        """The record is gone (unliked, or replaced by a newer like)."""
        i, u = self._item_id.get(video_id), self._user_id.get(user)
        if i is None or u is None or self._by_user[u] is None:
            return
        mine = self._by_user[u]
        old = next((e for e in mine if e & 0xFFFFFFFF == i), None)
        if old is None:
            return
        mine.remove(old)
        theirs = self._by_item[i]
        k = bisect.bisect_left(theirs, (old >> 32) << 32 | u)
        if k < len(theirs) and theirs[k] == (old >> 32) << 32 | u:
            del theirs[k]

    def liked_at(self, video_id: str, user: str) -> int | None:
        i, u = self._item_id.get(video_id), self._user_id.get(user)
        if i is None or u is None:
            return None
        return next((e >> 32 for e in self._by_user[u] or () if e & 0xFFFFFFFF == i), None)

    # --- pages -------------------------------------------------------------------------------

    def likers(self, video_id: str, limit: int, cursor: str | None) -> tuple[list[dict], str | None]:
        i = self._item_id.get(video_id)
        column = (self._by_item[i] if i is not None else None) or array("Q")
        page, more = self._page(column, limit, self._position(cursor, "item", video_id))
        users = [{"username": self.names[e & 0xFFFFFFFF], "liked_at": iso(e >> 32)} for e in page]
        return users, self._cursor("item", video_id, page[-1]) if more else None

    def user_likes(self, user: str, limit: int, cursor: str | None) -> tuple[list[tuple[str, str]], str | None]:
        """``[(video_id, liked_at), …]`` newest first, and the next page's cursor."""
        u = self._user_id.get(user)
        column = (self._by_user[u] if u is not None else None) or array("Q")
        page, more = self._page(column, limit, self._position(cursor, "user", user))
        items = [(self.items[e & 0xFFFFFFFF], iso(e >> 32)) for e in page]
        return items, self._cursor("user", user, page[-1]) if more else None

    @staticmethod
    def _page(column: array, limit: int, before: int | None) -> tuple[list[int], bool]:
        end = len(column) if before is None else bisect.bisect_left(column, before)
        start = max(0, end - limit)
        return list(reversed(column[start:end])), start > 0

    def _cursor(self, kind: str, subject: str, last: int) -> str:
        raw = json.dumps([self.namespace, kind, subject, last], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    def _position(self, cursor: str | None, kind: str, subject: str) -> int | None:
        if cursor is None:
            return None
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            ns, k, s, last = json.loads(raw)
        except (ValueError, TypeError):
            raise BadCursor("not a cursor this daemon handed out") from None
        if (ns, k, s) != (self.namespace, kind, subject) or type(last) is not int or not 0 <= last < 2**64:
            raise BadCursor("the cursor belongs to another listing")
        return last
