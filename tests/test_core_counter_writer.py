"""CounterWriter: group commit against a fake KV, then a state machine.

``FakeKV`` is a dict ``key → (revision, value)`` with one global sequence per
bucket. It applies a ``Commit`` the way the server applies an atomic batch:
every write's ``expected_revision`` must equal the key's current revision
(0 = absent), else nothing is stored and the answer is a ``Conflict`` with the
current entry of every key; otherwise the writes get consecutive revisions
and the answer is ``Landed``. It stands in for nothing at the network level
(the real server is tested elsewhere): it checks the core's group-commit
logic.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict

import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from kryten_likes.store.documents import zero_global
from kryten_likes.actors.counter_writer import MAX_CONFLICTS, CounterWriter
from kryten_likes.actors.dedupe_ledger import DedupeLedger
from kryten_likes.clock import iso
from kryten_likes.messages import (
    AckEvent, Claim, ClaimsSettled, Commit, CommitFinished, EventPassed, EventRef, Forward, LikeDuplicate,
    LikeForItem, LikeReserved, Media, PlayStarted, PutDocument, Reply, ReplyTo, StatsAsked, Tick, TopAsked,
)
from kryten_likes.store import (
    Conflict, Landed, StoredEntry, dedupe_key, global_key, item_key, likes_key, now_playing_key, ranking_key,
)

T0 = 1_767_225_600.0
NS = "ns1"
WINDOW = 86400.0


class FakeKV:
    """One bucket: ``key → StoredEntry``, revisions from one sequence."""

    def __init__(self) -> None:
        self.entries: dict[str, StoredEntry] = {}
        self.seq = 0
        self.commits: list[Commit] = []

    def revision(self, key: str) -> int:
        e = self.entries.get(key)
        return e.revision if e is not None else 0

    def value(self, key: str) -> dict | None:
        e = self.entries.get(key)
        return e.value if e is not None else None

    def put(self, key: str, value: dict) -> int:
        self.seq += 1
        self.entries[key] = StoredEntry(self.seq, value)
        return self.seq

    def apply(self, commit: Commit) -> Landed | Conflict:
        self.commits.append(commit)
        keys = [w.key for w in commit.writes]
        assert keys, "an empty batch"
        assert len(set(keys)) == len(keys), f"a key written twice in one batch: {keys}"
        if any(w.expected_revision != self.revision(w.key) for w in commit.writes):
            return Conflict(commit.group_id, {k: self.entries.get(k) for k in keys})
        return Landed(commit.group_id, {w.key: self.put(w.key, json.loads(w.value)) for w in commit.writes})


def to(n: int | str) -> ReplyTo:
    return ReplyTo(f"inbox.{n}", None)


def claim(video_id: str, user: str, at: float = T0, window: float = WINDOW) -> Claim:
    return Claim(NS, video_id, user, at, at + window)


def reserved(n: int, media: Media, user: str | None, at: float = T0) -> LikeReserved:
    return LikeReserved(to(n), NS, media, claim(media.video_id, user, at) if user is not None else None)


def claim_doc(video_id: str, user: str, liked_at: float, expires_at: float) -> dict:
    return {"liked_at": iso(liked_at), "expires_at": iso(expires_at), "schema_version": 1,
            "video_id": video_id, "user": user, "batch": "someone-else"}


V1 = Media("v1", "yt", "One", 100)
V2 = Media("v2", "yt", "Two", 200)
V3 = Media("v3", "yt", "Three", None)


class Rig:
    """A writer, a fake KV per bucket, and what the writer said."""

    def __init__(self, books: dict | None = None, **kw) -> None:
        self.w = CounterWriter(books if books is not None else {}, NS, group_prefix="g-", **kw)
        self.kv = {"likes": FakeKV(), "analytics": FakeKV()}
        self.now = T0
        self.sent: list[Commit] = []

    def step(self, msg) -> list:
        return self.w.step(msg, self.now)

    def flush(self) -> list[Commit]:
        out, self.sent = self.sent + self.w.flush(self.now), []
        assert all(isinstance(c, Commit) for c in out), out
        return out

    def finish(self, commit: Commit) -> list:
        """The outcome's effects; a next group sent with them (the writer sends it
        before its replies) comes out of the next ``flush``."""
        effects = self.step(CommitFinished(commit.group_id, self.kv[commit.bucket].apply(commit)))
        self.sent += [e for e in effects if isinstance(e, Commit)]
        return [e for e in effects if not isinstance(e, Commit)]

    def like_doc(self, vid: str) -> dict | None:
        return self.kv["likes"].value(likes_key(NS, vid))

    def seed_likes(self, media: Media, count: int) -> None:
        """KV and the writer's book both hold ``count`` likes (as after a start-up scan)."""
        key = likes_key(NS, media.video_id)
        rev = self.kv["likes"].put(key, {"video_id": media.video_id, "like_count": count, "title": media.title})
        self.w.book(NS).load(("items", media.video_id, "likes"), StoredEntry(rev, self.kv["likes"].value(key)))


