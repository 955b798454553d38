"""The counter documents of one namespace's items, held column by column.

A book knows every item its channel ever counted. Kept as decoded JSON, an
item (its item document and its likes document) costs CPython about 2 KB;
at 100 000 items that alone is 200 MB. Here each number is one slot of an
``array``, each id and title one string, and a document is built again only
when a query or a write asks for it. Titles are kept as UTF-8 in one
shared buffer (a string object costs 49 bytes before its first character).
About 200 bytes an item, most of it the id itself and the dict that finds it.

What comes back is what was stored, field for field, except the ``batch``
marker (only KV is asked about it, when an answer was lost, and every write
sets it anew). Fields this layout does not know, and known fields in a
shape it does not expect (a timestamp not in the layout's form), are kept
as they came, beside the row.
"""

from __future__ import annotations

import math
import sys
from array import array
from datetime import datetime, timezone

from ..clock import iso
from ..store.values import StoredEntry
from .title_buffer import NO_TITLE, TitleBuffer

NAN = float("nan")
NO_TIME = 0  # in a time column: null
NO_DURATION = -1
HAS_ITEM, HAS_LIKES, ITEM_DELETED, LIKES_DELETED = 1, 2, 4, 8

_ITEM_KNOWN = ("video_id", "play_count", "queue_count", "last_played_at", "last_queued_at", "duration_seconds",
               "schema_version", "title", "batch", "hours")
# ``hours`` is kept by the book's window counts, not here (counter_book).
_LIKES_KNOWN = ("video_id", "like_count", "updated_at", "schema_version", "title", "batch", "hours")


def _stamp(text: object) -> int | None:
    """A timestamp of the layout's form (``2025-12-18T12:34:56Z``) as seconds;
    None for anything else (kept as it came)."""
    if not isinstance(text, str) or len(text) != 20 or text[10] != "T" or text[19] != "Z":
        return None
    try:
        t = int(datetime.fromisoformat(text[:19]).replace(tzinfo=timezone.utc).timestamp())
    except ValueError:
        return None
    return t if 0 < t < 2**32 else None


def _count(v: object) -> int | None:
    return v if type(v) is int and v >= 0 else None


