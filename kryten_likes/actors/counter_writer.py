"""counter_writer: every counter document, stored exactly once; the rankings.

Theory of operation
-------------------
Group commit. Likes and plays wait in ``pending`` queues; whenever no batch
of that kind is in flight, ``flush`` turns what waits into one *group*: for
likes, every reserved dedupe claim plus one compare-and-set of each liked
item's counter document; for plays, each played item's document, the global
counters and the now-playing document. The shell stores a group as one
atomic KV batch and feeds the outcome back as ``CommitFinished``:

- ``Landed``: the book takes the new documents, each like is answered ``ok``
  with its own count (``before + i``), the ledger learns its claims, and the
  plays' bus events are acknowledged.
- ``Conflict``: nothing was stored. The book takes what KV really holds. A
  claim that exists and is live means the like is a duplicate (answered so,
  the ledger learns it); an expired one is overwritten at its revision; the
  rest go back to the front of the queue and try again. After
  ``MAX_CONFLICTS`` a like gets ``internal_error`` (someone else is writing
  our keys).

While a batch is in flight new work for its documents only queues, so under
load each batch carries everything that arrived during the previous one: the
cost of a KV round trip is shared by all likes waiting, which is how the
daemon keeps up with the bus. Likes of *other* items need not wait: up to
``MAX_LIKE_GROUPS`` likes groups fly at once when their counter documents
are disjoint (a group's expected revisions are then all known; a document a
group in flight writes has no known next revision, so its likes wait). A
group that lands sends the next one before its replies go out, so the bus
stores the next batch while the daemon answers the last.

Why not chain groups of one hot item (expect the revision the group in
flight will get)? Revisions are stream sequences, and a write by anyone else
can take exactly the sequence predicted; the later group would then land on
a count the earlier one never stored. Only content could tell them apart,
and nats-server refuses ``Nats-Expected-Last-Msg-Id`` inside an atomic
batch (err_code 10177, checked on 2.15.1).

Plays carry their event-stream sequence; the global document records the
highest absorbed (``last_event_seq``), so a redelivered event is known.
"""

from __future__ import annotations

import math
from collections import deque

import attrs

from .. import wire
from ..clock import iso
from ..messages import (
    AckEvent, AdjustRequested, ApplyFinished, ClaimsSettled, Commit, CommitFinished, EnqueueRefused, EnqueueStarted,
    EnqueuesInFlight, EventPassed, EventRef, Forward, LikeDuplicate, LikeReserved, PlayStarted, PutDocument,
    QueueConfirmed, QueueObserved, StatsAsked, Tick, TopAsked,
)
from ..store.values import Conflict, Fenced, KvWrite, Landed, StoredEntry
from ..store.keys import global_key, ranking_key
from ..store import documents as docs
from . import analytics_changes as ac
from .adjustments import Adjustments
from .counter_book import RANKED, CounterBook
from .like_groups import MAX_CONFLICTS, MAX_LIKE_GROUPS, PIPELINE_MIN, Group, LikeGroups
from .request_memory import RequestMemory

MATERIALISE_PER_TICK = 32


@attrs.frozen
class Recover:
    """A change queued at start: settle what a previous life left half-done."""

    namespace: str


@attrs.frozen
class Reconcile:
    """A change queued when the apply actor said what is in flight: early
    events beyond the enqueues in flight count as someone else's."""

    in_flight: dict = attrs.field(hash=False)  # (ns, media key) -> enqueues in flight


