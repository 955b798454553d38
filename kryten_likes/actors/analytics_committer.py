"""The analytics committer: plays, queue events and applies, stored in groups.

One of the counter writer's three parts (counter_writer.py tells the whole
story; analytics_changes.py says how each change moves the documents). It
owns the changes waiting to be stored, the enqueues in flight (so a queue
event can be told from our own), and one analytics group at a time: plays'
documents are drafted from the read model, which only a landed group moves.

Plays and queue events carry their event-stream sequence; the global
document records the highest absorbed (``last_event_seq``,
``last_queue_seq``), so a redelivered event is known and acked, not counted.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import attrs

from .. import wire
from ..clock import iso
from ..messages import (
    ApplyFinished, EnqueueRefused, EnqueueStarted, EnqueuesInFlight, EventPassed, EventRef, PlayStarted,
    QueueConfirmed, QueueObserved,
)
from ..effects import AckEvent, Commit
from ..store import documents as docs
from ..store.keys import global_key
from ..store.values import Conflict, KvWrite, Landed, StoredEntry
from . import analytics_changes as ac
from .groups import FENCED, MAX_CONFLICTS, AnalyticsGroup, GroupsInFlight
from .outbox import MAX_UNPUBLISHED_PLAYS
from .read_model import ReadModel

QUEUE_MESSAGES = (QueueObserved, EnqueueStarted, QueueConfirmed, EnqueueRefused)


@attrs.frozen
class Recover:
    """A change queued at start: settle what a previous life left half-done."""

    namespace: str


@attrs.frozen
class Reconcile:
    """A change queued when the apply actor said what is in flight: early
    events beyond the enqueues in flight count as someone else's."""

    in_flight: dict = attrs.field(hash=False)  # (ns, media key) -> enqueues in flight