def replies(effects: list) -> dict[str, dict]:
    out = {}
    for e in effects:
        if isinstance(e, Reply):
            assert e.to.subject not in out
            out[e.to.subject] = e.body
    return out


def settled(effects: list) -> list[ClaimsSettled]:
    return [e.message for e in effects if isinstance(e, Forward) and e.to == "dedupe_ledger"]


# --- likes: group commit ------------------------------------------------------------------------


def test_many_likes_for_one_item_are_one_commit():
    rig = Rig()
    rig.seed_likes(V1, 5)
    users = [f"user{i}" for i in range(10)]
    for n, u in enumerate(users):
        assert rig.step(reserved(n, V1, u)) == []  # only queued
    [commit] = rig.flush()
    assert commit.bucket == "likes" and commit.group_id == "g-1"
    claims = [w for w in commit.writes if "/dedupe/" in w.key]
    counters = [w for w in commit.writes if w.key.endswith("/likes")]
    assert len(claims) == 10 and len(counters) == 1 and len(commit.writes) == 11
    assert {w.key for w in claims} == {dedupe_key(NS, "v1", u) for u in users}
    assert all(w.expected_revision == 0 for w in claims)
    assert all(w.ttl_seconds == pytest.approx(WINDOW) for w in claims)
    assert counters[0].expected_revision == rig.kv["likes"].revision(likes_key(NS, "v1"))
    assert json.loads(counters[0].value)["like_count"] == 15
    # The marker is a key only this group writes (a claim): a later group may
    # write the item's document while this one's answer is being resolved.
    assert commit.marker_key == dedupe_key(NS, "v1", "user0")
    assert rig.flush() == []  # nothing else waits

    out = rig.finish(commit)
    bodies = replies(out)
    assert [bodies[f"inbox.{n}"]["like_count"] for n in range(10)] == list(range(6, 16))
    assert all(b["status"] == "ok" and b["error"] is None and b["video_id"] == "v1" for b in bodies.values())
    assert settled(out) == [ClaimsSettled(confirmed=tuple(claim("v1", u) for u in users))]
    assert rig.like_doc("v1")["like_count"] == 15
    claim_value = rig.kv["likes"].value(dedupe_key(NS, "v1", "user3"))
    assert claim_value["expires_at"] == iso(T0 + WINDOW) and claim_value["batch"] == "g-1"


def test_likes_for_several_items_one_counter_write_each():
    rig = Rig()
    for n, (m, u) in enumerate([(V1, "a"), (V2, "a"), (V1, "b"), (V2, "b"), (V1, "c")]):
        rig.step(reserved(n, m, u))
    [commit] = rig.flush()
    counters = {w.key: json.loads(w.value)["like_count"] for w in commit.writes if w.key.endswith("/likes")}
    assert counters == {likes_key(NS, "v1"): 3, likes_key(NS, "v2"): 2}
    bodies = replies(rig.finish(commit))
    assert [(bodies[f"inbox.{n}"]["video_id"], bodies[f"inbox.{n}"]["like_count"]) for n in range(5)] == [
        ("v1", 1), ("v2", 1), ("v1", 2), ("v2", 2), ("v1", 3)]


def test_likes_arriving_in_flight_wait_for_the_next_batch():
    rig = Rig()
    rig.step(reserved(1, V1, "a"))
    [c1] = rig.flush()
    rig.step(reserved(2, V1, "b"))
    rig.step(reserved(3, V1, "c"))
    assert rig.flush() == []  # a likes batch is in flight
    # Plays are a separate kind: they do not wait for likes.
    rig.step(PlayStarted(NS, V2, T0, EventRef(1)))
    [p1] = rig.flush()
    assert p1.bucket == "analytics"
    assert replies(rig.finish(c1)) == {"inbox.1": {"correlation_id": None, "status": "ok", "error": None,
                                                   "video_id": "v1", "like_count": 1}}
    [c2] = rig.flush()
    assert len([w for w in c2.writes if "/dedupe/" in w.key]) == 2
    bodies = replies(rig.finish(c2))
    assert (bodies["inbox.2"]["like_count"], bodies["inbox.3"]["like_count"]) == (2, 3)
    assert rig.like_doc("v1")["like_count"] == 3


