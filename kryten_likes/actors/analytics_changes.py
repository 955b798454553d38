"""How each analytics change moves the documents: plays, queue events, applies.

Theory of operation
-------------------
The counter writer stores analytics changes in groups (one atomic batch per
group, like likes). A ``Draft`` holds working copies of the documents a group
touches, each with the revision it expects; every change below edits the
draft and adds what must happen once the group has landed (acks, replies,
progress for the apply actor).

Queue events and our own applies meet here. Before the apply actor asks the
bridge to queue an item it says so (``EnqueueStarted``), so a queue event for
that media can be recognised whether it comes before or after the bridge's
answer (counted per media, so two applies of one item expect two events):

================  ======================================  ==================
queue event for   when                                    effect
================  ======================================  ==================
media M           an expectation for M is live            consume it, no count
media M           an enqueue of M is in flight            note it *early*, no count
media M           otherwise                               count (someone else queued it)
================  ======================================  ==================

A confirmed enqueue counts the item once, and either consumes an early event
of M or leaves an expectation (live for ``EXPECT_SECONDS``). Expectations
and early events live in ``ns/{ns}/queue/expected``, stored in the same batch
as the counts, so a crash cannot separate them. An early event whose enqueue
died with the daemon is counted at the next start (``recover``). Each apply
records in its playlist document how many of its items are counted
(``applying``), so a confirmation sent twice (after a writer restart) counts
once; the first counted item also adds 1 to ``apply_count``.
"""

from __future__ import annotations

from collections.abc import Callable

from .. import wire
from ..clock import iso
from ..messages import (
    ApplyFinished, ApplyProgress, EnqueueRefused, Media, PlayStarted, QueueConfirmed, QueueObserved,
)
from ..effects import AckEvent
from ..store.values import StoredEntry
from ..contract import fold_user
from ..store.keys import curator_key, global_key, item_key, now_playing_key, playlist_key
from ..store import documents as docs
from .counter_book import CounterBook
from .event_bodies import play_event
from .outbox import RECENT_PLAYS
from .window_counts import hour_label, hour_of

EXPECT_SECONDS = 600.0


def media_key(m: Media) -> str:
    return f"{m.media_type}:{m.video_id}"


def expectations_key(ns: str) -> str:
    return f"ns/{ns}/queue/expected"


class Draft:
    """Working copies of the analytics documents of one group."""

    def __init__(self, books: Callable[[str], CounterBook], group_id: str, now: float) -> None:
        self.book = books
        self.group_id = group_id
        self.now = now
        self.values: dict[str, dict] = {}
        self.expected: dict[str, int] = {}
        self.kinds: dict[str, tuple[str, str, str]] = {}  # key -> (ns, kind, id)
        self.after: list = []
        self.events: list[dict] = []  # bus events of the plays, once stored (actors/outbox.py)

    def _doc(self, key: str, kind: tuple[str, str, str], current: StoredEntry | None, fresh: Callable[[], dict]) -> dict:
        if key not in self.values:
            self.values[key] = dict(current.value) if current is not None and current.value else fresh()
            self.expected[key] = current.revision if current is not None else 0
            self.kinds[key] = kind
        return self.values[key]

    def global_(self, ns: str) -> dict:
        return self._doc(global_key(ns), (ns, "global", ""), self.book(ns).global_doc, docs.zero_global)

    def item(self, ns: str, vid: str) -> dict:
        return self._doc(item_key(ns, vid), (ns, "item", vid), self.book(ns).item_entry(vid), lambda: docs.new_item(vid))

    def playlist(self, ns: str, pid: str) -> dict:
        fresh = lambda: {"playlist_id": pid, "apply_count": 0, "last_applied_at": None,  # noqa: E731
                         "schema_version": docs.SCHEMA}
        return self._doc(playlist_key(ns, pid), (ns, "playlist", pid), self.book(ns).playlists.get(pid), fresh)

    def curator(self, ns: str, user: str, name: str) -> dict:
        fresh = lambda: {"user": user, "username": name, "plays": 0, "hours": {},  # noqa: E731
                         "schema_version": docs.SCHEMA}
        return self._doc(curator_key(ns, user), (ns, "curator", user), self.book(ns).curators.entry("analytics", user),
                         fresh)

    def expectations(self, ns: str) -> dict:
        fresh = lambda: {"expected": {}, "early": {}, "schema_version": docs.SCHEMA}  # noqa: E731
        return self._doc(expectations_key(ns), (ns, "expected", ""), self.book(ns).expectations, fresh)

    def set_now_playing(self, ns: str, value: dict) -> None:
        self._doc(now_playing_key(ns), (ns, "now_playing", ""), self.book(ns).now_playing, dict)
        self.values[now_playing_key(ns)] = value

    def __len__(self) -> int:
        return len(self.values)


