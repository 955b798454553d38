"""A namespace's book as the start-up scan fills it: one stored key at a
time (``CounterBook.load``), each into the part of the book that holds it.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

from ..clock import parse_iso
from ..store.documents import record_totals
from ..store.keys import decode_token
from ..store.values import StoredEntry
from .outbox import MAX_UNPUBLISHED

if TYPE_CHECKING:
    from .counter_book import CounterBook

RECENT_RECORDS = 2 * MAX_UNPUBLISHED


def load_key(book: CounterBook, parts: tuple[str, ...], entry: StoredEntry | None) -> None:
    """Take one scanned key (split by ``store.split_key``) of this namespace;
    ``entry`` None: the key was deleted while the scan ran."""
    v = (entry.value if entry is not None else None) or {}
    vid = v.get("video_id") if isinstance(v.get("video_id"), str) else None
    match parts:
        case ("counters", "global"):
            book.global_doc = entry
        case ("now_playing",):
            book.now_playing = entry
        case ("queue", "expected"):
            book.expectations = entry
        case ("requests", _, _):
            if entry is not None:
                book.requests.append(entry)
        case (record,) if record.startswith("liked."):
            _load_record(book, record, entry)
        case ("users", tok):
            user = v.get("user") if isinstance(v.get("user"), str) else decode_token(tok)
            # A store from before the totals rode on records.
            if entry is not None and isinstance(v.get("likes_given"), int):
                book.records.offer_totals(user, str(v.get("username") or user), v["likes_given"], entry.revision)
        case ("journal", _):
            if entry is not None and v:
                book.journal_entries.append((entry.revision, v))
        case ("journal_mark",):
            book.journal_mark = entry
        case ("events", "published"):
            book.event_marks = {b: v[b] for b in ("likes", "analytics") if type(v.get(b)) is int}
        case ("curators", tok):
            user = v.get("user") if isinstance(v.get("user"), str) else decode_token(tok)
            bucket = "likes" if "likes_received" in v else "analytics" if "plays" in v else None
            if bucket is not None:
                book.curators.take(bucket, user, entry)
        case ("items", tok):
            book.set_item(vid or decode_token(tok), entry)
        case ("items", tok, "likes"):
            book.set_likes(vid or decode_token(tok), entry)
        case ("playlists", tok):
            pid = v.get("playlist_id") if isinstance(v.get("playlist_id"), str) else None
            if entry is None:
                book.playlists.pop(pid or decode_token(tok), None)
            else:
                book.playlists[pid or decode_token(tok)] = entry


def _load_record(book: CounterBook, record: str, entry: StoredEntry | None) -> None:
    _, vtok, utok = record.split(".")
    v = (entry.value if entry is not None else None) or {}
    vid, user = decode_token(vtok), decode_token(utok)
    if v:
        _keep_recent(book, entry, v)
        totals = record_totals(v, user)
        if entry is not None and totals is not None:
            book.records.offer_totals(user, *totals, entry.revision)
    if not v or v.get("unliked_at"):
        book.records.forget(vid, user)
        return
    try:
        liked_at = parse_iso(v["liked_at"])
    except (KeyError, TypeError, ValueError):
        return  # a record we cannot read lists no one; the counts do not depend on it
    book.records.load(vid, user, str(v.get("username") or user), liked_at)
    if isinstance(v.get("curator"), str) and v["curator"]:
        book.curators.credited(vid, user, liked_at, v["curator"])


def _keep_recent(book: CounterBook, entry: StoredEntry | None, v: dict) -> None:
    """The records of highest revision: those a crash may have left
    unpublished are among them (the outbox bounds how many can be)."""
    if entry is None:
        return
    book.recent_n += 1
    item = (entry.revision, book.recent_n, v)
    if len(book.recent_records) < RECENT_RECORDS:
        heapq.heappush(book.recent_records, item)
    elif item[0] > book.recent_records[0][0]:
        heapq.heapreplace(book.recent_records, item)
