"""The counter writer's parts, each on its own (actors/counter_writer.py
composes them): the read model, the groups in flight, the likes committer,
the analytics committer and the corrections. The whole writer is tested in
test_core_counter_writer_*.py; these pin down what each part owns."""

from __future__ import annotations

import itertools

from kryten_likes.actors.adjustments import Corrections
from kryten_likes.actors.analytics_committer import AnalyticsCommitter
from kryten_likes.actors.groups import AnalyticsGroup, GroupsInFlight, LikeGroup
from kryten_likes.actors.likes_committer import LikesCommitter
from kryten_likes.actors.read_model import MATERIALISE_PER_TICK, ReadModel
from kryten_likes.actors.request_memory import RequestMemory
from kryten_likes.domain import EventRef
from kryten_likes.effects import AckEvent, Commit, PutDocument
from kryten_likes.messages import (
    AdjustRequested, ClaimsSettled, EnqueuesInFlight, LikeDuplicate, PlayStarted, QueueObserved, StatsAsked,
)
from kryten_likes.store import global_key, item_key, likes_key, now_playing_key
from support.counter_writer_rig import NS, T0, V1, V2, FakeKV, claim_doc, replies, reserved, to


def parts():
    read = ReadModel({}, NS, materialise_every=10.0)
    flying = GroupsInFlight()
    ids = (f"g-{n}" for n in itertools.count(1))
    return read, flying, lambda: next(ids)


def likes_committer(**kw):
    read, flying, new_id = parts()
    return read, flying, LikesCommitter(read, flying, new_id, RequestMemory(600.0), max_batch=900, **kw)


# --- read model -------------------------------------------------------------------------


def test_a_read_of_an_unknown_namespace_keeps_no_book():
    read, _, _ = parts()
    assert read.peek("elsewhere").like_count("v1") == 0
    assert "elsewhere" not in read.books
    read.book("elsewhere")
    assert "elsewhere" in read.books


def test_stats_of_an_unknown_playlist_is_null_and_of_an_item_its_counts():
    read, _, _ = parts()
    [r] = read.stats(StatsAsked(to(1), NS, "v1", "p1"), T0)
    assert r.body["playlist"] is None and r.body["item"]["like_count"] == 0 and r.body["global"]["items_played"] == 0


def test_snapshots_are_written_at_most_every_period_a_bounded_number_at_a_time_own_namespace_first():
    read, _, _ = parts()
    for n in range(MATERIALISE_PER_TICK + 5):
        read.ranking_moved(f"other{n:03}", "liked")
    read.ranking_moved(NS, "played")
    first = read.materialise(T0)
    assert len(first) == MATERIALISE_PER_TICK and all(isinstance(p, PutDocument) for p in first)
    assert first[0].key == f"ns/{NS}/rankings/top_played"
    assert read.materialise(T0 + 5) == []  # within the period
    assert len(read.materialise(T0 + 10)) == 6  # the rest, then nothing is stale
    assert read.materialise(T0 + 30) == []


def test_snapshots_of_other_namespaces_go_in_the_order_they_went_stale() -> None:
    """Oldest stale first, not by name: a namespace late in the alphabet is
    not starved by others going stale again and again."""
    read, _, _ = parts()
    read.ranking_moved("zzz", "liked")
    for n in range(MATERIALISE_PER_TICK):
        read.ranking_moved(f"aaa{n:03}", "liked")
    read.ranking_moved("zzz", "liked")  # stale again: keeps its place
    first = read.materialise(T0)
    assert first[0].key == "ns/zzz/rankings/top_liked"
    read.ranking_moved("aaa000", "liked")  # taken, then stale again: now behind aaa031
    assert [p.key for p in read.materialise(T0 + 10)] == ["ns/aaa031/rankings/top_liked",
                                                        "ns/aaa000/rankings/top_liked"]


# --- groups in flight ----------------------------------------------------------------------


def test_groups_in_flight_say_which_documents_are_being_written_and_in_which_bucket():
    flying = GroupsInFlight()
    likes = LikeGroup("g-1", (), [], {}, {likes_key(NS, "v1"): {}}, [], T0)
    flying.add(likes)
    assert flying.writing(likes_key(NS, "v1")) and not flying.writing(likes_key(NS, "v2"))
    assert flying.in_bucket("likes") == [likes] and flying.in_bucket("analytics") == []
    assert flying.keys_written("likes") == {likes_key(NS, "v1")}
    assert flying.of_kind(AnalyticsGroup) == []
    flying.remove("g-1")
    assert not flying


# --- likes committer -----------------------------------------------------------------------


def test_one_group_holds_each_claim_and_one_write_per_item_and_each_like_gets_its_own_count():
    read, flying, lc = likes_committer()
    kv = FakeKV()
    for n, (media, user) in enumerate([(V1, "a"), (V1, "b"), (V2, "a")], 1):
        assert lc.take(reserved(n, media, user), T0) == []
    [commit] = lc.groups(T0)
    assert sorted(w.key for w in commit.writes if w.key.startswith(f"ns/{NS}/items/")) == [
        likes_key(NS, "v1"), likes_key(NS, "v2")]
    assert sum("/dedupe/" in w.key for w in commit.writes) == 3
    assert len(flying.in_bucket("likes")) == 1 and not lc.pending
    out = lc.landed(flying.get(commit.group_id), kv.apply(commit), T0)
    got = replies(out)
    assert [got[f"inbox.{n}"]["like_count"] for n in (1, 2, 3)] == [1, 2, 1]
    [settled] = [e for e in out if isinstance(e, ClaimsSettled)]
    assert len(settled.confirmed) == 3
    assert read.peek(NS).like_count("v1") == 2  # the read model took the landed documents
    assert (NS, "liked") in read.dirty_home  # (its snapshot goes first)


