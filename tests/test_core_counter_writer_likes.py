"""CounterWriter, likes: group commit of likes, and conflicts (of likes, and
of plays that crash the writer), against a fake KV
(``support.counter_writer_rig``).
"""

from __future__ import annotations

import json

import pytest

from kryten_likes.store.documents import zero_global
from kryten_likes.actors.counter_writer import MAX_CONFLICTS
from kryten_likes.clock import iso
from kryten_likes.messages import (
    Claim, ClaimsSettled, CommitFinished, EventRef, LikeDuplicate, LikeReserved, PlayStarted, ReplyTo,
)
from kryten_likes.effects import Reply
from kryten_likes.store.keys import record_key
from kryten_likes.store import Landed, dedupe_key, global_key, likes_key
from support.counter_writer_rig import (
    NS, T0, V1, V2, WINDOW, Rig, claim, claim_doc, replies, reserved, settled, to,
)


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
    records = [w for w in commit.writes if "/liked." in w.key]
    assert not [w for w in commit.writes if "/users/" in w.key]  # totals ride on the records
    assert len(claims) == 10 and len(counters) == 1 and len(records) == 10
    assert len(commit.writes) == 21
    assert [json.loads(w.value)["likes_given"] for w in records] == [1] * 10
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
    # A like writes its claim and its record (2, its user's totals ride on the
    # record), and the group its item's counter once: 1 + 3 * 2 = 7 for three
    # likes, 9 for four.
    rig = Rig(max_batch=8)
    for n, u in enumerate("abcde"):
        rig.step(reserved(n, V1, u))
    [c1] = rig.flush()
    assert len(c1.writes) == 7  # three likes: a fourth would make 9
    rig.finish(c1)
    [c2] = rig.flush()
    assert len(c2.writes) == 5
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
                                         likes_key(NS, "v1"), record_key(NS, "v1", "alice"),
                                         record_key(NS, "v1", "carol")}
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
