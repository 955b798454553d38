"""Applies + CounterWriter wired by hand, for the model machine of
``support.applies_machine``: the data it keeps (asks, requests, the event
stream), a fake KV whose answers are copies, and ``AppliesWiring``, which
routes effects, answers for the bridge, runs the writer and its commits, and
restarts it as the daemon would.

The wiring (what the shells, the event feed and the supervisor do, by hand):

- A message for ``counter_writer`` (``routes.MAILBOX``) goes into its mailbox (``box``, a
  FIFO the supervisor owns, so it survives a writer restart); the commits'
  ``CommitFinished`` go there too. A rule drains some of it (the shell steps
  each message, then ``flush``es).
- A message for ``apply`` is stepped by the ``Applies`` core at once.
- ``Enqueue`` is an ask to the bridge, held until a rule answers it
  (``EnqueueAnswered``); a timeout is ``EnqueueAnswered(ok=False,
  reason="timeout")``, as ``ApplyShell`` reports it.
- Queue events and plays go into the event stream (``events``, by sequence);
  the feed (``feed``) hands them to the writer's mailbox in stream order, a
  few at a time. A play is sent as the ``PlayStarted`` playback would make.
- ``Commit`` runs against ``FakeKV`` (all-or-nothing, expected revisions).
- A writer restart does what ``Supervisor.bury`` plus ``daemon``'s
  ``after_crash`` and ``start_writer`` do: ``CounterWriterShell.orphans()``
  says whom to answer ``internal_error`` (its held ``ApplyFinished``) and that
  ``apply`` must hear ``WriterRestarted``; the feed reads the stream again
  from ``first_unstored(dead writer's book)`` in a new epoch (events of older
  epochs still in the mailbox are dropped by the writer); the new writer
  loads its books from KV like ``daemon.load_snapshot``, ``recover=False``.
"""

from __future__ import annotations

import copy
from collections import deque

import attrs

from kryten_likes import wire
from kryten_likes.actors.analytics_changes import EXPECT_SECONDS
from kryten_likes.actors.counter_book import CounterBook
from kryten_likes.actors.counter_writer import CounterWriter
from kryten_likes.actors.counter_writer_shell import CounterWriterShell
from kryten_likes.startup import first_unstored
from kryten_likes.messages import (
    ApplyItem, CommitFinished, EnqueueAnswered, EventRef, Media, PlayStarted, QueueObserved, WriterRestarted,
)
from kryten_likes.effects import AckEvent, Commit, Enqueue, PutDocument, Reply
from kryten_likes.store import Conflict, StoredEntry, global_key, item_key, split_key
from kryten_likes.store.documents import zero_global

from kryten_likes.routes import mailbox_of
from support.counter_writer_rig import NS, T0, FakeKV
from support.effect_router import EffectRouter


MAX_ELAPSED = 300.0
MAX_RESTARTS = 4  # per example: enough to combine them, few enough to let applies progress between
assert MAX_ELAPSED + 10 < EXPECT_SECONDS

# video_id -> (seconds the apply request gives, seconds the queue event gives)
MEDIA = {"m1": (100, 100), "m2": (None, 200), "m3": (None, None)}
VIDS = sorted(MEDIA)
PLAYLISTS = ["p1", "p2"]


def apply_item(vid: str) -> ApplyItem:
    return ApplyItem(vid, "yt", f"title {vid}", MEDIA[vid][0])


def event_media(vid: str) -> Media:
    return Media(vid, "yt", f"title {vid}", MEDIA[vid][1])


class CopyingKV(FakeKV):
    """FakeKV whose answers are copies: the bytes in a real KV cannot be changed
    by whoever read them (the writer's drafts copy documents shallowly)."""

    def apply(self, commit: Commit):
        out = super().apply(commit)
        if isinstance(out, Conflict):
            out = Conflict(out.group_id, copy.deepcopy(out.current))
        return out

    def books(self) -> dict[str, CounterBook]:
        """What ``daemon.load_snapshot`` builds from a scan of the bucket."""
        books: dict[str, CounterBook] = {}
        for key, entry in self.entries.items():
            split = split_key(key)
            if split is None:
                continue
            ns, parts = split
            books.setdefault(ns, CounterBook(ns)).load(parts, StoredEntry(entry.revision, copy.deepcopy(entry.value)))
        return books


@attrs.define
class Ask:
    """One ``Enqueue`` the apply core asked of the bridge, and what the bridge did."""

    apply_id: str
    index: int
    vid: str
    subject: str
    answer: str | None = None  # None (outstanding) | "ok" | "refused" | "timeout"
    queued: bool = False  # the bridge did queue it (so far as the test has decided)
    event: str = "unpublished"  # "unpublished" | "now" | "late" (to be published) | "published" | "never"

    @property
    def reason(self) -> str:
        return {"refused": "Video unavailable", "timeout": "timeout"}[self.answer]


@attrs.define
class Request:
    playlist: str
    vids: tuple[str, ...]
    asks: list[Ask] = attrs.Factory(list)
    reply: dict | None = None
    lost_in_restart: bool = False  # answered internal_error by the supervisor

    @property
    def confirmed(self) -> int:
        return sum(a.answer == "ok" for a in self.asks)


