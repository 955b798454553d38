"""What the daemon does before it serves: read both buckets into books and
live claims, ask the bridge what plays, choose the event loop and how often
the collector runs, and give back the memory the reading left free.
"""

from __future__ import annotations

import ctypes
import gc
import json
import importlib.util
import logging
from typing import Any

import attrs

from .actors.counter_book import CounterBook
from .actors.dedupe_ledger import LiveClaims
from .actors.like_journal import recover
from .clock import parse_iso
from .config import Config
from .event_marks import MARKS, EventStream, bind_marks
from .messages import Media
from .store import AtomicBucket, StoredEntry, decode_token, scan_each, split_key
from .store.schema import SchemaCheck
from .store.documents import zero_global

log = logging.getLogger(__name__)


@attrs.frozen
class Snapshot:
    books: dict[str, CounterBook]
    claims: LiveClaims


class SnapshotBuilder:
    """Keys as the scan finds them (``take``), into books and live claims
    (``done``): the start-up scan without its I/O."""

    def __init__(self, now: float, journal_identity: str | None = None) -> None:
        self.now = now
        self.journal_identity = journal_identity
        self.books: dict[str, CounterBook] = {}
        self.claims = LiveClaims()

    def take(self, key: str, entry: StoredEntry | None) -> None:
        split = split_key(key)
        if split is None:
            return
        ns, parts = split
        books, claims, now = self.books, self.claims, self.now
        if parts[0] == "dedupe" and len(parts) == 3:
            try:
                if entry is None or not entry.value:
                    claims.discard((ns, decode_token(parts[1]), decode_token(parts[2])))
                    return
                exp = parse_iso(entry.value["expires_at"])
                vid = entry.value.get("video_id") or decode_token(parts[1])
                user = entry.value.get("user") or decode_token(parts[2])
            except (KeyError, ValueError, TypeError, UnicodeError):
                return
            if exp > now:
                claims.add((ns, vid, user), exp)
        elif ns in books:
            books[ns].load(parts, entry)
        elif entry is not None:
            self._new_book(ns).load(parts, entry)

    def _new_book(self, ns: str) -> CounterBook:
        book = self.books[ns] = CounterBook(ns)
        book.advance(self.now)  # hours older than the month are dropped as documents load
        return book

    def done(self) -> Snapshot:
        recover(self.books, self.claims, self.now, self._new_book, self.journal_identity)  # journalled likes not stored yet
        for book in self.books.values():
            book.records.freeze()  # now, before the start-up heap is frozen and trimmed, not at the first query
        return Snapshot(self.books, self.claims)


async def load_snapshot(analytics: AtomicBucket, likes: AtomicBucket, now: float,
                        journal: AtomicBucket | None = None) -> Snapshot:
    """The buckets, read into books and live claims as the keys arrive."""
    builder = SnapshotBuilder(now, journal.identity if journal is not None else None)
    known = SchemaCheck()  # a document of a later schema stops the start (store/schema.py)
    for bucket in (analytics, likes, *((journal,) if journal is not None else ())):
        await scan_each(bucket, known.wrap(builder.take))
    known.raise_if_unknown()
    return builder.done()


def bound_to_stream(snapshot: Snapshot, ns: str, stream: EventStream) -> Snapshot:
    """The snapshot with the namespace's event marks bound to ``stream``
    (event_marks): a global document of another stream, or of none yet, gets
    the marks this stream needs, in memory; the next write of the document
    stores them, against the revision read."""
    book = snapshot.books.get(ns)
    if book is None:
        book = snapshot.books[ns] = CounterBook(ns)
    g = book.global_doc
    value = g.value if g is not None and g.value else zero_global()
    bound = bind_marks(value, stream)
    if bound != value:  # (a document of none yet always gains event_stream)
        if any(bound.get(m, 0) != value.get(m, 0) for m in MARKS):
            log.info("event marks of namespace %s now those of stream %s (id %s): events from %d",
                     ns, stream.name, stream.id,
                     min(bound.get("last_event_seq", 0), bound.get("last_queue_seq", 0)) + 1)
        book.global_doc = StoredEntry(g.revision if g is not None else 0, bound)
    return snapshot