def test_max_batch_splits_groups():
    rig = Rig(max_batch=5)  # two claims + one counter, then the rest
    for n, u in enumerate("abcde"):
        rig.step(reserved(n, V1, u))
    [c1] = rig.flush()
    assert len(c1.writes) == 5  # four claims + one counter
    rig.finish(c1)
    [c2] = rig.flush()
    assert len(c2.writes) == 2
    assert replies(rig.finish(c2))["inbox.4"]["like_count"] == 5


def test_dedupe_off_likes_carry_no_claim():
    rig = Rig()
    for n in range(3):
        rig.step(reserved(n, V1, None))
    [c] = rig.flush()
    assert [w.key for w in c.writes] == [likes_key(NS, "v1")]
    out = rig.finish(c)
    assert sorted(b["like_count"] for b in replies(out).values()) == [1, 2, 3]
    assert settled(out) == []


def test_like_duplicate_answers_with_the_stored_count():
    rig = Rig()
    rig.seed_likes(V1, 7)
    rig.step(reserved(1, V1, "a"))
    # Counts still in flight are not shown: only what is durable.
    assert rig.step(LikeDuplicate(to(2), NS, V1)) == [Reply(to(2), {
        "correlation_id": None, "status": "duplicate", "error": None, "video_id": "v1", "like_count": 7})]
    [c] = rig.flush()
    rig.finish(c)
    [r] = rig.step(LikeDuplicate(ReplyTo("inbox.3", "x"), NS, V1))
    assert (r.body["status"], r.body["like_count"], r.body["correlation_id"]) == ("duplicate", 8, "x")
    [r] = rig.step(LikeDuplicate(to(4), NS, V2))
    assert r.body["like_count"] == 0


# --- likes: conflicts -------------------------------------------------------------------------------


def test_conflict_with_a_live_claim_is_a_duplicate_and_the_rest_retry():
    rig = Rig()
    rig.seed_likes(V1, 2)
    for n, u in enumerate(["alice", "bob", "carol"]):
        rig.step(reserved(n, V1, u))
    [c1] = rig.flush()
    # Someone (an earlier life of the daemon) stored bob's claim meanwhile.
    rig.kv["likes"].put(dedupe_key(NS, "v1", "bob"), claim_doc("v1", "bob", T0 - 60, T0 + 3600))
    out = rig.finish(c1)
    assert replies(out) == {"inbox.1": {"correlation_id": None, "status": "duplicate", "error": None,
                                        "video_id": "v1", "like_count": 2}}
    # The ledger learns bob's claim with the expiry KV holds.
    assert settled(out) == [ClaimsSettled(confirmed=(Claim(NS, "v1", "bob", T0, T0 + 3600),))]
    assert rig.like_doc("v1")["like_count"] == 2  # nothing stored by the failed batch
    [c2] = rig.flush()
    assert {w.key for w in c2.writes} == {dedupe_key(NS, "v1", "alice"), dedupe_key(NS, "v1", "carol"),
                                         likes_key(NS, "v1")}
    bodies = replies(rig.finish(c2))
    assert (bodies["inbox.0"]["like_count"], bodies["inbox.2"]["like_count"]) == (3, 4)
    assert rig.like_doc("v1")["like_count"] == 4


def test_conflict_with_an_expired_claim_overwrites_it_at_its_revision():
    rig = Rig()
    key = dedupe_key(NS, "v1", "alice")
    rev = rig.kv["likes"].put(key, claim_doc("v1", "alice", T0 - 2 * WINDOW, T0 - WINDOW))
    rig.step(reserved(1, V1, "alice"))
    [c1] = rig.flush()
    out = rig.finish(c1)
    assert out == []  # nobody answered yet, nothing settled
    [c2] = rig.flush()
    [w] = [w for w in c2.writes if w.key == key]
    assert w.expected_revision == rev
    out = rig.finish(c2)
    assert replies(out)["inbox.1"]["like_count"] == 1
    assert settled(out) == [ClaimsSettled(confirmed=(claim("v1", "alice"),))]
    assert rig.kv["likes"].value(key)["expires_at"] == iso(T0 + WINDOW)


