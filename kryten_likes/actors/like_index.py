"""Who liked what, newest first: the like records of one namespace, held as
compact columns for ``likers`` and ``user_likes``.

Theory of operation
-------------------
A like record (``ns/{ns}/liked.{item}.{user}``, docs/kv-schema.md) is a
user's latest counted like of an item. Here each record is two 8-byte
entries: ``liked_at << 32 | user id`` on its item's side and ``liked_at << 32
| item id`` on its user's side, each side's entries of one id sorted, so a
page newest first is read from the end, and a cursor is the entry a page
ended on. Ids are interned once per namespace.

Two layers, because most records are old:

- the *base*: the records read at start, in one flat array per side with
  each id's entries a sorted run in it (``offsets``: where each id's run
  starts). Built once (``freeze``), by bucketing what ``load`` staged: a
  million records are 16 MB of entries, with no object per item or user;
- the *recent*: records counted since start, a small sorted array per
  item that has any; on the users' side one 8-byte column entry per user,
  and an array only for a user with two or more (recent_by_user.py). A
  record taken out of the base (unliked, or liked again) is marked dead
  (``dead``: its item and user ids as one int) and skipped.

So the memory is the entries, plus an array object per item touched since
start and per user who liked twice since: a channel's day, not its
history. A page merges an
id's base run and recent array from the newest end. A user's records are
few (what one person liked), so "did this user like this item" is a scan
of theirs. A cursor names its namespace, its kind and its item or user, so
a cursor from another listing is refused, never followed.
"""

from __future__ import annotations

import base64
import bisect
import json
import sys
from array import array
from collections.abc import Callable

from ..clock import iso
from .recent_by_user import RecentByUser, remove_entry
from .run_columns import grouped_by, sorted_runs

MAX_TIME = 2**32 - 1
MASK = 0xFFFFFFFF
FORGOTTEN = -1  # a staged word that the pair has no record


class BadCursor(ValueError):
    """A cursor this listing did not hand out."""


def _seconds(t: float) -> int:
    """A time as an entry's high 32 bits hold it."""
    return min(max(int(t), 0), MAX_TIME)