def test_a_like_of_an_item_in_flight_waits_for_the_next_group():
    read, flying, lc = likes_committer(max_groups=3, pipeline_min=1)
    kv = FakeKV()
    lc.take(reserved(1, V1, "a"), T0)
    [first] = lc.groups(T0)
    lc.take(reserved(2, V1, "b"), T0)
    lc.take(reserved(3, V2, "c"), T0)
    [second] = lc.groups(T0)  # V2 only: V1's next revision is not known yet
    assert {w.key for w in second.writes if "/items/" in w.key} == {likes_key(NS, "v2")}
    assert [l.reply for l in lc.pending] == [to(2)]
    lc.landed(flying.get(first.group_id), kv.apply(first), T0)
    flying.remove(first.group_id)
    [third] = lc.groups(T0)
    assert {w.key for w in third.writes if "/items/" in w.key} == {likes_key(NS, "v1")}


def test_a_conflict_on_a_live_claim_answers_duplicate_and_the_rest_try_again():
    read, flying, lc = likes_committer()
    kv = FakeKV()
    lc.take(reserved(1, V1, "a"), T0)
    lc.take(reserved(2, V2, "b"), T0)
    [commit] = lc.groups(T0)
    kv.put(f"ns/{NS}/dedupe/v1/a", claim_doc("v1", "a", T0 - 10, T0 + 100))  # someone stored it meanwhile
    out = lc.conflicted(flying.get(commit.group_id), kv.apply(commit), T0)
    flying.remove(commit.group_id)
    assert replies(out) == {"inbox.1": {"correlation_id": None, "status": "duplicate", "error": None,
                                        "video_id": "v1", "like_count": 0}}
    assert [l.reply for l in lc.pending] == [to(2)]
    assert lc.conflicts_in_row == 1


def test_a_duplicate_from_the_ledger_is_answered_with_the_stored_count():
    read, _, lc = likes_committer()
    [r] = lc.take(LikeDuplicate(to(1), NS, V1, "a"), T0)
    assert r.body["status"] == "duplicate" and r.body["like_count"] == 0


# --- analytics committer -----------------------------------------------------------------------


def analytics_committer(**kw):
    read, flying, new_id = parts()
    return read, flying, AnalyticsCommitter(read, flying, new_id, max_batch=900, **kw)


def test_a_play_is_one_group_of_the_item_the_global_counters_and_now_playing_acked_once_landed():
    read, flying, ac = analytics_committer()
    kv = FakeKV()
    ev = EventRef(7, "ack.7")
    ac.take(PlayStarted(NS, V1, T0, ev), T0)
    [commit] = ac.groups(T0)
    assert {w.key for w in commit.writes} == {item_key(NS, "v1"), global_key(NS), now_playing_key(NS)}
    assert ac.groups(T0) == []  # one analytics group at a time
    assert ac.landed(flying.get(commit.group_id), kv.apply(commit), T0) == [AckEvent(ev)]
    assert read.last_seq("play") == 7 and read.peek(NS).play_count("v1") == 1


def test_an_event_already_stored_is_acked_not_counted_again():
    read, flying, ac = analytics_committer()
    kv = FakeKV()
    ac.take(PlayStarted(NS, V1, T0, EventRef(7, "ack.7")), T0)
    [commit] = ac.groups(T0)
    ac.landed(flying.get(commit.group_id), kv.apply(commit), T0)
    flying.remove(commit.group_id)
    assert ac.take(PlayStarted(NS, V1, T0, EventRef(7, "ack.7b")), T0) == [AckEvent(EventRef(7, "ack.7b"))]
    assert ac.groups(T0) == []


def test_after_a_restart_queue_events_wait_until_the_apply_actor_says_what_is_in_flight():
    read, flying, ac = analytics_committer(await_applies=True)
    seen = QueueObserved(V1, "someone", EventRef(3, "ack.3"))
    assert ac.take(seen, T0) == [] and ac.held() == []
    ac.applies_known(EnqueuesInFlight(()), T0)
    assert seen in ac.held()


# --- corrections ---------------------------------------------------------------------------------


def test_a_correction_waits_while_a_likes_group_writes_its_document():
    read, flying, new_id = parts()
    corrections = Corrections(read, flying, new_id)
    flying.add(LikeGroup("g-x", (), [], {}, {likes_key(NS, "v1"): {}}, [], T0))
    corrections.take(AdjustRequested(to(1), NS, "v1", "like_count", 5, "spam"), T0)
    assert corrections.groups(T0) == []
    flying.remove("g-x")
    [commit] = corrections.groups(T0)
    assert isinstance(commit, Commit) and commit.bucket == "likes"
    assert corrections.held() == [AdjustRequested(to(1), NS, "v1", "like_count", 5, "spam")]