class ItemTable:
    def __init__(self) -> None:
        self.row: dict[str, int] = {}
        self.titles = TitleBuffer()
        self.item_title = array("Q")
        self.likes_title = array("Q")
        self.flags = bytearray()
        self.item_rev = array("q")
        self.play_count = array("q")
        self.queue_count = array("q")
        self.last_played = array("I")  # seconds since 1970; NO_TIME for null
        self.last_queued = array("I")
        self.duration = array("i")  # NO_DURATION for null
        self.likes_rev = array("q")
        self.like_count = array("q")
        self.likes_updated = array("I")
        self.odd: dict[tuple[int, str], dict] = {}  # (row, "item"|"likes") -> fields kept as they came
        self._garbage = 0  # bytes of titles no row names any more

    def __len__(self) -> int:
        return len(self.row)

    def every(self, column: array):
        """(video_id, value) for every row of a column."""
        return ((vid, column[i]) for vid, i in self.row.items())

    def _row(self, video_id: str) -> int:
        i = self.row.get(video_id)
        if i is None:
            # Interned: the like index and the windows hold the same ids (one string, not three).
            i = self.row[sys.intern(video_id)] = len(self.row)
            self.flags.append(0)
            for col in (self.item_rev, self.play_count, self.queue_count, self.likes_rev, self.like_count,
                        self.item_title, self.likes_title, self.last_played, self.last_queued,
                        self.likes_updated):
                col.append(0)
            self.duration.append(NO_DURATION)
        return i

    # --- counts (what rankings and likes need, without building a document) ---------

    def likes_of(self, video_id: str) -> int:
        i = self.row.get(video_id)
        return self.like_count[i] if i is not None else 0

    def plays_of(self, video_id: str) -> int:
        i = self.row.get(video_id)
        return self.play_count[i] if i is not None else 0

    def title(self, video_id: str) -> str | None:
        i = self.row.get(video_id)
        if i is None:
            return None
        return self.titles.get(self.item_title[i]) or self.titles.get(self.likes_title[i]) or None

    def likes_revision(self, video_id: str) -> int:
        i = self.row.get(video_id)
        return self.likes_rev[i] if i is not None else 0

    # --- documents ------------------------------------------------------------------

    def set_item(self, video_id: str, entry: StoredEntry | None) -> None:
        if entry is None and video_id not in self.row:
            return
        i = self._row(video_id)
        odd: dict = {}
        if entry is None or entry.value is None:
            self.flags[i] = (self.flags[i] & ~(HAS_ITEM | ITEM_DELETED)) | (ITEM_DELETED if entry else 0)
            self.item_rev[i] = entry.revision if entry else 0
            self.play_count[i] = self.queue_count[i] = 0
            self.last_played[i] = self.last_queued[i] = NO_TIME
            self.duration[i] = NO_DURATION
            self._set_title(self.item_title, i, {}, {})
        else:
            v = entry.value
            self.flags[i] = (self.flags[i] & ~ITEM_DELETED) | HAS_ITEM
            self.item_rev[i] = entry.revision
            self.play_count[i] = self._int(v, "play_count", odd)
            self.queue_count[i] = self._int(v, "queue_count", odd)
            self.last_played[i] = self._time(v, "last_played_at", odd)
            self.last_queued[i] = self._time(v, "last_queued_at", odd)
            d = v.get("duration_seconds")
            if d is None:
                self.duration[i] = NO_DURATION
            elif type(d) is int and 0 <= d < 2**31:
                self.duration[i] = d
            else:
                self.duration[i] = NO_DURATION
                odd["duration_seconds"] = d
            self._set_title(self.item_title, i, v, odd)
            self._rest(video_id, v, _ITEM_KNOWN, odd)
        self._keep_odd(i, "item", odd)

    def set_likes(self, video_id: str, entry: StoredEntry | None) -> None:
        if entry is None and video_id not in self.row:
            return
        i = self._row(video_id)
        odd: dict = {}
        if entry is None or entry.value is None:
            self.flags[i] = (self.flags[i] & ~(HAS_LIKES | LIKES_DELETED)) | (LIKES_DELETED if entry else 0)
            self.likes_rev[i] = entry.revision if entry else 0
            self.like_count[i] = 0
            self.likes_updated[i] = NO_TIME
            self._set_title(self.likes_title, i, {}, {})
        else:
            v = entry.value
            self.flags[i] = (self.flags[i] & ~LIKES_DELETED) | HAS_LIKES
            self.likes_rev[i] = entry.revision
            self.like_count[i] = self._int(v, "like_count", odd)
            self.likes_updated[i] = self._time(v, "updated_at", odd)
            self._set_title(self.likes_title, i, v, odd)
            self._rest(video_id, v, _LIKES_KNOWN, odd)
        self._keep_odd(i, "likes", odd)

    def set_likes_written(self, video_id: str, revision: int, like_count: int, updated_at: float,
                          title: str | None) -> None:
        """A likes document this daemon wrote (``documents.likes_value``): the
        same row ``set_likes`` makes of it, without reading the shape back."""
        i = self._row(video_id)
        self.flags[i] = (self.flags[i] & ~LIKES_DELETED) | HAS_LIKES
        self.likes_rev[i] = revision
        self.like_count[i] = like_count
        self.likes_updated[i] = math.floor(updated_at)  # iso() writes whole seconds
        self._set_title(self.likes_title, i, {"title": title}, {})
        if self.odd:
            self.odd.pop((i, "likes"), None)

    def item(self, video_id: str) -> StoredEntry | None:
        i = self.row.get(video_id)
        if i is None:
            return None
        f = self.flags[i]
        if f & HAS_ITEM:
            v = {"video_id": video_id, "play_count": self.play_count[i], "queue_count": self.queue_count[i],
                 "last_played_at": self._iso(self.last_played[i]), "last_queued_at": self._iso(self.last_queued[i]),
                 "duration_seconds": None if self.duration[i] == NO_DURATION else self.duration[i],
                 "schema_version": 1}
            if self.item_title[i] != NO_TITLE:
                v["title"] = self.titles.get(self.item_title[i])
            v.update(self.odd.get((i, "item"), ()))
            return StoredEntry(self.item_rev[i], v)
        return StoredEntry(self.item_rev[i], None) if f & ITEM_DELETED else None

    def likes(self, video_id: str) -> StoredEntry | None:
        i = self.row.get(video_id)
        if i is None:
            return None
        f = self.flags[i]
        if f & HAS_LIKES:
            v = {"video_id": video_id, "like_count": self.like_count[i],
                 "updated_at": self._iso(self.likes_updated[i]), "schema_version": 1}
            if self.likes_title[i] != NO_TITLE:
                v["title"] = self.titles.get(self.likes_title[i])
            v.update(self.odd.get((i, "likes"), ()))
            return StoredEntry(self.likes_rev[i], v)
        return StoredEntry(self.likes_rev[i], None) if f & LIKES_DELETED else None

    # --- the shapes ---------------------------------------------------------------------

    @staticmethod
    def _int(v: dict, field: str, odd: dict) -> int:
        n = v.get(field, 0)
        if _count(n) is not None and n < 2**63:
            return n
        odd[field] = n  # kept as it came; counted as 0, as a reader of the layout would
        return 0

    @staticmethod
    def _time(v: dict, field: str, odd: dict) -> int:
        t = v.get(field)
        if t is None:
            return NO_TIME
        s = _stamp(t)
        if s is None:
            odd[field] = t
            return NO_TIME
        return s

    @staticmethod
    def _iso(t: int) -> str | None:
        return None if t == NO_TIME else iso(t)

    def _set_title(self, col: array, i: int, v: dict, odd: dict) -> None:
        t = v.get("title")
        if t is not None and (not isinstance(t, str) or len(t) >= 2**22):
            odd["title"] = t
            t = None
        h = self.titles.put(t)
        old = col[i]
        other = self.likes_title if col is self.item_title else self.item_title
        if old != h and old != NO_TITLE and other[i] != old:
            self._garbage += (old & 0xFFFFFF) - 1  # bytes no row names any more
        col[i] = h
        if self._garbage > 2**20 and 2 * self._garbage > len(self.titles):
            self.titles.repack([self.item_title, self.likes_title])
            self._garbage = 0

    @staticmethod
    def _rest(video_id: str, v: dict, known: tuple[str, ...], odd: dict) -> None:
        for k, x in v.items():
            if k not in known or (k == "schema_version" and x != 1) or (k == "video_id" and x != video_id):
                odd[k] = x

    def _keep_odd(self, i: int, doc: str, odd: dict) -> None:
        if odd:
            self.odd[(i, doc)] = odd
        else:
            self.odd.pop((i, doc), None)