def test_conflict_on_the_counter_retries_with_the_stored_count():
    rig = Rig()
    rig.seed_likes(V1, 3)
    rig.step(reserved(1, V1, "a"))
    [c1] = rig.flush()
    # Another writer moved the counter to 10.
    rig.kv["likes"].put(likes_key(NS, "v1"), {"video_id": "v1", "like_count": 10})
    assert rig.finish(c1) == []
    [c2] = rig.flush()
    [counter] = [w for w in c2.writes if w.key == likes_key(NS, "v1")]
    assert counter.expected_revision == rig.kv["likes"].revision(likes_key(NS, "v1"))
    assert json.loads(counter.value)["like_count"] == 11
    assert replies(rig.finish(c2))["inbox.1"]["like_count"] == 11


def test_retried_likes_keep_their_place_before_newer_ones():
    rig = Rig()
    rig.step(reserved(1, V1, "a"))
    [c1] = rig.flush()
    rig.step(reserved(2, V1, "b"))
    rig.kv["likes"].put(likes_key(NS, "v1"), {"video_id": "v1", "like_count": 0})
    rig.finish(c1)
    [c2] = rig.flush()
    bodies = replies(rig.finish(c2))
    assert (bodies["inbox.1"]["like_count"], bodies["inbox.2"]["like_count"]) == (1, 2)


def test_likes_give_up_after_max_conflicts():
    rig = Rig()
    rig.step(reserved(1, V1, "a"))
    out: list = []
    for attempt in range(MAX_CONFLICTS):
        [c] = rig.flush()
        rig.kv["likes"].put(likes_key(NS, "v1"), {"video_id": "v1", "like_count": 0})  # someone else again
        out = rig.finish(c)
        if attempt < MAX_CONFLICTS - 1:
            assert out == []
    body = replies(out)["inbox.1"]
    assert (body["status"], body["error"]) == ("error", "internal_error")
    assert settled(out) == [ClaimsSettled(released=(claim("v1", "a"),))]
    assert rig.flush() == []
    assert rig.kv["likes"].value(dedupe_key(NS, "v1", "a")) is None


def test_conflict_count_starts_again_after_a_landing():
    rig = Rig()
    rig.step(reserved(1, V1, "a"))
    [c] = rig.flush()
    rig.kv["likes"].put(likes_key(NS, "v1"), {"video_id": "v1", "like_count": 0})
    rig.finish(c)
    [c] = rig.flush()
    assert replies(rig.finish(c))["inbox.1"]["status"] == "ok"
    # A new like may conflict MAX_CONFLICTS - 1 times and still be counted.
    rig.step(reserved(2, V1, "b"))
    for _ in range(MAX_CONFLICTS - 1):
        [c] = rig.flush()
        rig.kv["likes"].put(likes_key(NS, "v1"), dict(rig.like_doc("v1")))
        assert rig.finish(c) == []
    [c] = rig.flush()
    assert replies(rig.finish(c))["inbox.2"] == {"correlation_id": None, "status": "ok", "error": None,
                                                 "video_id": "v1", "like_count": 2}


def test_two_reservations_for_one_claim_key_are_never_one_batch():
    rig = Rig()
    rig.step(LikeReserved(to(1), NS, V1, claim("v1", "alice", T0)))  # the old ledger's reservation
    rig.step(reserved(9, V2, "bob"))
    rig.step(LikeReserved(to(2), NS, V1, claim("v1", "alice", T0 + 1)))  # the restarted ledger's
    [c] = rig.flush()
    keys = [w.key for w in c.writes]
    assert len(keys) == len(set(keys)), f"one batch writes a key twice: {keys}"
    # What KV decides: one like counted, the other a duplicate.
    bodies: dict = dict(replies(rig.finish(c)))
    while commits := rig.flush():
        for c in commits:
            bodies.update(replies(rig.finish(c)))
    assert sorted(bodies[s]["status"] for s in ("inbox.1", "inbox.2")) == ["duplicate", "ok"]
    assert rig.like_doc("v1")["like_count"] == 1