def count_queued(d: Draft, ns: str, media: Media, seconds: int | None) -> None:
    item, g = d.item(ns, media.video_id), d.global_(ns)
    item["queue_count"] = int(item.get("queue_count", 0)) + 1
    item["last_queued_at"] = iso(d.now)
    if media.title:
        item.setdefault("title", media.title)
    g["items_queued"] = int(g.get("items_queued", 0)) + 1
    if seconds is not None:
        item["duration_seconds"] = seconds
        g["duration_queued_seconds"] = int(g.get("duration_queued_seconds", 0)) + seconds


def play(d: Draft, p: PlayStarted) -> None:
    seq = p.event.stream_seq if p.event is not None else None
    g = d.global_(p.namespace)
    d.book(p.namespace).advance(d.now)  # hours the month has left are not written again
    item = d.item(p.namespace, p.media.video_id)
    docs.count_play(item, g, p.media, p.at, seq)
    label = hour_label(hour_of(p.at))
    _add_hour(item, label)
    if p.curator:  # a play whose curator is unknown credits no one
        credit = d.curator(p.namespace, fold_user(p.curator), p.curator)
        credit["plays"] = int(credit.get("plays", 0)) + 1
        credit["updated_at"] = iso(d.now)
        _add_hour(credit, label)
    ev = play_event(f"{d.group_id}.p{len(d.events)}", p.namespace, p.media, p.curator,
                    d.book(p.namespace).like_count(p.media.video_id), item["play_count"], p.at)
    d.events.append(ev)
    np = d.values.get(now_playing_key(p.namespace)) or (d.book(p.namespace).now_playing or StoredEntry(0, None)).value
    recent = [*((np or {}).get("recent_plays") or ())][-(RECENT_PLAYS - 1):] + [ev]
    d.set_now_playing(p.namespace, {**docs.now_playing_value(p.media, p.at, int(g.get("last_event_seq", 0)),
                                                             d.group_id, p.curator), "recent_plays": recent})
    if p.event is not None:
        d.after.append(AckEvent(p.event))


def _add_hour(doc: dict, label: str) -> None:
    hours = doc["hours"] = dict(doc.get("hours") or {})
    hours[label] = hours.get(label, 0) + 1


def queue_seen(d: Draft, ns: str, q: QueueObserved, in_flight: int) -> None:
    ex = d.expectations(ns)
    k = media_key(q.media)
    live = [e for e in ex["expected"].get(k, []) if e[0] > d.now]
    if live:
        _expires, counted_seconds = live.pop(0)
        if not counted_seconds and q.media.duration_seconds is not None:
            _add_duration(d, ns, q.media)
    elif in_flight > len(ex["early"].get(k, [])):
        ex["early"].setdefault(k, []).append(q.media.duration_seconds)
    else:
        count_queued(d, ns, q.media, q.media.duration_seconds)
    _set(ex["expected"], k, live)
    if q.event is not None:
        g = d.global_(ns)
        g["last_queue_seq"] = max(int(g.get("last_queue_seq", 0)), q.event.stream_seq)
        d.after.append(AckEvent(q.event))


def _add_duration(d: Draft, ns: str, media: Media) -> None:
    item, g = d.item(ns, media.video_id), d.global_(ns)
    item["duration_seconds"] = media.duration_seconds
    g["duration_queued_seconds"] = int(g.get("duration_queued_seconds", 0)) + int(media.duration_seconds or 0)