class LikeIndex:
    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._user_id: dict[str, int] = {}
        self.users: list[str] = []  # folded, by id
        self.names: list[str] = []  # as first seen, by id
        self._item_id: dict[str, int] = {}
        self.items: list[str] = []  # video ids, by id
        self.given = array("q")  # likes_given, by user id
        self.user_rev = array("q")  # the revision of the user's totals document, by user id
        # Each part made when first needed: a namespace's book that never
        # sees a record holds none of them (a channel's namespaces may be
        # many; every object is one more for the collector to walk).
        # Staged by ``load`` until ``freeze``: (item id, user id, liked_at or
        # FORGOTTEN), in the order read; the last word on a pair wins.
        self._staged: tuple[array, array, array] | None = None
        self._frozen = False
        # The base, by side: one flat array, and where each id's run starts.
        self._base: dict[str, array] | None = None
        self._starts: dict[str, array] | None = None
        self._recent_items: dict[int, array] | None = None  # by item id
        self._recent_users: RecentByUser | None = None
        self.dead: set[int] | None = None  # item id << 32 | user id of base entries taken out

    def __len__(self) -> int:
        self.freeze()
        return (len(self._base["item"]) if self._base else 0) - len(self.dead or ()) + \
            sum(len(a) for a in (self._recent_items or {}).values())

    def _user(self, user: str, username: str) -> int:
        u = self._user_id.get(user)
        if u is None:
            u = self._user_id[user] = len(self.users)
            self.users.append(user)
            self.names.append(user if not username or username == user else username)  # one string when equal
            self.given.append(0)
            self.user_rev.append(0)
            if self._recent_users is not None:
                self._recent_users.add_user()
        return u

    def _item(self, video_id: str) -> int:
        i = self._item_id.get(video_id)
        if i is None:
            video_id = sys.intern(video_id)  # the item table's string (it interns its ids)
            i = self._item_id[video_id] = len(self.items)
            self.items.append(video_id)
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

    # --- the start: staged, then frozen into the base -------------------------------------

    def load(self, video_id: str, user: str, username: str, liked_at: float | None) -> None:
        """A record read at start (``liked_at`` None: there is none, or it
        was unliked). Before ``freeze``; after it, the same as ``liked``/``forget``."""
        if liked_at is None:
            self.forget(video_id, user)
            return
        if self._frozen:
            self.liked(video_id, user, username, liked_at)
            return
        if self._staged is None:
            self._staged = (array("L"), array("L"), array("q"))
        items, users, times = self._staged
        items.append(self._item(video_id))
        users.append(self._user(user, username))
        times.append(_seconds(liked_at))

    def freeze(self) -> None:
        """Build the base from what ``load`` staged (once; every other use
        freezes first). Bucketed by id in two passes: no sort of the whole."""
        if self._frozen:
            return
        self._frozen = True
        if self._staged is None:
            return
        items, users, times = self._staged
        self._staged = None
        # The last word on each pair: staged words grouped by item, in the
        # order read (a counting sort is stable); within an item, the last
        # word of each user. Sets only as large as one item's likers.
        by_item, starts = grouped_by(array("L", range(len(items))), items, len(self.items))
        keep_flags = bytearray(len(items))
        for x in range(len(self.items)):
            heard: set[int] = set()
            for n in range(starts[x + 1] - 1, starts[x] - 1, -1):
                k = by_item[n]
                if users[k] not in heard:
                    heard.add(users[k])
                    keep_flags[k] = times[k] != FORGOTTEN
        del by_item, starts
        keep = array("L", (k for k in range(len(items)) if keep_flags[k]))
        del keep_flags
        if not keep:
            return
        self._base, self._starts = {}, {}
        self._base["item"], self._starts["item"] = sorted_runs(keep, items, users, times, len(self.items))
        self._base["user"], self._starts["user"] = sorted_runs(keep, users, items, times, len(self.users))

    def _run(self, side: str, ident: int) -> tuple[int, int]:
        if self._starts is None:
            return 0, 0
        starts = self._starts[side]
        return (starts[ident], starts[ident + 1]) if ident + 1 < len(starts) else (0, 0)

    # --- changes ---------------------------------------------------------------------------

    def liked(self, video_id: str, user: str, username: str, liked_at: float) -> None:
        """A counted like: the user's record of the item is now this one."""
        self.freeze()
        i, u = self._item(video_id), self._user(user, username)
        self.forget(video_id, user)
        t = _seconds(liked_at)
        if self._recent_items is None:
            self._recent_items, self._recent_users = {}, RecentByUser(len(self.users))
        bisect.insort(self._recent_items.setdefault(i, array("Q")), t << 32 | u)
        self._recent_users.add(u, t << 32 | i)

    def forget(self, video_id: str, user: str) -> None:
        """The record is gone (unliked, or replaced by a newer like)."""
        i, u = self._item_id.get(video_id), self._user_id.get(user)
        if i is None or u is None:
            return  # nothing of the pair is known: no record to take out
        if not self._frozen:
            if self._staged is None:
                return  # nothing staged: nothing of the pair to take out
            items, users, times = self._staged
            items.append(i)
            users.append(u)
            times.append(FORGOTTEN)
            return
        mine = self._recent_users.entries(u) if self._recent_users is not None else ()
        old = next((e for e in mine if e & MASK == i), None)
        if old is not None:
            self._recent_users.remove(u, old)
            remove_entry(self._recent_items, i, (old >> 32) << 32 | u)
            return
        if self._base_entry(u, i) is not None:
            if self.dead is None:
                self.dead = set()
            self.dead.add(i << 32 | u)

    def _base_entry(self, u: int, i: int) -> int | None:
        """The user's live base entry of the item, if any."""
        if self.dead is not None and i << 32 | u in self.dead:
            return None
        lo, hi = self._run("user", u)
        if lo == hi:
            return None
        base = self._base["user"]
        return next((base[k] for k in range(lo, hi) if base[k] & MASK == i), None)

    def liked_at(self, video_id: str, user: str) -> int | None:
        self.freeze()
        i, u = self._item_id.get(video_id), self._user_id.get(user)
        if i is None or u is None:
            return None
        mine = self._recent_users.entries(u) if self._recent_users is not None else ()
        recent = next((e >> 32 for e in mine if e & MASK == i), None)
        if recent is not None:
            return recent
        e = self._base_entry(u, i)
        return e >> 32 if e is not None else None

    # --- pages -------------------------------------------------------------------------------

    def likers(self, video_id: str, limit: int, cursor: str | None) -> tuple[list[dict], str | None]:
        self.freeze()
        before = self._position(cursor, "item", video_id)
        i = self._item_id.get(video_id)
        page, more = self._page("item", i, limit, before, lambda e: i << 32 | (e & MASK))
        users = [{"username": self.names[e & MASK], "liked_at": iso(e >> 32)} for e in page]
        return users, self._cursor("item", video_id, page[-1]) if more else None

    def user_likes(self, user: str, limit: int, cursor: str | None) -> tuple[list[tuple[str, str]], str | None]:
        """``[(video_id, liked_at), …]`` newest first, and the next page's cursor."""
        self.freeze()
        before = self._position(cursor, "user", user)
        u = self._user_id.get(user)
        page, more = self._page("user", u, limit, before, lambda e: (e & MASK) << 32 | u)
        items = [(self.items[e & MASK], iso(e >> 32)) for e in page]
        return items, self._cursor("user", user, page[-1]) if more else None

    def _page(self, side: str, ident: int | None, limit: int, before: int | None,
              pair_of: Callable[[int], int]) -> tuple[list[int], bool]:
        """Up to ``limit`` live entries below ``before``, newest first, merged
        from the id's base run and its recent array; and whether more follow."""
        if ident is None:
            return [], False
        lo, hi = self._run(side, ident)
        base = self._base[side] if self._base is not None else array("Q")
        if self._recent_items is None:
            recent = ()
        elif side == "item":
            recent = self._recent_items.get(ident, ())
        else:
            recent = self._recent_users.entries(ident)
        j = hi if before is None else bisect.bisect_left(base, before, lo, hi)
        k = len(recent) if before is None else bisect.bisect_left(recent, before)
        dead = self.dead
        out: list[int] = []
        while len(out) <= limit and (j > lo or k > 0):
            if k > 0 and (j <= lo or recent[k - 1] > base[j - 1]):
                k -= 1
                out.append(recent[k])
            else:
                j -= 1
                if not dead or pair_of(base[j]) not in dead:
                    out.append(base[j])
        return out[:limit], len(out) > limit

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