def test_plays_crash_the_writer_after_max_conflicts():
    rig = Rig()
    rig.step(PlayStarted(NS, V1, T0, EventRef(3)))
    for _ in range(MAX_CONFLICTS - 1):
        [c] = rig.flush()
        rig.kv["analytics"].put(global_key(NS), zero_global())  # another writer, every time
        assert rig.finish(c) == []
    [c] = rig.flush()
    rig.kv["analytics"].put(global_key(NS), zero_global())
    with pytest.raises(RuntimeError, match="another writer"):
        rig.finish(c)


def test_plays_of_the_group_that_crashed_the_writer_are_still_held():
    rig = Rig()
    ev = EventRef(3, "ack.3")
    rig.step(PlayStarted(NS, V1, T0, ev))
    with pytest.raises(RuntimeError):
        for _ in range(MAX_CONFLICTS):
            [c] = rig.flush()
            rig.kv["analytics"].put(global_key(NS), zero_global())
            rig.finish(c)
    likes, plays = rig.w.held()
    assert [p.event for p in plays] == [ev]


def test_finish_of_an_unknown_group_is_ignored():
    rig = Rig()
    assert rig.step(CommitFinished("old-7", Landed("old-7", {}))) == []


# --- plays ----------------------------------------------------------------------------------------------


def test_play_is_one_commit_of_item_global_and_now_playing_acked_after_landing():
    rig = Rig()
    ev = EventRef(11, "$JS.ACK.11")
    assert rig.step(PlayStarted(NS, V1, T0 + 5, ev)) == []
    [c] = rig.flush()
    assert c.bucket == "analytics" and c.marker_key == global_key(NS)
    assert {w.key for w in c.writes} == {item_key(NS, "v1"), global_key(NS), now_playing_key(NS)}
    assert all(w.expected_revision == 0 for w in c.writes)
    assert rig.flush() == []
    assert rig.finish(c) == [AckEvent(ev)]
    kv = rig.kv["analytics"]
    item = kv.value(item_key(NS, "v1"))
    assert (item["play_count"], item["last_played_at"], item["duration_seconds"], item["title"]) == (
        1, iso(T0 + 5), 100, "One")
    g = kv.value(global_key(NS))
    assert (g["items_played"], g["duration_played_seconds"], g["last_event_seq"]) == (1, 100, 11)
    np = kv.value(now_playing_key(NS))
    assert (np["video_id"], np["started_at"], np["started_at_ts"], np["event_seq"]) == ("v1", iso(T0 + 5), T0 + 5, 11)
    assert rig.w.last_event_seq == 11


def test_plays_batch_together_and_next_batch_expects_new_revisions():
    rig = Rig()
    rig.step(PlayStarted(NS, V1, T0, EventRef(1)))
    rig.step(PlayStarted(NS, V2, T0 + 100, EventRef(2)))
    rig.step(PlayStarted(NS, V1, T0 + 300, EventRef(3)))
    [c] = rig.flush()
    assert len(c.writes) == 4  # two items, now_playing, global
    assert rig.finish(c) == [AckEvent(EventRef(1)), AckEvent(EventRef(2)), AckEvent(EventRef(3))]
    kv = rig.kv["analytics"]
    assert kv.value(item_key(NS, "v1"))["play_count"] == 2
    assert kv.value(now_playing_key(NS))["video_id"] == "v1"
    assert kv.value(global_key(NS))["items_played"] == 3
    rig.step(PlayStarted(NS, V1, T0 + 400, EventRef(4)))
    [c2] = rig.flush()
    assert {w.key: w.expected_revision for w in c2.writes} == {
        k: kv.revision(k) for k in (item_key(NS, "v1"), global_key(NS), now_playing_key(NS))}
    rig.finish(c2)
    assert kv.value(item_key(NS, "v1"))["play_count"] == 3


def test_event_already_counted_is_acked_not_counted():
    rig = Rig()
    rig.step(PlayStarted(NS, V1, T0, EventRef(5)))
    [c] = rig.flush()
    rig.finish(c)
    for seq in (5, 3):  # a redelivery, or an older event
        assert rig.step(PlayStarted(NS, V2, T0 + 1, EventRef(seq))) == [AckEvent(EventRef(seq))]
    assert rig.flush() == []
    assert rig.kv["analytics"].value(global_key(NS))["items_played"] == 1