def _set(table: dict, k: str, values: list) -> None:
    if values:
        table[k] = values
    else:
        table.pop(k, None)


def queue_confirmed(d: Draft, c: QueueConfirmed, in_flight: int) -> None:
    pl = d.playlist(c.namespace, c.playlist_id)
    applying = pl.setdefault("applying", {})
    counted = int(applying.get(c.apply_id, 0))
    ex = d.expectations(c.namespace)
    k = media_key(c.media)
    if c.index < counted:
        # Counted already (a confirmation said again after a writer restart).
        # Events noted early while it seemed in flight were someone else's.
        _settle_early(d, c.namespace, c.media, in_flight)
    else:
        early = ex["early"].get(k, [])
        seconds = c.media.duration_seconds
        if early:
            event_seconds = early.pop(0)
            seconds = seconds if seconds is not None else event_seconds
            _set(ex["early"], k, early)
        else:
            ex["expected"].setdefault(k, []).append([d.now + EXPECT_SECONDS, seconds is not None])
        count_queued(d, c.namespace, c.media, seconds)
        _settle_early(d, c.namespace, c.media, in_flight)
        if counted == 0:
            pl["apply_count"] = int(pl.get("apply_count", 0)) + 1
            pl["last_applied_at"] = iso(d.now)
        applying[c.apply_id] = c.index + 1
    d.after.append(ApplyProgress(c.apply_id, c.index))


def enqueue_refused(d: Draft, r: EnqueueRefused, in_flight: int) -> None:
    """An early event matched an enqueue that then failed: someone else queued it."""
    _settle_early(d, r.namespace, r.media, in_flight)


def _settle_early(d: Draft, ns: str, media: Media, in_flight: int) -> None:
    """No more early events than enqueues still in flight: the rest were queued
    by someone else, and count now."""
    ex = d.expectations(ns)
    k = media_key(media)
    early = ex["early"].get(k, [])
    while len(early) > in_flight:
        count_queued(d, ns, media, early.pop(0))
    _set(ex["early"], k, early)


def apply_finished(d: Draft, f: ApplyFinished) -> None:
    pl = d.playlist(f.namespace, f.playlist_id)
    pl.get("applying", {}).pop(f.apply_id, None)
    if not pl.get("applying"):
        pl.pop("applying", None)
    public = {k: v for k, v in pl.items() if k not in ("batch", "applying")}
    d.after.append(wire.ok(f.reply, enqueued_count=f.enqueued_count, failed=list(f.failed), playlist=public))


def recover(d: Draft, ns: str) -> None:
    """At start: early events whose enqueue died with the daemon were queued by
    the bridge and never confirmed to us; count them. Forget dead applies."""
    book = d.book(ns)
    ex = book.expectations.value if book.expectations is not None and book.expectations.value else None
    if ex and ex.get("early"):
        draft = d.expectations(ns)
        for k, early in list(draft["early"].items()):
            media_type, _, vid = k.partition(":")
            for seconds in early:
                count_queued(d, ns, Media(vid, media_type), seconds)
        draft["early"] = {}
    for pid, entry in book.playlists.items():
        if entry.value and entry.value.get("applying"):
            d.playlist(ns, pid).pop("applying", None)


def needs_recovery(book: CounterBook) -> bool:
    ex = book.expectations.value if book.expectations is not None and book.expectations.value else None
    return bool(ex and ex.get("early")) or any(e.value and e.value.get("applying") for e in book.playlists.values())


def reconcile(d: Draft, books: dict, in_flight: dict[tuple[str, str], int]) -> None:
    """Every namespace's early events, against the enqueues now in flight."""
    for ns, book in books.items():
        ex = book.expectations.value if book.expectations is not None and book.expectations.value else None
        for k in list((ex or {}).get("early", {})):
            media_type, _, vid = k.partition(":")
            _settle_early(d, ns, Media(vid, media_type), in_flight.get((ns, k), 0))