class CounterWriter(LikeGroups, Adjustments):
    def __init__(self, books: dict[str, CounterBook], namespace: str, *, group_prefix: str,
                 max_batch: int = 900, materialise_every: float = 10.0, recover: bool = False,
                 retry_window: float = 600.0, epoch: int = 0, await_applies: bool = False,
                 max_remembered_requests: int = 100_000,
                 max_like_groups: int = MAX_LIKE_GROUPS, pipeline_min: int = PIPELINE_MIN) -> None:
        self.epoch = epoch  # events of older readings of the stream are dropped: they come again
        self.books = books
        self.namespace = namespace  # where plays are counted
        self.max_batch = max_batch
        self.materialise_every = materialise_every
        self._prefix = group_prefix
        self._seq = 0
        self.pending_likes: deque[LikeReserved] = deque()
        self.pending_changes: deque[tuple[object, int]] = deque()
        self.pending_adjusts: deque = deque()  # operators' corrections (adjustments.py)
        # (ns, media key) -> ids of enqueues asked of the bridge, unanswered. Ids,
        # not a count: an enqueue announced twice (after a restart) is one.
        self.enqueues: dict[tuple[str, str], set[str]] = {}
        # After a restart, what is in flight is the apply actor's to say
        # (EnqueuesInFlight); queue changes wait for it, in order.
        self._held_back: list | None = [] if await_applies else None
        self.in_flight: dict[str, Group] = {}  # "analytics" or "likes/<group id>" -> group, oldest first
        self.max_like_groups = max_like_groups
        self.pipeline_min = pipeline_min
        self._retry_conflicts: dict[str, int] = {"likes": 0, "analytics": 0}
        self.requests = RequestMemory(retry_window, max_remembered_requests)
        for ns, b in self.books.items():
            for entry in b.requests:
                self.requests.load(ns, entry)
            b.requests.clear()
        if recover:
            for ns, b in self.books.items():
                if ac.needs_recovery(b):
                    self.pending_changes.append((Recover(ns), 0))
        self._claim_revisions: dict[str, int] = {}  # overrides after a conflict
        self._dirty: set[tuple[str, str]] = set()
        self._last_materialised = -math.inf

    def peek(self, ns: str) -> CounterBook:
        """A namespace's book for reading; an unknown one is not kept (a read
        of a new namespace must not cost memory for good)."""
        return self.books.get(ns) or CounterBook(ns)

    def book(self, ns: str) -> CounterBook:
        b = self.books.get(ns)
        if b is None:
            b = self.books[ns] = CounterBook(ns)
        return b

    @property
    def last_event_seq(self) -> int:
        """The highest changeMedia event stored (queue events: ``last_seq("queue")``)."""
        return self.last_seq("play")

    # --- the step -------------------------------------------------------------------

    def step(self, msg: object, now: float) -> list:
        if isinstance(msg, (LikeReserved, LikeDuplicate)):
            rk = self._rk(msg)
            if rk is not None:
                hit = self.requests.known(rk, now)
                if hit is not None:
                    return self._replay(msg, hit)  # a retry: the original outcome
                if (rk in self.requests.owner or isinstance(msg, LikeReserved)) and not self.requests.arrive(rk, msg):
                    return []  # the original is being stored; answer with it
            if isinstance(msg, LikeReserved):
                self.pending_likes.append(msg)
                return []
            return [wire.duplicate(msg.reply, video_id=msg.media.video_id,
                                   like_count=self.peek(msg.namespace).like_count(msg.media.video_id))]
        if isinstance(msg, EnqueuesInFlight):
            return self._applies_known(msg)
        if self._held_back is not None and isinstance(msg, (QueueObserved, EnqueueStarted, QueueConfirmed,
                                                             EnqueueRefused)):
            self._held_back.append(msg)
            return []
        if isinstance(msg, (PlayStarted, QueueObserved, EnqueueStarted, QueueConfirmed, EnqueueRefused,
                            ApplyFinished)):
            return self._change(msg)
        if isinstance(msg, EventPassed):
            return [] if msg.event.epoch < self.epoch else self._event_passed(msg.event)
        if isinstance(msg, CommitFinished):
            return self._finished(msg, now)
        if isinstance(msg, TopAsked):
            return [wire.ok(msg.reply, items=self.peek(msg.namespace).top(msg.ranking, msg.limit))]
        if isinstance(msg, StatsAsked):
            return [self._stats(msg)]
        if isinstance(msg, AdjustRequested):
            return self._adjust_asked(msg, now)
        if isinstance(msg, Tick):
            self.requests.evict(now)
            return self._materialise(now)
        raise TypeError(f"counter_writer cannot take {msg!r}")

    def flush(self, now: float) -> list:
        out: list = self._adjust_groups(now) if self.pending_adjusts else []  # first: likes must not starve them
        while self.pending_likes:
            flying = self._like_groups()
            if flying and (len(flying) >= self.max_like_groups or len(self.pending_likes) < self.pipeline_min):
                break  # small groups cost the server more than waiting for the one in flight
            commit = self._like_group(now)
            if commit is None:
                break
            out.append(commit)
        if "analytics" not in self.in_flight and self.pending_changes:
            out.append(self._analytics_group(now))
        return out

    def held(self) -> tuple[list[LikeReserved], list[PlayStarted]]:
        """The likes and plays this writer holds that are not stored yet."""
        likes = list(self.pending_likes) + [l for g in self.in_flight.values() for l in g.likes]
        changes = [c for c, _ in self.pending_changes] + [c for g in self.in_flight.values() for c, _ in g.changes]
        return likes, [c for c in changes if isinstance(c, PlayStarted)]

    def held_changes(self) -> list:
        return [c for c, _ in self.pending_changes] + [c for g in self.in_flight.values() for c, _ in g.changes]

    def held_applies(self) -> list[ApplyFinished]:
        return [c for c in self.held_changes() if isinstance(c, ApplyFinished)]

    # --- likes -------------------------------------------------------------------------

    def _new_id(self) -> str:
        self._seq += 1
        return f"{self._prefix}{self._seq}"

    # --- analytics: plays, queue events, applies ----------------------------------------

    def last_seq(self, kind: str) -> int:
        g = self.book(self.namespace).global_doc
        field = "last_event_seq" if kind == "play" else "last_queue_seq"
        return int(g.value.get(field, 0)) if g is not None and g.value else 0

    def _waiting_events(self) -> list[EventRef]:
        changes = [c for c, _ in self.pending_changes] + [c for g in self.in_flight.values() for c, _ in g.changes]
        return [c.event for c in changes if isinstance(c, (PlayStarted, QueueObserved)) and c.event is not None]

    def _already_counted(self, kind: str, seq: int) -> bool:
        return seq <= self.last_seq(kind) or any(ev.stream_seq == seq for ev in self._waiting_events())

    def _event_passed(self, ev: EventRef) -> list:
        # Ack unless the same event (an earlier delivery) still waits to be stored:
        # its own ack comes when it lands.
        if any(w.stream_seq == ev.stream_seq for w in self._waiting_events()):
            return []
        return [AckEvent(ev)]

    def _applies_known(self, msg: EnqueuesInFlight) -> list:
        self.enqueues = {}
        for ns, key, ident in msg.enqueues:
            self.enqueues.setdefault((ns, key), set()).add(ident)
        held, self._held_back = self._held_back or [], None
        # Early events noted for enqueues no longer in flight were someone else's.
        self.pending_changes.append((Reconcile({k: len(v) for k, v in self.enqueues.items()}), 0))
        out: list = []
        for m in held:
            if isinstance(m, EnqueueStarted) and not any(m.enqueue_id in ids for ids in self.enqueues.values()):
                continue  # an announcement of an enqueue apply no longer has in flight
            out += self._change(m)
        return out

    def _change(self, msg: object) -> list:
        """Queue an analytics change, noting the enqueues in flight as it arrived."""
        if isinstance(msg, (PlayStarted, QueueObserved)) and msg.event is not None:
            if msg.event.epoch < self.epoch:
                return []  # read again from the stream, in order, in the new epoch
            kind = "play" if isinstance(msg, PlayStarted) else "queue"
            if self._already_counted(kind, msg.event.stream_seq):
                return self._event_passed(msg.event)
        in_flight = 0
        if isinstance(msg, EnqueueStarted):
            self.enqueues.setdefault((msg.namespace, ac.media_key(msg.media)), set()).add(msg.enqueue_id)
            return []
        if isinstance(msg, (QueueConfirmed, EnqueueRefused)):
            k = (msg.namespace, ac.media_key(msg.media))
            ids = self.enqueues.get(k, set())
            ids.discard(msg.enqueue_id if isinstance(msg, EnqueueRefused) else f"{msg.apply_id}#{msg.index}")
            in_flight = len(ids)
            if not ids:
                self.enqueues.pop(k, None)
        elif isinstance(msg, QueueObserved):
            in_flight = len(self.enqueues.get((self.namespace, ac.media_key(msg.media)), ()))
        self.pending_changes.append((msg, in_flight))
        return []

    def _analytics_group(self, now: float) -> Commit:
        gid = self._new_id()
        d = ac.Draft(self.book, gid, now)
        taken: list = []
        while self.pending_changes and len(d) < self.max_batch - 4 and len(taken) < self.max_batch // 2:
            change, in_flight = self.pending_changes.popleft()
            taken.append((change, in_flight))
            if isinstance(change, PlayStarted):
                ac.play(d, change)
            elif isinstance(change, QueueObserved):
                ac.queue_seen(d, self.namespace, change, in_flight)
            elif isinstance(change, QueueConfirmed):
                ac.queue_confirmed(d, change, in_flight)
            elif isinstance(change, EnqueueRefused):
                ac.enqueue_refused(d, change, in_flight)
            elif isinstance(change, ApplyFinished):
                ac.apply_finished(d, change)
            elif isinstance(change, Recover):
                ac.recover(d, change.namespace)
            elif isinstance(change, Reconcile):
                ac.reconcile(d, self.books, change.in_flight)
        g = d.global_(self.namespace)  # every group moves the global document: the marker
        g.update(updated_at=iso(now), schema_version=docs.SCHEMA)
        for value in d.values.values():
            value["batch"] = gid
        writes = tuple(KvWrite(k, docs.dump(v), d.expected[k]) for k, v in d.values.items())
        group = Group("analytics", gid, writes, changes=taken, values=d.values, draft=d,
                      conflicts=self._retry_conflicts["analytics"])
        self.in_flight["analytics"] = group
        return Commit("analytics", gid, writes, marker_key=global_key(self.namespace))

    def _store_in_book(self, d: ac.Draft, key: str, entry: StoredEntry | None) -> None:
        ns, kind, ident = d.kinds[key]
        book = self.book(ns)
        if kind == "global":
            book.global_doc = entry
        elif kind == "now_playing":
            book.now_playing = entry
        elif kind == "expected":
            book.expectations = entry
        elif kind == "playlist":
            if entry is None:
                book.playlists.pop(ident, None)
            else:
                book.playlists[ident] = entry
        else:
            book.set_item(ident, entry if entry is not None else StoredEntry(0, None))
            self._dirty.add((ns, "played"))

    def _analytics_landed(self, g: Group, landed: Landed) -> list:
        for key, value in g.values.items():
            if key in landed.revisions:  # else written again since (found by reading back): not ours to say
                self._store_in_book(g.draft, key, StoredEntry(landed.revisions[key], value))
        self._retry_conflicts["analytics"] = 0
        return g.draft.after

    def _analytics_conflicted(self, g: Group, conflict: Conflict) -> list:
        for key, entry in conflict.current.items():
            self._store_in_book(g.draft, key, entry)
        if g.conflicts + 1 >= MAX_CONFLICTS:
            raise RuntimeError(f"analytics batch {g.group_id} conflicted {MAX_CONFLICTS} times: another writer?")
        self._retry_conflicts["analytics"] = g.conflicts + 1
        # Back to the queue, then drop whatever the refreshed marks say is
        # stored: this group's events, and any a late-landing batch of an
        # earlier life of this writer stored.
        self.pending_changes.extendleft(reversed(g.changes))
        out: list = []
        still: deque = deque()
        for change, in_flight in self.pending_changes:
            ev = getattr(change, "event", None)
            kind = "play" if isinstance(change, PlayStarted) else "queue"
            if ev is not None and ev.stream_seq <= self.last_seq(kind):
                out.append(AckEvent(ev))
            else:
                still.append((change, in_flight))
        self.pending_changes = still
        return out

    # --- outcomes, queries, materialised rankings ---------------------------------------

    def _finished(self, msg: CommitFinished, now: float) -> list:
        kind = next((k for k, g in self.in_flight.items() if g.group_id == msg.group_id), None)
        if kind is None:
            return []  # a commit of a previous life of this actor
        # The group stays in flight until its outcome is applied: if applying
        # raises, held() still lists it and the supervisor answers for it.
        g = self.in_flight[kind]
        if isinstance(msg.outcome, Fenced):
            out = self._fenced(g, now)
        elif g.kind == "adjust":
            out = self._adjust_finished(g, msg.outcome)
        elif isinstance(msg.outcome, Landed):
            out = self._likes_landed(g, msg.outcome) if g.kind == "likes" else self._analytics_landed(g, msg.outcome)
        elif g.kind == "likes":
            out = self._likes_conflicted(g, msg.outcome, now)
        else:
            out = self._analytics_conflicted(g, msg.outcome)
        del self.in_flight[kind]
        # The next group goes first: the bus stores it while the replies go out.
        return self.flush(now) + out

    def _fenced(self, g: Group, now: float) -> list:
        """Nothing of the group was stored and nothing more will be: another
        daemon is active (lease). Each request in it hears so, truly; events
        are not acked (the active daemon reads them from the stream)."""
        why = "this daemon is no longer the active one for the namespace; retry"
        out: list = []
        released = []
        for like in g.likes:
            rk = self._rk(like)
            for r in [like] + (self.requests.settled(rk, None, now) if rk is not None else []):
                out.append(wire.error(r.reply, "unavailable", why))
                if getattr(r, "claim", None) is not None:
                    released.append(r.claim)
        for change, _ in g.changes:
            reply = getattr(change, "reply", None) or getattr(getattr(change, "request", None), "reply", None)
            if reply is not None:
                out.append(wire.error(reply, "unavailable", why))
        if released:
            out.append(Forward("dedupe_ledger", ClaimsSettled(released=tuple(released))))
        return out

    def _stats(self, msg: StatsAsked):
        book = self.peek(msg.namespace)
        fields: dict = {"global": book.global_value()}
        if msg.video_id is not None:
            fields["item"] = book.item_stats(msg.video_id)
        if msg.playlist_id is not None:
            e = book.playlists.get(msg.playlist_id)
            fields["playlist"] = dict(e.value) if e is not None and e.value else None
        return wire.ok(msg.reply, **fields)

    def _materialise(self, now: float) -> list:
        if not self._dirty or now - self._last_materialised < self.materialise_every:
            return []
        self._last_materialised = now
        out = []
        # A bounded number per tick: after likes in thousands of namespaces,
        # thousands of writes at once would stall the daemon.
        batch = sorted(self._dirty, key=lambda d: (d[0] != self.namespace, d))[:MATERIALISE_PER_TICK]
        for ns, ranking in batch:
            items = self.book(ns).top(ranking, RANKED)
            out.append(PutDocument("analytics", ranking_key(ns, ranking),
                                   {"items": items, "updated_at": iso(now), "schema_version": docs.SCHEMA}))
        self._dirty.difference_update(batch)
        return out


__all__ = ["MAX_CONFLICTS", "MAX_LIKE_GROUPS", "PIPELINE_MIN", "CounterWriter"]
