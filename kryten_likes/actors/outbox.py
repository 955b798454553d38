"""The counter writer's events between "stored" and "published".

Theory of operation
-------------------
Each counted like, unlike and play is published once durable, as a bus event
whose ``event_id`` was stored with the change (docs/contract-social-web.md,
"Events for other services"): a like's and an unlike's in the like record
(``event_id``, ``unlike_event_id``), a play's in the global document's
``recent_plays``. What a crash leaves unpublished is found again in KV by
its revision, so the outbox keeps one number per bucket, the **mark**: every
change stored at a KV revision at or below it has been published. The
writer stores it (``ns/{ns}/events/published``, a plain put, at most once a
second); a writer that starts reads the changes above it and publishes them
again (an ``event_id`` published twice is the same event: the stream's
duplicate window and the consumers drop the second).

The mark may only pass a revision once nothing at or below it can still be
unpublished:

- a landed group with events waits here until the shell says they are
  published (``published``); its lowest revision bounds the mark;
- a group in flight has no revisions yet, but a bucket's revisions grow: it
  will land above the highest revision seen when it was sent, so that bounds
  the mark too (``sent``).

A like record is written again only after its last event is published: the
record's key is *busy* until then (the committers wait, as for a document
in flight), so an event is never overwritten before it left. The number of
unpublished events is bounded (``MAX_UNPUBLISHED``): beyond it the writer
sends no new group of that kind, so the republish at start is bounded too.
"""

from __future__ import annotations

from collections import Counter

import attrs

from ..effects import PublishEvents

MAX_UNPUBLISHED = 2048  # likes and unlikes; plays: MAX_UNPUBLISHED_PLAYS
MAX_UNPUBLISHED_PLAYS = 16
RECENT_PLAYS = 32  # plays kept in the global document for a republish (> MAX_UNPUBLISHED_PLAYS)


@attrs.define
class Unpublished:
    bucket: str
    lowest: int  # the group's lowest revision (a restart's republish: the old mark + 1)
    keys: tuple[str, ...]  # record keys that wait for these events
    events: tuple[dict, ...]
    covers: int = 0  # a republish: the revision up to which it covers the bucket


class Outbox:
    def __init__(self, enabled: bool = False, marks: dict[str, int] | None = None) -> None:
        self.enabled = enabled
        self.last_landed: dict[str, int] = {"likes": 0, "analytics": 0, **(marks or {})}
        self.floors: dict[str, tuple[str, int]] = {}  # group in flight -> (bucket, lowest revision possible)
        self.waiting: dict[str, Unpublished] = {}  # group id -> its unpublished events
        self.busy: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()  # unpublished events by bucket
        self.stored_marks: dict[str, int] = dict(self.last_landed)

    # --- the writer's groups ---------------------------------------------------------------

    def sent(self, group_id: str, bucket: str) -> None:
        if self.enabled and bucket in self.last_landed:  # (not the journal: its likes hold the mark themselves)
            self.floors[group_id] = (bucket, self.last_landed[bucket] + 1)

    def finished(self, group_id: str, revisions: dict[str, int] | None) -> None:
        """A group's outcome (``revisions`` None: nothing of it was stored)."""
        hit = self.floors.pop(group_id, None)
        if hit is not None and revisions:
            self.last_landed[hit[0]] = max(self.last_landed[hit[0]], *revisions.values())

    def stored(self, group_id: str, bucket: str, lowest: int, keys: tuple[str, ...],
               events: tuple[dict, ...], covers: int = 0, fresh: bool = False) -> list[PublishEvents]:
        """A landed group's events: to be published; ``keys`` wait for them.
        ``covers``: a start's republish, of everything stored up to there.
        ``fresh``: never published before (not a republish)."""
        if not self.enabled:
            return []
        if not events:
            self.last_landed[bucket] = max(self.last_landed[bucket], covers)
            return []
        self.waiting[group_id] = Unpublished(bucket, lowest, keys, events, covers)
        self.busy.update(keys)
        self.counts[bucket] += len(events)
        return [PublishEvents(group_id, events, fresh)]

    def published(self, group_id: str) -> None:
        u = self.waiting.pop(group_id, None)
        if u is None:
            return  # an earlier life's, or said twice
        self.last_landed[u.bucket] = max(self.last_landed[u.bucket], u.covers)
        self.busy.subtract(u.keys)
        for k in u.keys:
            if self.busy[k] <= 0:
                del self.busy[k]
        self.counts[u.bucket] -= len(u.events)

    def again(self) -> list[PublishEvents]:
        """Everything not yet published, once more (the shell lost its tasks)."""
        return [PublishEvents(gid, u.events) for gid, u in self.waiting.items()]

    # --- what the committers ask ---------------------------------------------------------------

    def is_busy(self, key: str) -> bool:
        return key in self.busy

    def full(self, bucket: str, held: int = 0) -> bool:
        """``held``: events its caller keeps back for a later publish (counted too)."""
        limit = MAX_UNPUBLISHED if bucket == "likes" else MAX_UNPUBLISHED_PLAYS
        return self.counts[bucket] + held >= limit

    # --- the mark ------------------------------------------------------------------------------------

    def mark(self, bucket: str) -> int:
        lows = [low for b, low in self.floors.values() if b == bucket]
        lows += [u.lowest for u in self.waiting.values() if u.bucket == bucket]
        return min(lows) - 1 if lows else self.last_landed[bucket]

    def marks_to_store(self) -> dict[str, int] | None:
        """The marks, when they moved since last stored."""
        if not self.enabled:
            return None
        now = {b: self.mark(b) for b in ("likes", "analytics")}
        if all(now[b] <= self.stored_marks.get(b, 0) for b in now):
            return None
        self.stored_marks = {b: max(now[b], self.stored_marks.get(b, 0)) for b in now}
        return dict(self.stored_marks)
