"""CounterWriter, plays: one commit of item, global and now-playing, batched,
acked once stored, retried on conflict, against a fake KV
(``support.counter_writer_rig``).
"""

from __future__ import annotations



from kryten_likes.store.documents import zero_global
from kryten_likes.clock import iso
from kryten_likes.messages import EventPassed, EventRef, PlayStarted
from kryten_likes.effects import AckEvent
from kryten_likes.store import global_key, item_key, now_playing_key
from support.counter_writer_rig import NS, T0, V1, V2, Rig


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