class AnalyticsCommitter:
    def __init__(self, read: ReadModel, flying: GroupsInFlight, new_id: Callable[[], str], *, max_batch: int,
                 epoch: int = 0, recover: bool = False, await_applies: bool = False) -> None:
        self.read = read
        self.flying = flying  # shared with the other committers
        self.new_id = new_id
        self.max_batch = max_batch
        self.epoch = epoch  # events of older readings of the stream are dropped: they come again
        self.pending: deque[tuple[object, int]] = deque()  # (change, enqueues in flight when it arrived)
        # (ns, media key) -> ids of enqueues asked of the bridge, unanswered. Ids,
        # not a count: an enqueue announced twice (after a restart) is one.
        self.enqueues: dict[tuple[str, str], set[str]] = {}
        # After a restart, what is in flight is the apply actor's to say
        # (EnqueuesInFlight); queue changes wait for it, in order.
        self.held_back: list | None = [] if await_applies else None
        self.conflicts_in_row = 0
        if recover:
            self.pending.extend((Recover(ns), 0) for ns, b in read.books.items() if ac.needs_recovery(b))

    # --- arriving -------------------------------------------------------------------------

    def take(self, msg: object, now: float) -> list:
        if self.held_back is not None and isinstance(msg, QUEUE_MESSAGES):
            self.held_back.append(msg)
            return []
        return self._change(msg)

    def event_passed(self, msg: EventPassed, now: float) -> list:
        if msg.event.epoch < self.epoch:
            return []
        # Ack unless the same event (an earlier delivery) still waits to be
        # stored: its own ack comes when it lands.
        if any(w.stream_seq == msg.event.stream_seq for w in self._waiting_events()):
            return []
        return [AckEvent(msg.event)]

    def applies_known(self, msg: EnqueuesInFlight, now: float) -> list:
        self.enqueues = {}
        for ns, key, ident in msg.enqueues:
            self.enqueues.setdefault((ns, key), set()).add(ident)
        held, self.held_back = self.held_back or [], None
        # Early events noted for enqueues no longer in flight were someone else's.
        self.pending.append((Reconcile({k: len(v) for k, v in self.enqueues.items()}), 0))
        out: list = []
        for m in held:
            if isinstance(m, EnqueueStarted) and not any(m.enqueue_id in ids for ids in self.enqueues.values()):
                continue  # an announcement of an enqueue apply no longer has in flight
            out += self._change(m)
        return out

    def held(self) -> list:
        """Changes taken and not stored yet, oldest first."""
        return [c for c, _ in self.pending] + [c for g in self.flying.of_kind(AnalyticsGroup) for c, _ in g.changes]

    def _waiting_events(self) -> list[EventRef]:
        return [c.event for c in self.held() if isinstance(c, (PlayStarted, QueueObserved)) and c.event is not None]

    def _already_counted(self, kind: str, seq: int) -> bool:
        return seq <= self.read.last_seq(kind) or any(ev.stream_seq == seq for ev in self._waiting_events())

    def _change(self, msg: object) -> list:
        """Queue an analytics change, noting the enqueues in flight as it arrived."""
        if isinstance(msg, (PlayStarted, QueueObserved)) and msg.event is not None:
            if msg.event.epoch < self.epoch:
                return []  # read again from the stream, in order, in the new epoch
            kind = "play" if isinstance(msg, PlayStarted) else "queue"
            if self._already_counted(kind, msg.event.stream_seq):
                return self.event_passed(EventPassed(msg.event), 0.0)
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
            in_flight = len(self.enqueues.get((self.read.namespace, ac.media_key(msg.media)), ()))
        self.pending.append((msg, in_flight))
        return []

    # --- sending -----------------------------------------------------------------------------

    def groups(self, now: float) -> list[Commit]:
        if self.flying.in_bucket("analytics") or not self.pending or self.flying.outbox.full("analytics"):
            return []
        return [self._group(now)]

    def _group(self, now: float) -> Commit:
        gid = self.new_id()
        ns = self.read.namespace
        d = ac.Draft(self.read.book, gid, now)
        taken: list = []
        plays = 0
        while self.pending and len(d) < self.max_batch - 4 and len(taken) < self.max_batch // 2:
            if self.flying.outbox.enabled and plays >= MAX_UNPUBLISHED_PLAYS:
                break  # every play not yet published must fit the now-playing document's recent_plays
            change, in_flight = self.pending.popleft()
            plays += isinstance(change, PlayStarted)
            taken.append((change, in_flight))
            self._draft(d, change, in_flight)
        g = d.global_(ns)  # every group moves the global document: the marker
        g.update(updated_at=iso(now), schema_version=docs.SCHEMA)
        for value in d.values.values():
            value["batch"] = gid
        writes = tuple(KvWrite(k, docs.dump(v), d.expected[k]) for k, v in d.values.items())
        self.flying.add(AnalyticsGroup(gid, writes, taken, d, self.conflicts_in_row))
        return Commit("analytics", gid, writes, marker_key=global_key(ns))

    def _draft(self, d: ac.Draft, change: object, in_flight: int) -> None:
        if isinstance(change, PlayStarted):
            ac.play(d, change)
        elif isinstance(change, QueueObserved):
            ac.queue_seen(d, self.read.namespace, change, in_flight)
        elif isinstance(change, QueueConfirmed):
            ac.queue_confirmed(d, change, in_flight)
        elif isinstance(change, EnqueueRefused):
            ac.enqueue_refused(d, change, in_flight)
        elif isinstance(change, ApplyFinished):
            ac.apply_finished(d, change)
        elif isinstance(change, Recover):
            ac.recover(d, change.namespace)
        elif isinstance(change, Reconcile):
            ac.reconcile(d, self.read.books, change.in_flight)

    # --- outcomes ----------------------------------------------------------------------------

    def _store_in_book(self, d: ac.Draft, key: str, entry: StoredEntry | None) -> None:
        ns, kind, ident = d.kinds[key]
        book = self.read.book(ns)
        if kind == "global":
            book.global_doc = entry
        elif kind == "now_playing":
            book.now_playing = entry
        elif kind == "expected":
            book.expectations = entry
        elif kind == "curator":
            book.curators.take("analytics", ident, entry)
        elif kind == "playlist":
            if entry is None:
                book.playlists.pop(ident, None)
            else:
                book.playlists[ident] = entry
        else:
            book.set_item(ident, entry if entry is not None else StoredEntry(0, None))
            self.read.ranking_moved(ns, "played")

    def landed(self, g: AnalyticsGroup, landed: Landed, now: float) -> list:
        for key, value in g.values.items():
            if key in landed.revisions:  # else written again since (found by reading back): not ours to say
                self._store_in_book(g.draft, key, StoredEntry(landed.revisions[key], value))
        self.conflicts_in_row = 0
        lowest = min(landed.revisions.values(), default=0)
        return g.draft.after + self.flying.outbox.stored(g.group_id, "analytics", lowest, (), tuple(g.draft.events),
                                                         fresh=True)

    def conflicted(self, g: AnalyticsGroup, conflict: Conflict, now: float) -> list:
        for key, entry in conflict.current.items():
            self._store_in_book(g.draft, key, entry)
        if g.conflicts + 1 >= MAX_CONFLICTS:
            raise RuntimeError(f"analytics batch {g.group_id} conflicted {MAX_CONFLICTS} times: another writer?")
        self.conflicts_in_row = g.conflicts + 1
        # Back to the queue, then drop whatever the refreshed marks say is
        # stored: this group's events, and any a late-landing batch of an
        # earlier life of this writer stored.
        self.pending.extendleft(reversed(g.changes))
        out: list = []
        still: deque = deque()
        for change, in_flight in self.pending:
            ev = getattr(change, "event", None)
            kind = "play" if isinstance(change, PlayStarted) else "queue"
            if ev is not None and ev.stream_seq <= self.read.last_seq(kind):
                out.append(AckEvent(ev))
            else:
                still.append((change, in_flight))
        self.pending = still
        return out

    def fenced(self, g: AnalyticsGroup, now: float) -> list:
        """Another daemon is active: requests among the changes hear so; events
        are not acked (the active daemon reads them from the stream)."""
        return [wire.error(c.reply, "unavailable", FENCED) for c, _ in g.changes if isinstance(c, ApplyFinished)]