@attrs.frozen
class Published:
    """One event of the stream."""

    kind: str  # "queue" | "play"
    vid: str
    by: str | None = None  # queue events: who queued it
    at: float = T0  # plays: when it started


class AppliesWiring:
    """What the shells, the event feed and the supervisor do, by hand; the
    state it works on is set up by ``AppliesMachine.setup``."""

    CONFLICT_CRASHES: bool  # whether a writer that gave up on conflicts may crash (AppliesMachine)

    # --- wiring ------------------------------------------------------------------------------

    def route(self, effects: list) -> None:
        EffectRouter(
            {"counter_writer": self.box.append, "apply": lambda m: self.apps.step(m, self.now)},
            {Reply: self.record, Enqueue: self.new_ask, AckEvent: lambda e: self.check_ack(e.event),
             Commit: self.sent, PutDocument: lambda e: None},
        ).route(effects)

    def sent(self, e: Commit) -> None:
        assert e.bucket == "analytics", e
        assert not self.in_flight, f"two analytics batches in flight: {sorted(self.in_flight)}, {e.group_id}"
        self.in_flight[e.group_id] = e

    def new_ask(self, e: Enqueue) -> None:
        key = (e.apply_id, e.index)
        assert key not in self.asks, f"asked the bridge twice for {key}"
        subject = self.apps.active[e.apply_id].request.reply.subject
        req = self.requests[subject]
        assert e.index == len(req.asks), (e, req)  # in the given order, one at a time
        assert all(a.answer for a in req.asks), (e, req)
        assert e.item == apply_item(req.vids[e.index]), (e, req)
        ask = Ask(e.apply_id, e.index, e.item.video_id, subject)
        req.asks.append(ask)
        self.asks[key] = ask

    def record(self, r: Reply, *, by_supervisor: bool = False) -> None:
        req = self.requests.get(r.to.subject)
        assert req is not None, r
        assert req.reply is None, f"second reply to {r.to.subject}: {r.body} after {req.reply}"
        req.reply = r.body
        body = r.body
        assert body["correlation_id"] == r.to.correlation_id, body
        if by_supervisor:
            # Its ApplyFinished died with the writer: the counts stand, the answer is lost.
            req.lost_in_restart = True
            assert body["status"] == "error" and body["error"] == "internal_error", body
            return
        assert len(req.asks) == len(req.vids) and all(a.answer for a in req.asks), (body, req)
        failed = [{"video_id": a.vid, "reason": a.reason} for a in req.asks if a.answer != "ok"]
        assert body["failed"] == failed, (body, req)
        assert body["enqueued_count"] == req.confirmed, (body, req)
        if req.confirmed:
            assert body["status"] == "ok" and body["error"] is None, body
            pl = body["playlist"]
            assert pl["playlist_id"] == req.playlist and "applying" not in pl and "batch" not in pl, pl
            assert 1 <= pl["apply_count"] <= self.applies_confirmed(req.playlist), (pl, self.requests)
        else:
            assert body["status"] == "error" and body["error"] == "enqueue_failed", body

    def check_ack(self, ev: EventRef) -> None:
        """An event is acknowledged only once what it counts is stored."""
        field = "last_queue_seq" if self.events[ev.stream_seq].kind == "queue" else "last_event_seq"
        g = self.kv.value(global_key(NS)) or {}
        assert ev.stream_seq <= g.get(field, 0), f"acked {ev} before it was stored: {g}"
        self.acked[ev.stream_seq] += 1

    def message(self, seq: int) -> object:
        """Event ``seq`` as the feed hands it out in the current epoch."""
        p = self.events[seq]
        ref = EventRef(seq, f"ack.{seq}.{self.epoch}", self.epoch)
        if p.kind == "queue":
            return QueueObserved(event_media(p.vid), p.by, ref)
        return PlayStarted(NS, event_media(p.vid), p.at, ref)

    def publish(self, p: Published) -> None:
        seq = max(self.events, default=0) + 1
        self.events[seq] = p
        self.feed.append(seq)

    def publish_ask(self, ask: Ask) -> None:
        assert ask.event in ("unpublished", "now", "late")
        ask.event = "published"
        ask.queued = True
        self.publish(Published("queue", ask.vid, "kryten-robot"))

    def feed_delivers(self, n: int) -> None:
        for _ in range(min(n, len(self.feed))):
            self.box.append(self.message(self.feed.popleft()))

    def deliver(self, n: int) -> None:
        """The writer's shell: take up to ``n`` messages, step each, then flush."""
        for _ in range(n):
            if not self.box:
                break
            msg = self.box.popleft()
            try:
                effects = self.writer.step(msg, self.now)
            except RuntimeError:
                # Conflicted MAX_CONFLICTS times: the writer crashes and is restarted.
                assert isinstance(msg, CommitFinished) and self.CONFLICT_CRASHES, msg
                self.restart({gid: "lost" for gid in self.in_flight}, in_hand=0)
                return
            self.route(effects)
        self.route(self.writer.flush(self.now))

    def finish(self, gid: str, foreign_write: bool) -> None:
        commit = self.in_flight.pop(gid)
        if foreign_write:
            # Someone else writes the global document first (same counts, a new revision).
            g = self.kv.value(global_key(NS))
            self.kv.put(global_key(NS), copy.deepcopy(g) if g is not None else zero_global())
        outcome = self.kv.apply(commit)
        if isinstance(outcome, Conflict):
            # Only someone else's write, or a dead writer's batch that landed after
            # the new writer read KV, can make the writer's expectations stale.
            assert foreign_write or self.late_landings, f"{gid} conflicted though nobody else wrote: {outcome}"
            self.streak += 1
        else:
            self.streak = 0
        self.box.append(CommitFinished(gid, outcome))

    def restart(self, fates: dict[str, str], in_hand: int, reread_first: int = 0) -> None:
        """The writer dies; the supervisor buries it and starts a new one from KV.

        ``in_hand``: messages the dead shell had drained from its mailbox but not
        stepped (lost with it, like the core's own state). ``fates`` of its commits
        in flight: "landed" (stored before it died, answer lost), "lost" (never
        stored) or "late" (stored after the new writer read KV). ``reread_first``:
        how many re-read events reach the new writer before apply's re-announce."""
        self.restarts += 1
        dead = self.writer
        shell = CounterWriterShell("counter_writer", dead, None, None, None, buckets={})
        for _ in range(in_hand):
            if self.box:
                shell.in_hand.append(self.box.popleft())
        late = []
        for gid, commit in sorted(self.in_flight.items()):
            if fates[gid] == "landed":
                self.kv.apply(commit)
            elif fates[gid] == "late":
                late.append(commit)
        self.in_flight.clear()
        # Supervisor.bury: answer what it held, send what the others must hear.
        # Two lists, no NAKs: the feed reads the stream again instead (events.EventFeed).
        replies, messages = shell.orphans()
        for to in replies:
            self.record(wire.error(to, "internal_error", "counter_writer failed with the request inside"),
                        by_supervisor=True)
        for m in messages:
            if mailbox_of(m) == "counter_writer":
                self.box.append(m)  # behind what waits there: the next writer hears it
            else:
                # No playback here (the writer's playback_restart); no likes, so no claims.
                assert m == WriterRestarted(), m
        # daemon.after_crash: read the stream again from the first event the dead writer had not stored.
        start = first_unstored(dead.book(NS))
        self.epoch += 1
        self.feed = deque(s for s in sorted(self.events) if s >= start)
        # daemon.start_writer: KV read again; what is in flight, apply says (EnqueuesInFlight).
        self.life += 1
        self.streak = 0
        # A restarted writer waits for the apply actor to say what is in flight.
        self.writer = CounterWriter(self.kv.books(), NS, group_prefix=f"w{self.life}-", max_batch=10,
                                    recover=False, epoch=self.epoch, await_applies=True)
        for commit in late:
            self.kv.apply(commit)
            self.late_landings += 1
        self.feed_delivers(reread_first)
        for m in messages:
            if mailbox_of(m) == "apply":
                self.route(self.apps.step(m, self.now))

    def held_changes(self) -> list:
        return self.writer.held_changes()

    def in_hand_choices(self) -> range:
        """How many messages at the front of the mailbox the dying writer may have
        drained without stepping them (they die with it): up to three."""
        return range(0, min(len(self.box), 3) + 1)

    # --- the model -------------------------------------------------------------------------------

    def applies_confirmed(self, playlist: str) -> int:
        return sum(1 for r in self.requests.values() if r.playlist == playlist and r.confirmed)

    def queued_so_far(self, vid: str) -> int:
        """How many times the bridge has queued ``vid`` up to now."""
        return self.foreign[vid] + sum(1 for a in self.asks.values() if a.vid == vid and a.queued)

    def queue_count(self, vid: str) -> int:
        return (self.kv.value(item_key(NS, vid)) or {}).get("queue_count", 0)

    def play_count(self, vid: str) -> int:
        return (self.kv.value(item_key(NS, vid)) or {}).get("play_count", 0)

    def outstanding(self) -> list[Ask]:
        return [a for _, a in sorted(self.asks.items()) if a.answer is None]


    def answer(self, ask: Ask, answer: str, *, queued: bool = True, event: str | None = "late") -> None:
        """The bridge answers ``ask``. ``queued``: for a timeout, whether the bridge
        queued it anyway; ``event`` (when not published yet): "now" (right after
        the answer), "late" (some time later) or "never" (a confirmed item whose
        event is missing)."""
        ask.answer = answer
        ask.queued = ask.queued or answer == "ok" or (answer == "timeout" and queued)
        if ask.event == "unpublished":
            # The bridge publishes what it queues, and only that.
            ask.event = "never" if not ask.queued else event or "late"
        reason = None if answer == "ok" else ask.reason
        self.route(self.apps.step(EnqueueAnswered(ask.apply_id, ask.index, answer == "ok", reason), self.now))
        if ask.event == "now":
            self.publish_ask(ask)