async def bridge_now_playing(nc: Any, channel: str) -> Media | None:
    """What the bridge says plays now (its KV ``current``), if it says anything."""
    from kryten.kv_store import get_kv_store, kv_get  # kryten-py knows the bridge's bucket layout

    try:
        kv = await get_kv_store(nc, f"kryten_{channel}_playlist")
    except Exception:
        return None
    cur = await kv_get(kv, "current", default=None, parse_json=True)
    if not isinstance(cur, dict):
        return None
    media = cur.get("media") if isinstance(cur.get("media"), dict) else cur
    vid = media.get("id")
    if not isinstance(vid, str) or not vid:
        return None
    secs = media.get("seconds")
    return Media(vid, str(media.get("type") or ""), str(media.get("title") or ""),
                 int(secs) if isinstance(secs, (int, float)) and not isinstance(secs, bool) else None)


async def bridge_playlist(nc: Any, channel: str) -> tuple[list[tuple[str, Media, str | None]], str | None]:
    """The bridge's playlist (KV ``items``: uid, media, queueby) and the uid of
    the entry playing (``current.uid``): who curates what, before the next
    queue event. Nothing when the bridge keeps no such bucket."""
    from kryten.kv_store import get_kv_store, kv_get

    from .bridge_events import entry_uid, queue_observed

    try:
        kv = await get_kv_store(nc, f"kryten_{channel}_playlist")
        items = await kv_get(kv, "items", default=[], parse_json=True)
        cur = await kv_get(kv, "current", default=None, parse_json=True)
    except Exception:
        return [], None
    entries = []
    for item in items if isinstance(items, list) else []:
        q = queue_observed(json.dumps({"payload": {"item": item}}).encode(), None)  # the same rules as events
        if q is not None and q.uid is not None:
            entries.append((q.uid, q.media, q.queued_by))
    return entries, entry_uid(cur.get("uid")) if isinstance(cur, dict) else None


def give_back_free_memory() -> None:
    """Return the heap the start-up scan left free to the system (glibc keeps
    freed memory for reuse otherwise: a few MB of RSS for nothing). Only where
    the C library has ``malloc_trim``."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def loop_options(config: Config) -> dict:
    """anyio's asyncio options for ``[runtime] event_loop``: uvloop where it is
    installed and asked for; else the standard loop, said once."""
    if config.runtime.event_loop != "uvloop":
        return {"use_uvloop": False}
    if importlib.util.find_spec("uvloop") is None:
        log.info("uvloop is not installed here; running on asyncio's own event loop")
        return {"use_uvloop": False}
    return {"use_uvloop": True}


# CPython's collector looks at young objects every 700 new containers, and at
# the whole heap once it grew by a quarter, at most every 100 young looks.
# The daemon's garbage is freed by reference counting; what survives is state
# that stays (books, like records), so nearly every look finds nothing, and a
# growing heap is walked again and again: with likes spread over 10 000 new
# namespaces, 19 full collections took 4.2 s of the daemon's ~20 s. Looking
# 7x less often at young objects and 5x less often at the whole heap: 3
# full collections, 1.35 s, and 20-28 % less CPU per like in the cores'
# bench (12-20 % with one hot item). A young look then walks up to 5 000
# objects (< 1 ms), once per thousands of likes.
COLLECTOR_THRESHOLDS = (5000, 10, 50)


def collect_less_often() -> None:
    """The process's collector as the daemon wants it (``run``, before anything is read)."""
    gc.set_threshold(*COLLECTOR_THRESHOLDS)


def first_unstored(book: CounterBook | None) -> int:
    """The first event sequence not stored for both kinds (plays, queue events)."""
    g = book.global_value() if book is not None else {}
    return min(int(g.get("last_event_seq", 0)), int(g.get("last_queue_seq", 0))) + 1
