"""CounterWriter as a state machine: writer + real dedupe ledger + fake KV
(``support.counter_writer_rig``), against a model; and the same with up to
three likes groups in flight.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict

from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from kryten_likes.store.documents import zero_global
from kryten_likes.actors.counter_writer import MAX_CONFLICTS
from kryten_likes.actors.dedupe_ledger import DedupeLedger
from kryten_likes.messages import (
    CommitFinished, EventRef, LikeForItem, LikeReserved, Media, PlayStarted, StatsAsked, TopAsked,
)
from kryten_likes.effects import AckEvent, Commit, PutDocument, Reply
from kryten_likes.store.keys import record_key
from kryten_likes.store import Conflict, Landed, global_key, item_key, likes_key, now_playing_key
from support.effect_router import EffectRouter
from support.counter_writer_rig import NS, V1, V2, V3, WINDOW, Rig, claim_doc, to


# --- stateful: writer + ledger + fake KV ------------------------------------------------------------------

ITEMS = [V1, V2, V3]
USERS = ["ann", "bo", "cy"]


class CounterWriterMachine(RuleBasedStateMachine):
    """Likes go through the real dedupe ledger (claims) or straight in (no claim);
    plays carry stream sequences, sometimes redelivered; commits land or conflict,
    sometimes after a foreign write to one of their keys."""

    pipelined = False  # several likes groups in flight, finished in any order

    @initialize()
    def setup(self) -> None:
        self.rig = Rig(max_batch=7, max_like_groups=3, pipeline_min=1) if self.pipelined else Rig(max_batch=7, max_like_groups=1)
        self.ledger = DedupeLedger(WINDOW)
        self.n = 0
        self.in_flight: dict[str, Commit] = {}
        self.requests: dict[str, tuple[Media, str | None]] = {}
        self.answers: dict[str, dict] = {}
        self.ok_counts: dict[str, list[int]] = defaultdict(list)
        self.ok_keys: Counter = Counter()
        self.next_seq = 1
        self.delivered: dict[int, Media] = {}  # seq → item of its play
        self.unnumbered: Counter = Counter()  # plays without an event
        self.acked: Counter = Counter()
        self.conflict_streak = {"likes": 0, "analytics": 0}
        self.liked_elsewhere: set[tuple[str, str]] = set()
        self.tainted: set[str] = set()  # groups in flight with a key someone else wrote meanwhile

    # --- routing -------------------------------------------------------------------

    def route(self, effects: list) -> None:
        EffectRouter(
            {"dedupe_ledger": lambda m: self.ledger.step(m, self.rig.now), "counter_writer": self.rig.step},
            {Reply: self.record, AckEvent: lambda e: self.check_ack(e.event), Commit: self.sent,
             PutDocument: lambda e: None},
        ).route(effects)

    def sent(self, e: Commit) -> None:
        self.tainted.discard(e.group_id)
        if e.bucket == "analytics" or not self.pipelined:
            assert all(c.bucket != e.bucket for c in self.in_flight.values()), "two batches of one kind"
        else:
            assert sum(c.bucket == "likes" for c in self.in_flight.values()) < 3, "more likes groups than allowed"
        self.in_flight[e.group_id] = e

    def record(self, r: Reply) -> None:
        subject = r.to.subject
        assert subject in self.requests, r
        assert subject not in self.answers, f"second reply to {subject}: {r.body} after {self.answers[subject]}"
        self.answers[subject] = r.body
        media, user = self.requests[subject]
        vid = media.video_id
        body = r.body
        if body["status"] == "ok":
            self.ok_counts[vid].append(body["like_count"])
            if user is not None:
                self.ok_keys[(vid, user)] += 1
                assert (vid, user) not in self.liked_elsewhere, f"{user} liked {vid} twice: a live claim existed"
            assert body["video_id"] == vid
        elif body["status"] == "duplicate":
            assert user is not None, "a like without a claim cannot be a duplicate"
            # The current durable count, which is every ok answered so far.
            assert body["like_count"] == len(self.ok_counts[vid]), (body, self.ok_counts[vid])
        else:
            assert body["error"] == "internal_error", body
            # Only a group that conflicted MAX_CONFLICTS times in a row gives up.
            assert self.conflict_streak["likes"] >= MAX_CONFLICTS, (body, self.conflict_streak)

    def check_ack(self, ev: EventRef) -> None:
        g = self.rig.kv["analytics"].value(global_key(NS)) or {}
        assert ev.stream_seq <= g.get("last_event_seq", 0), f"acked {ev} before it was stored"
        self.acked[ev.stream_seq] += 1

    # --- rules ---------------------------------------------------------------------------

    @rule(media=st.sampled_from(ITEMS), user=st.none() | st.sampled_from(USERS))
    def like(self, media: Media, user: str | None) -> None:
        self.n += 1
        reply = to(self.n)
        self.requests[reply.subject] = (media, user)
        if user is None:  # dedupe off for this one
            self.route([LikeReserved(reply, NS, media, None)])
        else:
            self.route([LikeForItem(reply, NS, user, media)])

    @rule(media=st.sampled_from(ITEMS), numbered=st.booleans())
    def play(self, media: Media, numbered: bool) -> None:
        ev = None
        if numbered:
            ev = EventRef(self.next_seq, f"ack.{self.next_seq}")
            self.delivered[self.next_seq] = media
            self.next_seq += 1
        else:
            self.unnumbered[media.video_id] += 1
        self.route([PlayStarted(NS, media, self.rig.now, ev)])

    @precondition(lambda self: self.delivered)
    @rule(data=st.data())
    def redeliver(self, data) -> None:
        seq = data.draw(st.sampled_from(sorted(self.delivered)))
        self.route([PlayStarted(NS, self.delivered[seq], self.rig.now,
                                                          EventRef(seq, f"ack.{seq}.again"))])

    @rule()
    def flush(self) -> None:
        self.route(self.rig.w.flush(self.rig.now))

    @precondition(lambda self: self.in_flight)
    @rule(data=st.data())
    def finish(self, data) -> None:
        gid = data.draw(st.sampled_from(sorted(self.in_flight)))
        commit = self.in_flight[gid]
        # Plays crash the writer after MAX_CONFLICTS (by design), so they get fewer
        # foreign writes; likes may conflict until the writer gives up on them.
        foreign = None
        if commit.bucket == "likes" or self.conflict_streak["analytics"] < MAX_CONFLICTS - 2:
            if data.draw(st.booleans(), label="foreign write"):
                foreign = (data.draw(st.sampled_from(commit.writes), label="key"),
                           data.draw(st.booleans(), label="live"))
        self._finish(gid, foreign)

    @rule(times=st.integers(1, MAX_CONFLICTS), data=st.data())
    def hostile_writer(self, times: int, data) -> None:
        """Someone keeps writing the likes batches' keys, `times` batches in a row."""
        for _ in range(times):
            gid = next((g for g, c in self.in_flight.items() if c.bucket == "likes"), None)
            if gid is None:
                self.flush()
                gid = next((g for g, c in self.in_flight.items() if c.bucket == "likes"), None)
            if gid is None:
                return
            commit = self.in_flight[gid]
            self._finish(gid, (data.draw(st.sampled_from(commit.writes), label="key"),
                               data.draw(st.booleans(), label="live")))

    def _finish(self, gid: str, foreign) -> None:
        commit = self.in_flight.pop(gid)
        if foreign is not None:
            self.foreign_write(commit.bucket, *foreign)
        foreign = foreign or (gid in self.tainted or None)
        outcome = self.rig.kv[commit.bucket].apply(commit)
        if isinstance(outcome, Conflict):
            # The writer's book mirrors KV, so only someone else's write can make it conflict.
            assert foreign is not None, f"{gid} conflicted though nobody else wrote its keys: {outcome}"
            self.conflict_streak[commit.bucket] += 1
        else:
            self.conflict_streak[commit.bucket] = 0
        self.route(self.rig.step(CommitFinished(gid, outcome)))
        if self.conflict_streak["likes"] >= MAX_CONFLICTS:
            self.conflict_streak["likes"] = 0  # the writer gave up on that group

    def foreign_write(self, bucket: str, w, live: bool) -> None:
        """Someone else writes the key; counts are kept, so the model still holds."""
        kv = self.rig.kv[bucket]
        mine = json.loads(w.value)
        self.tainted.update(g for g, c in self.in_flight.items() if any(x.key == w.key for x in c.writes))
        if "/dedupe/" in w.key:
            exp = self.rig.now + 3600 if live else self.rig.now - 10
            kv.put(w.key, claim_doc(mine["video_id"], mine["user"], exp - WINDOW, exp))
            if live:  # that user has liked the item, as far as KV knows
                self.liked_elsewhere.add((mine["video_id"], mine["user"]))
        elif kv.value(w.key) is not None:
            kv.put(w.key, dict(kv.value(w.key)))  # same document, new revision
        elif w.key.endswith("/likes"):
            kv.put(w.key, {"video_id": mine["video_id"], "like_count": 0})
        elif "/liked." in w.key:
            kv.put(w.key, mine)
        elif w.key == global_key(NS):
            kv.put(w.key, zero_global())
        elif w.key == now_playing_key(NS):
            kv.put(w.key, {"video_id": None})
        else:
            kv.put(w.key, {"video_id": mine["video_id"], "play_count": 0})

    @rule(media=st.sampled_from(ITEMS), ranking=st.sampled_from(["liked", "played"]))
    def query(self, media: Media, ranking: str) -> None:
        [r] = self.rig.step(StatsAsked(to("q"), NS, video_id=media.video_id))
        analytics = self.rig.kv["analytics"]
        item = r.body["item"]
        assert item["like_count"] == len(self.ok_counts[media.video_id])
        assert item["play_count"] == (analytics.value(item_key(NS, media.video_id)) or {}).get("play_count", 0)
        assert r.body["global"] == (analytics.value(global_key(NS)) or zero_global())
        [r] = self.rig.step(TopAsked(to("t"), NS, ranking, 2))
        if ranking == "liked":
            counts = {m.video_id: len(self.ok_counts[m.video_id]) for m in ITEMS}
        else:
            counts = {m.video_id: (analytics.value(item_key(NS, m.video_id)) or {}).get("play_count", 0)
                      for m in ITEMS}
        expected = sorted(((-c, v) for v, c in counts.items() if c > 0))[:2]
        assert [(-i["count"], i["video_id"]) for i in r.body["items"]] == expected
        assert all(i["title"] == next(m.title for m in ITEMS if m.video_id == i["video_id"])
                   for i in r.body["items"])

    # --- invariants ---------------------------------------------------------------------------

    @invariant()
    def kv_like_counts_are_the_ok_replies(self) -> None:
        if not hasattr(self, "rig"):
            return
        for m in ITEMS:
            doc = self.rig.kv["likes"].value(likes_key(NS, m.video_id))
            assert (doc or {}).get("like_count", 0) == len(self.ok_counts[m.video_id]), (m.video_id, doc)
            # Each ok like reported its own count: 1..N, none lost, none repeated.
            assert sorted(self.ok_counts[m.video_id]) == list(range(1, len(self.ok_counts[m.video_id]) + 1))

    @invariant()
    def records_and_totals_are_the_ok_likes(self) -> None:
        """Each ok like left its user's record of the item, and its user's
        likes_given counts every ok like of that user, none twice."""
        if not hasattr(self, "rig"):
            return
        kv = self.rig.kv["likes"]
        given: Counter = Counter()
        for (vid, user), n in self.ok_keys.items():
            given[user] += n
            if n:
                record = kv.value(record_key(NS, vid, user))
                assert record is not None and (record["video_id"], record["user"]) == (vid, user), record
        for user, n in given.items():
            assert kv.likes_given(NS, user) == n, (user, n)

    @invariant()
    def one_ok_per_user_and_item(self) -> None:
        if not hasattr(self, "rig"):
            return
        assert all(n <= 1 for n in self.ok_keys.values()), self.ok_keys

    @invariant()
    def plays_stored_at_most_once(self) -> None:
        if not hasattr(self, "rig"):
            return
        kv = self.rig.kv["analytics"]
        for m in ITEMS:
            stored = (kv.value(item_key(NS, m.video_id)) or {}).get("play_count", 0)
            sent = sum(1 for it in self.delivered.values() if it == m) + self.unnumbered[m.video_id]
            assert stored <= sent, (m.video_id, stored, sent)

    # --- the end: everything lands, everyone is answered -----------------------------------------

    def teardown(self) -> None:
        if not hasattr(self, "rig"):
            return
        for _ in range(100):
            self.route(self.rig.w.flush(self.rig.now))
            if not self.in_flight:
                break
            for gid in sorted(self.in_flight, key=lambda g: int(g.rpartition("-")[2])):  # in the order sent
                commit = self.in_flight.pop(gid)
                outcome = self.rig.kv[commit.bucket].apply(commit)
                assert isinstance(outcome, Landed), f"{gid} conflicted with nobody else writing: {outcome}"
                self.route(self.rig.step(CommitFinished(gid, outcome)))
        assert not self.in_flight and self.rig.w.held() == ([], [])
        assert self.ledger.reserved == {}, "a reservation never settled"
        missing = set(self.requests) - set(self.answers)
        assert not missing, f"never answered: {sorted(missing)}"
        self.kv_like_counts_are_the_ok_replies()
        kv = self.rig.kv["analytics"]
        for m in ITEMS:
            stored = (kv.value(item_key(NS, m.video_id)) or {}).get("play_count", 0)
            expected = sum(1 for it in self.delivered.values() if it == m) + self.unnumbered[m.video_id]
            assert stored == expected, (m.video_id, stored, expected)
        assert set(self.acked) == set(self.delivered), "an event never acknowledged"
        g = kv.value(global_key(NS))
        if self.delivered or sum(self.unnumbered.values()):
            assert g["items_played"] == len(self.delivered) + sum(self.unnumbered.values())
            assert g.get("last_event_seq", 0) == max(self.delivered, default=0)


CounterWriterMachine.TestCase.settings = settings(max_examples=120, stateful_step_count=50, deadline=None)
TestCounterWriterAgainstModel = CounterWriterMachine.TestCase


class PipelinedCounterWriterMachine(CounterWriterMachine):
    """The same model with up to three likes groups in flight (of different
    items), finished in any order."""

    pipelined = True


PipelinedCounterWriterMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)
TestPipelinedCounterWriterAgainstModel = PipelinedCounterWriterMachine.TestCase
