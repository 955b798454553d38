"""The model machine of Applies + CounterWriter: queue applies, the bridge's
answers and queue events, foreign queue events, plays, commits that land or
conflict, and writer restarts, in random interleavings, against a fake KV
(wired by hand: ``support.applies_wiring`` says how); and the helpers that
replay one interleaving by hand.

Model (docs/contract.md, "Queue apply and queue events"): the bridge queued media M
``foreign[M]`` times for others, plus once for every ask it confirmed, plus
once for every ask that timed out but that it did queue (its event arrives).
After everything settles, ``queue_count`` of M and ``items_queued`` are
exactly that; at every step they are at most what the bridge has queued so
far. A confirmed item whose queue event the bridge never publishes breaks the
bridge's side of the contract ("the bridge publishes a queue event for each
item it queues"): its expectation may then swallow someone else's event of
the same media, so for such media only ``true - missing <= count <= true``
holds, by design. An ``ApplyFinished`` held by a dead writer is answered
``internal_error`` by the supervisor (its counts stand): accepted.

Time stays far inside ``EXPECT_SECONDS`` (600 s): ``now`` moves by small
steps and never passes ``T0 + MAX_ELAPSED``; an event arriving after its
expectation expired would be counted a second time, by design.
"""

from __future__ import annotations

import json
from collections import Counter, deque

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from kryten_likes.actors.analytics_changes import expectations_key
from kryten_likes.actors.apply import Applies
from kryten_likes.actors.counter_writer import MAX_CONFLICTS, CounterWriter
from kryten_likes.messages import ApplyRequested, EnqueueAnswered, ReplyTo
from kryten_likes.effects import Commit
from kryten_likes.store import global_key, playlist_key
from kryten_likes.store.documents import zero_global

from support.applies_wiring import (
    MAX_ELAPSED, MAX_RESTARTS, PLAYLISTS, VIDS, AppliesWiring, Ask, CopyingKV, Published, Request, apply_item,
)
from support.counter_writer_rig import NS, T0


