"""Likes and unlikes of a few users and items in random order, batches
landing in random order, the clock moving: the counter writer against a
plain model (who has a counted like, since when; each item's count; each
user's likes_given; each curator's likes_received, from the play each like
was given on; the counts by hour summing to the totals). KV is the fake one, with no ledger in front: a like of
a pair whose claim is live is found a duplicate by its batch, as after a
ledger restart."""

from __future__ import annotations

from collections import Counter

import attrs
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from kryten_likes.effects import Commit, Reply
from kryten_likes.messages import CommitFinished, ReplyTo, UnlikeForItem
from kryten_likes.store import likes_key
from kryten_likes.store.keys import curator_key, record_key
from support.counter_writer_rig import NS, V1, V2, Rig, reserved

WINDOW = 30
USERS = ["ann", "bob"]
ITEMS = [V1, V2]
CURATORS = ["Cat", "dan", None]  # None: a play no one is known to have queued


class UnlikeMachine(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.rig = Rig(unlike_window=float(WINDOW))
        self.flying: dict[str, tuple[Commit, float]] = {}  # group id -> (commit, when it was drafted)
        self.asked: dict[str, tuple[str, str, str]] = {}  # reply subject -> (kind, video_id, user)
        self.n = 0
        self.liked: dict[tuple[str, str], float] = {}  # pair -> when its counted like was drafted
        self.count: Counter = Counter()
        self.given: Counter = Counter()
        self.playing_by = {m.video_id: "Cat" for m in ITEMS}  # the curator of each item's current play
        self.credit: Counter = Counter()  # folded curator -> likes received
        self.credited: dict[tuple[str, str], str | None] = {}  # pair -> the curator its like credited
        self.curator_of_ask: dict[str, str | None] = {}

    def _route(self, effects: list, drafted: float) -> None:
        """``drafted``: when the batch whose outcome this is was drafted (what an
        ok counts from); a refusal is decided now, by the flush that follows."""
        # The writer sends the next batch and the refusals its flush decided
        # before the landed batch's replies; it decided them after taking the
        # landing in, so the model takes the oks in first.
        replies = [e for e in effects if isinstance(e, Reply)]
        for e in effects:
            if isinstance(e, Commit):
                self.flying[e.group_id] = (e, self.rig.now)
        for e in sorted(replies, key=lambda r: r.body["status"] == "error"):
            self._judge(e, drafted if e.body["status"] != "error" else self.rig.now)

    def _judge(self, r: Reply, at: float) -> None:
        kind, vid, user = self.asked.pop(r.to.subject)
        pair, body = (vid, user), r.body
        curator = self.curator_of_ask.pop(r.to.subject, None)
        if kind == "like" and body["status"] == "ok":
            assert pair not in self.liked, f"{user} liked {vid} twice"
            self.liked[pair] = at
            self.count[vid] += 1
            self.given[user] += 1
            self.credited[pair] = curator
            if curator:
                self.credit[curator.casefold()] += 1
        elif kind == "like":
            assert body["status"] == "duplicate" and pair in self.liked, body
        elif body["status"] == "ok":
            assert pair in self.liked and at - int(self.liked[pair]) < WINDOW, (pair, at, self.liked.get(pair))
            del self.liked[pair]
            self.count[vid] -= 1
            self.given[user] -= 1
            curator = self.credited.pop(pair)
            if curator:
                self.credit[curator.casefold()] -= 1
        elif body["error"] == "not_liked":
            assert pair not in self.liked, (pair, body)
        else:
            assert body["error"] == "unlike_window_passed" and pair in self.liked, (pair, body, self.liked)
            assert at - int(self.liked[pair]) >= WINDOW, (at, self.liked[pair])
        if body["status"] != "error":
            assert body["like_count"] == self.count[vid], (body, self.count)

    def _ask(self, kind: str, media, user: str) -> None:
        self.n += 1
        self.asked[f"inbox.{self.n}"] = (kind, media.video_id, user)
        if kind == "like":
            curator = self.curator_of_ask[f"inbox.{self.n}"] = self.playing_by[media.video_id]
            msg = attrs.evolve(reserved(self.n, media, user, at=self.rig.now), curator=curator)
        else:
            msg = UnlikeForItem(ReplyTo(f"inbox.{self.n}"), NS, user, media)
        self._route(self.rig.step(msg), self.rig.now)

    @rule(media=st.sampled_from(ITEMS), user=st.sampled_from(USERS))
    def like(self, media, user) -> None:
        # As the ledger would: a pair with a like counted or on its way is a
        # duplicate without a batch (the core's own duplicate path is tested
        # with the ledger in test_core_counter_writer_machine.py).
        pair = (media.video_id, user)
        if pair in self.liked or ("like", *pair) in self.asked.values():
            return
        self._ask("like", media, user)

    @rule(media=st.sampled_from(ITEMS), user=st.sampled_from(USERS))
    def unlike(self, media, user) -> None:
        self._ask("unlike", media, user)

    @rule()
    def flush(self) -> None:
        self._route(self.rig.w.flush(self.rig.now), self.rig.now)

    @precondition(lambda self: self.flying)
    @rule(data=st.data())
    def land(self, data) -> None:
        gid = data.draw(st.sampled_from(sorted(self.flying)))
        commit, drafted = self.flying.pop(gid)
        outcome = self.rig.kv[commit.bucket].apply(commit)
        self._route(self.rig.step(CommitFinished(gid, outcome)), drafted)

    @rule(media=st.sampled_from(ITEMS), curator=st.sampled_from(CURATORS))
    def played_again(self, media, curator) -> None:
        """The item plays again, from an entry someone else queued."""
        self.playing_by[media.video_id] = curator

    @rule(seconds=st.sampled_from([1, 10, 29, 31, 3600]))
    def tick(self, seconds: int) -> None:
        self.rig.now += seconds

    @invariant()
    def kv_holds_the_model(self) -> None:
        if not hasattr(self, "rig"):
            return
        kv = self.rig.kv["likes"]
        for m in ITEMS:
            assert (kv.value(likes_key(NS, m.video_id)) or {}).get("like_count", 0) == self.count[m.video_id]
            for user in USERS:
                record = kv.value(record_key(NS, m.video_id, user))
                liked = record is not None and record["unliked_at"] is None
                assert liked == ((m.video_id, user) in self.liked), (m.video_id, user, record)
        for user in USERS:
            assert kv.likes_given(NS, user) == self.given[user]
        for m in ITEMS:
            hours = (kv.value(likes_key(NS, m.video_id)) or {}).get("hours", {})
            assert sum(hours.values()) == self.count[m.video_id], (hours, self.count)
        for curator in ("cat", "dan"):
            doc = kv.value(curator_key(NS, curator)) or {}
            assert doc.get("likes_received", 0) == self.credit[curator], (doc, self.credit)
            assert sum(doc.get("hours", {}).values()) == self.credit[curator], doc
        top = self.rig.w.book(NS).curators.top("all", 10, self.rig.now)
        assert {i["username"].casefold(): i["likes_received"] for i in top} == +self.credit

    def teardown(self) -> None:
        if not hasattr(self, "rig"):
            return
        for _ in range(50):  # everything asked is answered once nothing flies
            self.flush()
            if not self.flying:
                break
            for gid in sorted(self.flying):
                commit, drafted = self.flying.pop(gid)
                self._route(self.rig.step(CommitFinished(gid, self.rig.kv[commit.bucket].apply(commit))), drafted)
        assert not self.asked, self.asked


TestUnlikesAgainstModel = UnlikeMachine.TestCase
TestUnlikesAgainstModel.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)