def test_redelivered_event_still_waiting_is_acked_once_when_stored():
    rig = Rig()
    rig.step(PlayStarted(NS, V1, T0, EventRef(7, "ack.7.first")))
    assert rig.step(PlayStarted(NS, V1, T0, EventRef(7, "ack.7.again"))) == []
    assert rig.step(EventPassed(EventRef(7, "ack.7.third"))) == []
    [c] = rig.flush()
    assert rig.step(PlayStarted(NS, V1, T0, EventRef(7, "ack.7.inflight"))) == []
    [ack] = rig.finish(c)  # one ack for the event, once it is stored
    assert isinstance(ack, AckEvent) and ack.event.stream_seq == 7
    assert rig.kv["analytics"].value(item_key(NS, "v1"))["play_count"] == 1


def test_event_passed_is_acked_at_once():
    rig = Rig()
    assert rig.step(EventPassed(EventRef(3))) == [AckEvent(EventRef(3))]


def test_plays_conflict_retries_with_what_kv_holds():
    rig = Rig()
    rig.step(PlayStarted(NS, V1, T0, EventRef(1)))
    [c1] = rig.flush()
    rig.finish(c1)
    rig.step(PlayStarted(NS, V2, T0 + 10, EventRef(2)))
    [c2] = rig.flush()
    kv = rig.kv["analytics"]
    kv.put(global_key(NS), dict(kv.value(global_key(NS)), items_queued=4))  # a queue event landed
    assert rig.finish(c2) == []  # not stored, so not acked
    [c3] = rig.flush()
    assert rig.finish(c3) == [AckEvent(EventRef(2))]
    g = kv.value(global_key(NS))
    assert (g["items_played"], g["items_queued"], g["last_event_seq"]) == (2, 4, 2)


def test_plays_conflict_with_a_play_already_stored_acks_it():
    rig = Rig()
    rig.step(PlayStarted(NS, V1, T0, EventRef(9)))
    [c] = rig.flush()
    # An earlier life of the daemon stored seq 9 already.
    rig.kv["analytics"].put(global_key(NS), dict(zero_global(), items_played=1, last_event_seq=9))
    assert rig.finish(c) == [AckEvent(EventRef(9))]
    assert rig.flush() == []


# --- queries ------------------------------------------------------------------------------------------------


def _like_all(rig: Rig, likes: list[tuple[Media, str]]) -> None:
    for n, (m, u) in enumerate(likes):
        rig.step(reserved(1000 + n, m, u))
    [c] = rig.flush()
    rig.finish(c)


def test_top_liked_highest_first_ties_by_video_id():
    rig = Rig()
    vb, va, vc, vd = (Media(v, "yt", f"T{v}") for v in ("b", "a", "c", "d"))
    _like_all(rig, [(vb, "1"), (vb, "2"), (va, "1"), (va, "2"), (vc, "1"), (vc, "2"), (vc, "3"), (vd, "1")])
    [r] = rig.step(TopAsked(ReplyTo("inbox.t", "k"), NS, "liked", 3))
    assert r.body == {"correlation_id": "k", "status": "ok", "error": None, "items": [
        {"video_id": "c", "title": "Tc", "count": 3},
        {"video_id": "a", "title": "Ta", "count": 2},
        {"video_id": "b", "title": "Tb", "count": 2}]}
    [r] = rig.step(TopAsked(to("t2"), NS, "liked", 10))
    assert [i["video_id"] for i in r.body["items"]] == ["c", "a", "b", "d"]
    [r] = rig.step(TopAsked(to("t3"), "empty", "liked", 10))
    assert r.body["items"] == []


def test_top_played():
    rig = Rig()
    for seq, m in enumerate([V2, V1, V2, V3, V1], 1):
        rig.step(PlayStarted(NS, m, T0 + seq, EventRef(seq)))
    [c] = rig.flush()
    rig.finish(c)
    [r] = rig.step(TopAsked(to(1), NS, "played", 10))
    assert r.body["items"] == [{"video_id": "v1", "title": "One", "count": 2},
                               {"video_id": "v2", "title": "Two", "count": 2},
                               {"video_id": "v3", "title": "Three", "count": 1}]
    [r] = rig.step(TopAsked(to(2), NS, "played", 1))
    assert [i["video_id"] for i in r.body["items"]] == ["v1"]


ITEM_FIELDS = {"video_id", "title", "play_count", "queue_count", "like_count", "last_played_at",
               "last_queued_at", "duration_seconds"}