class AppliesMachine(AppliesWiring, RuleBasedStateMachine):
    # Interleavings that once broke the contract are all walked in (the tests
    # in test_core_applies_restarts.py reproduce each, as found): a restart may
    # lose an EnqueueRefused the writer held (bug 1); what WriterRestarted says
    # again may still wait in the mailbox (bug 2); the re-read stream may reach
    # the writer before apply's re-announce (bug 3); a dead writer's batch may
    # land after the new writer read KV (bug 4); a restart may leave the next
    # writer a QueueConfirmed that apply will never say again (bug 5).
    #
    # Foreign writes may make the writer give up (MAX_CONFLICTS) and crash at any
    # moment, which the restart preconditions cannot steer: only in
    # RealisticAppliesMachine.
    CONFLICT_CRASHES = False

    @initialize()
    def setup(self) -> None:
        self.now = T0
        self.kv = CopyingKV()
        self.life = 1
        self.epoch = 0
        self.writer = self.new_writer()
        self.apps = Applies(id_prefix="a-", max_active=2)
        self.box: deque = deque()  # the writer's mailbox
        self.feed: deque = deque()  # events of the stream not yet handed to the writer
        self.in_flight: dict[str, Commit] = {}
        self.n = 0
        self.requests: dict[str, Request] = {}
        self.asks: dict[tuple[str, int], Ask] = {}
        self.events: dict[int, Published] = {}  # the stream: sequence -> event
        self.foreign: Counter = Counter()
        self.plays: Counter = Counter()
        self.acked: Counter = Counter()
        self.restarts = 0
        self.late_landings = 0
        self.streak = 0  # commits conflicted in a row

    def new_writer(self) -> CounterWriter:
        # A restarted writer: recover=False, as daemon.start_writer does after the first life.
        return CounterWriter(self.kv.books(), NS, group_prefix=f"w{self.life}-", max_batch=10, recover=False,
                             epoch=self.epoch)

    # --- rules ----------------------------------------------------------------------------------------

    @rule(playlist=st.sampled_from(PLAYLISTS), vids=st.lists(st.sampled_from(VIDS), min_size=1, max_size=4))
    def apply(self, playlist: str, vids: list[str]) -> None:
        self.n += 1
        reply = ReplyTo(f"inbox.{self.n}", f"c{self.n}")
        self.requests[reply.subject] = Request(playlist, tuple(vids))
        self.route(self.apps.step(
            ApplyRequested(reply, NS, playlist, tuple(apply_item(v) for v in vids), "someone"), self.now))

    @precondition(lambda self: any(a.event == "unpublished" for a in self.outstanding()))
    @rule(data=st.data())
    def bridge_publishes_before_answering(self, data) -> None:
        ask = data.draw(st.sampled_from([a for a in self.outstanding() if a.event == "unpublished"]))
        self.publish_ask(ask)

    @precondition(lambda self: self.outstanding())
    @rule(data=st.data())
    def bridge_answers(self, data) -> None:
        ask = data.draw(st.sampled_from(self.outstanding()))
        answer = data.draw(st.sampled_from(["ok", "timeout"] if ask.queued else ["ok", "refused", "timeout"]),
                           label="answer")
        queued = ask.queued or answer == "ok"
        if answer == "timeout" and not queued:
            # No answer in time: the bridge may still have queued it (then its event comes).
            queued = data.draw(st.booleans(), label="queued after all")
        event = None
        if queued and ask.event == "unpublished":
            event = data.draw(st.sampled_from(["now", "late", "never"] if answer == "ok" else ["now", "late"]),
                              label="its event")
        self.answer(ask, answer, queued=queued, event=event)

    @precondition(lambda self: any(a.event == "late" for a in self.asks.values()))
    @rule(data=st.data())
    def bridge_publishes_late(self, data) -> None:
        ask = data.draw(st.sampled_from([a for _, a in sorted(self.asks.items()) if a.event == "late"]))
        self.publish_ask(ask)

    @precondition(lambda self: any(a.answer for a in self.asks.values()))
    @rule(data=st.data(), ok=st.booleans())
    def duplicate_answer(self, data, ok: bool) -> None:
        ask = data.draw(st.sampled_from([a for _, a in sorted(self.asks.items()) if a.answer]))
        before = (dict(self.apps.active), list(self.apps.waiting))
        assert self.apps.step(EnqueueAnswered(ask.apply_id, ask.index, ok, None if ok else "again"), self.now) == []
        assert (dict(self.apps.active), list(self.apps.waiting)) == before

    @rule(vid=st.sampled_from(VIDS))
    def foreign_queue_event(self, vid: str) -> None:
        self.foreign[vid] += 1
        self.publish(Published("queue", vid, "someone-else"))

    @rule(vid=st.sampled_from(VIDS))
    def play(self, vid: str) -> None:
        self.plays[vid] += 1
        self.publish(Published("play", vid, at=self.now))

    @precondition(lambda self: self.feed)
    @rule(n=st.integers(1, 4))
    def stream_delivers(self, n: int) -> None:
        self.feed_delivers(n)

    @precondition(lambda self: self.box)
    @rule(n=st.integers(1, 8))
    def writer_runs(self, n: int) -> None:
        self.deliver(n)

    @rule(data=st.data())
    def land(self, data) -> None:
        if not self.in_flight:
            self.route(self.writer.flush(self.now))
        if self.in_flight:
            gid = data.draw(st.sampled_from(sorted(self.in_flight)))
            # Without CONFLICT_CRASHES, someone else writes only while the writer is
            # far from giving up (a dead writer's late batch may add a conflict or two).
            foreign = (self.CONFLICT_CRASHES or self.streak < MAX_CONFLICTS - 3) and data.draw(
                st.booleans(), label="someone else writes the global document first")
            self.finish(gid, foreign)

    @rule(data=st.data(), rounds=st.integers(1, 4))
    def quiet_moment(self, data, rounds: int) -> None:
        """The stream, the writer and KV catch up for a while (the bridge and apply
        wait); the last batch's outcome may still be in the mailbox."""
        for _ in range(rounds):
            self.feed_delivers(len(self.feed))
            self.deliver(len(self.box))
            if not self.in_flight:
                break
            self.land(data)

    @precondition(lambda self: self.restarts < MAX_RESTARTS and (self.box or self.writer.analytics.pending
                                                                  or self.writer.flying))
    @rule(data=st.data())
    def writer_restarts(self, data) -> None:
        fates = {gid: data.draw(st.sampled_from(["landed", "lost", "late"]), label=f"fate of {gid}")
                 for gid in sorted(self.in_flight)}
        in_hand = data.draw(st.sampled_from(self.in_hand_choices()), label="drained, not stepped")
        reread_first = data.draw(st.integers(0, 3), label="re-read first")
        self.restart(fates, in_hand, reread_first)

    @precondition(lambda self: self.now < T0 + MAX_ELAPSED)
    @rule(dt=st.floats(0.0, 10.0))
    def time_passes(self, dt: float) -> None:
        self.now = min(self.now + dt, T0 + MAX_ELAPSED)

    # --- invariants ----------------------------------------------------------------------------------

    @invariant()
    def documents_are_valid(self) -> None:
        if not hasattr(self, "kv"):
            return
        for key, entry in self.kv.entries.items():
            assert isinstance(entry.value, dict), (key, entry)
            assert entry.value.get("schema_version") == 1, (key, entry.value)
            json.dumps(entry.value)

    @invariant()
    def nothing_counted_that_did_not_happen(self) -> None:
        if not hasattr(self, "kv"):
            return
        for vid in VIDS:
            assert self.queue_count(vid) <= self.queued_so_far(vid), (vid, self.queue_count(vid), self.asks, self.foreign)
            assert self.play_count(vid) <= self.plays[vid], (vid, self.play_count(vid), self.plays)
        g = self.kv.value(global_key(NS)) or zero_global()
        assert g["items_queued"] == sum(self.queue_count(v) for v in VIDS), g  # one batch moves both
        for p in PLAYLISTS:
            doc = self.kv.value(playlist_key(NS, p)) or {}
            assert doc.get("apply_count", 0) <= self.applies_confirmed(p), (p, doc)

    # --- the end: the bridge answers everything, every event arrives, everything lands ----------

    def settle(self) -> None:
        for _ in range(500):
            busy = False
            for ask in self.outstanding():
                self.answer(ask, "ok", event="late")
                busy = True
            for _, ask in sorted(self.asks.items()):
                if ask.event == "late":
                    self.publish_ask(ask)
                    busy = True
            if self.feed:
                self.feed_delivers(len(self.feed))
                busy = True
            if self.box:
                self.deliver(len(self.box))
                busy = True
            self.route(self.writer.flush(self.now))
            for gid in sorted(self.in_flight):
                self.finish(gid, foreign_write=False)
                busy = True
            if not busy:
                break
        assert not (self.box or self.feed or self.in_flight or self.outstanding())
        assert not self.writer.analytics.pending, self.writer.analytics.pending
        assert not self.apps.active and not self.apps.waiting, (self.apps.active, self.apps.waiting)

    def check_settled(self) -> None:
        for subject, req in self.requests.items():
            assert req.reply is not None, f"{subject} never answered: {req}"
        for vid in VIDS:
            true = self.queued_so_far(vid)
            missing = sum(1 for a in self.asks.values() if a.vid == vid and a.answer == "ok" and a.event == "never")
            got = self.queue_count(vid)
            assert true - missing <= got <= true, (vid, got, true, missing, self.asks, self.foreign)
            if not missing:
                assert got == true, (vid, got, true, self.asks, self.foreign)
            assert self.play_count(vid) == self.plays[vid], (vid, self.play_count(vid), self.plays)
        g = self.kv.value(global_key(NS)) or zero_global()
        assert g["items_queued"] == sum(self.queue_count(v) for v in VIDS)
        assert g["items_played"] == sum(self.plays.values())
        # Durations: m1 is known from the request, m2 only from its event, m3 never.
        missing_m2 = any(a.vid == "m2" and a.answer == "ok" and a.event == "never" for a in self.asks.values())
        want = 100 * self.queue_count("m1") + 200 * self.queue_count("m2")
        assert g["duration_queued_seconds"] <= want, (g, want)
        if not missing_m2:
            assert g["duration_queued_seconds"] == want, (g, want)
        for p in PLAYLISTS:
            doc = self.kv.value(playlist_key(NS, p)) or {}
            assert doc.get("apply_count", 0) == self.applies_confirmed(p), (p, doc, self.requests)
        # No early event is left waiting for an enqueue that is over.
        ex = self.kv.value(expectations_key(NS)) or {"early": {}}
        assert not ex["early"], ex
        # Every event is stored (below). Not every one is acked: an ack lost with a
        # dead writer is not made good, the feed's new consumer starts past it.
        queue_seqs = [s for s, p in self.events.items() if p.kind == "queue"]
        play_seqs = [s for s, p in self.events.items() if p.kind == "play"]
        assert g.get("last_queue_seq", 0) == max(queue_seqs, default=0), g
        assert g.get("last_event_seq", 0) == max(play_seqs, default=0), g

    def teardown(self) -> None:
        if not hasattr(self, "kv"):
            return
        self.settle()
        self.check_settled()


# --- one interleaving by hand ---------------------------------------------------------------------


def machine() -> AppliesMachine:
    m = AppliesMachine()
    m.setup()
    return m


def land_all(m: AppliesMachine) -> None:
    """The writer takes its mailbox and every batch lands, until it is idle."""
    for _ in range(20):
        m.deliver(len(m.box))
        for gid in sorted(m.in_flight):
            m.finish(gid, foreign_write=False)
        if not m.box and not m.in_flight:
            return