def test_stats_shapes():
    rig = Rig()
    [r] = rig.step(StatsAsked(ReplyTo("inbox.s", "c"), NS))
    assert r.body == {"correlation_id": "c", "status": "ok", "error": None, "global": zero_global()}
    [r] = rig.step(StatsAsked(to(1), NS, video_id="nope", playlist_id="pl"))
    assert r.body["item"] == {"video_id": "nope", "title": None, "play_count": 0, "queue_count": 0,
                              "like_count": 0, "last_played_at": None, "last_queued_at": None,
                              "duration_seconds": None}
    assert r.body["playlist"] is None
    rig.step(PlayStarted(NS, V1, T0, EventRef(1)))
    [c] = rig.flush()
    rig.finish(c)
    _like_all(rig, [(V1, "a"), (V1, "b")])
    [r] = rig.step(StatsAsked(to(2), NS, video_id="v1"))
    assert set(r.body) == {"correlation_id", "status", "error", "global", "item"}
    item = r.body["item"]
    assert set(item) == ITEM_FIELDS
    assert (item["play_count"], item["like_count"], item["title"], item["duration_seconds"],
            item["last_played_at"]) == (1, 2, "One", 100, iso(T0))
    assert r.body["global"] == rig.kv["analytics"].value(global_key(NS))
    assert r.body["global"]["items_played"] == 1
    # A playlist known from the start-up scan shows its apply document.
    rig.w.book(NS).load(("playlists", "pl"), StoredEntry(1, {"playlist_id": "pl", "apply_count": 2}))
    [r] = rig.step(StatsAsked(to(3), NS, playlist_id="pl"))
    assert r.body["playlist"] == {"playlist_id": "pl", "apply_count": 2} and "item" not in r.body


def test_tick_materialises_dirty_rankings_at_most_every_period():
    rig = Rig(materialise_every=10.0)
    assert rig.step(Tick()) == []  # nothing changed
    _like_all(rig, [(V1, "a")])
    [put] = rig.step(Tick())
    assert put == PutDocument("analytics", ranking_key(NS, "liked"), put.value)
    assert put.value["items"] == [{"video_id": "v1", "title": "One", "count": 1}]
    _like_all(rig, [(V2, "a")])
    assert rig.step(Tick()) == []  # within the period
    rig.now += 10
    [put] = rig.step(Tick())
    assert [i["video_id"] for i in put.value["items"]] == ["v1", "v2"]


def test_unknown_message_raises():
    with pytest.raises(TypeError):
        Rig().step(object())


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
        self.rig = Rig(max_batch=7, max_like_groups=3, pipeline_min=1) if self.pipelined else Rig(max_batch=7)
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
        queue = list(effects)
        while queue:
            e = queue.pop(0)
            if isinstance(e, Reply):
                self.record(e)
            elif isinstance(e, Forward) and e.to == "dedupe_ledger":
                queue += self.ledger.step(e.message, self.rig.now)
            elif isinstance(e, Forward) and e.to == "counter_writer":
                queue += self.rig.step(e.message)
            elif isinstance(e, AckEvent):
                self.check_ack(e.event)
            elif isinstance(e, Commit):
                self.tainted.discard(e.group_id)
                if e.bucket == "analytics" or not self.pipelined:
                    assert all(c.bucket != e.bucket for c in self.in_flight.values()), "two batches of one kind"
                else:
                    assert sum(c.bucket == "likes" for c in self.in_flight.values()) < 3, "more likes groups than allowed"
                self.in_flight[e.group_id] = e
            elif isinstance(e, PutDocument):
                pass
            else:
                raise AssertionError(f"unexpected effect {e!r}")

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
            self.route([Forward("counter_writer", LikeReserved(reply, NS, media, None))])
        else:
            self.route([Forward("dedupe_ledger", LikeForItem(reply, NS, user, media))])

    @rule(media=st.sampled_from(ITEMS), numbered=st.booleans())
    def play(self, media: Media, numbered: bool) -> None:
        ev = None
        if numbered:
            ev = EventRef(self.next_seq, f"ack.{self.next_seq}")
            self.delivered[self.next_seq] = media
            self.next_seq += 1
        else:
            self.unnumbered[media.video_id] += 1
        self.route([Forward("counter_writer", PlayStarted(NS, media, self.rig.now, ev))])

    @precondition(lambda self: self.delivered)
    @rule(data=st.data())
    def redeliver(self, data) -> None:
        seq = data.draw(st.sampled_from(sorted(self.delivered)))
        self.route([Forward("counter_writer", PlayStarted(NS, self.delivered[seq], self.rig.now,
                                                          EventRef(seq, f"ack.{seq}.again")))])

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
