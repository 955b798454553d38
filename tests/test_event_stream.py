"""Where events come from: the bridge's subjects whatever our subject prefix,
and event marks bound to the stream they count (a new stream is read from its
beginning, an earlier one from where it was left)."""

from __future__ import annotations

import attrs
from conftest import playing, plays_of, unique_config, wait_until
from hypothesis import given
from hypothesis import strategies as st

from kryten_likes.config import event_channel_token
from kryten_likes.event_marks import KEPT_STREAMS, EventStream, bind_marks
from kryten_likes.store import ANALYTICS_BUCKET, global_key


def test_plays_count_with_a_non_default_subject_prefix(harness):
    # The bridge publishes on kryten.events.cytube.{channel}.*; our prefix
    # (here "t<n>", not "kryten") is for our command subjects only.
    h = harness()
    assert h.config.nats.subject_prefix != "kryten"
    h.change_media("p1")
    wait_until(lambda: plays_of(h, "p1") == 1)
    playing(h, "p1")


def _delete_event_stream(h, portal) -> None:
    name = f"KRYTEN_LIKES_EVENTS_kryten_{event_channel_token(h.config.cytube.channel)}"
    portal.call(lambda: h.nc.jetstream().delete_stream(name))


def test_a_stream_made_again_is_read_from_its_beginning(harness, portal):
    h = harness()
    for vid in ("a", "b", "c"):
        h.change_media(vid)
    wait_until(lambda: plays_of(h, "c") == 1)
    g = h.kv(ANALYTICS_BUCKET, global_key(h.config.analytics.namespace))
    assert g["last_event_seq"] == 3 and g["event_stream"]["name"].startswith("KRYTEN_LIKES_EVENTS_")
    h.stop()
    _delete_event_stream(h, portal)
    h.start()  # makes the stream again: sequences start at 1
    h.change_media("d")
    h.change_media("e")
    wait_until(lambda: plays_of(h, "e") == 1)
    assert plays_of(h, "d") == 1  # sequence 1 of the new stream: not "already counted"
    g = h.request("stats", {})["global"]
    assert g["items_played"] == 5 and g["last_event_seq"] == 2
    assert g["event_marks"] == {}  # the old stream of that name is gone for good


def test_a_changed_channel_in_one_namespace_counts_each_streams_events_once(harness):
    first = unique_config()
    h = harness(first)
    h.change_media("a")
    wait_until(lambda: plays_of(h, "a") == 1)
    h.close()
    # Same namespace and prefix, another channel: another stream.
    second = attrs.evolve(first, cytube=attrs.evolve(first.cytube, channel=first.cytube.channel + "b"))
    h2 = harness(second)
    h2.change_media("b")
    wait_until(lambda: plays_of(h2, "b") == 1)
    h2.close()
    # Back to the first channel: its event counted before is not counted again.
    h3 = harness(first)
    h3.change_media("c")
    wait_until(lambda: plays_of(h3, "c") == 1)
    assert plays_of(h3, "a") == 1
    assert h3.request("stats", {})["global"]["items_played"] == 3


# --- the rule alone (pure) ---------------------------------------------------------

S1 = EventStream("S", "2026-01-01T00:00:00+00:00", last_seq=10)


def test_marks_of_the_same_stream_are_kept():
    v = {"items_played": 4, "last_event_seq": 7, "last_queue_seq": 5, "event_stream": S1.identity()}
    assert bind_marks(v, S1) == v


def test_a_stream_made_again_under_the_same_name_starts_from_zero():
    v = {"last_event_seq": 7, "last_queue_seq": 5, "event_stream": S1.identity()}
    again = EventStream("S", "2026-02-01T00:00:00+00:00", last_seq=2)
    b = bind_marks(v, again)
    assert (b["last_event_seq"], b["last_queue_seq"], b["event_stream"]) == (0, 0, again.identity())


def test_a_document_from_before_binding_is_adopted_unless_its_marks_are_beyond_the_stream():
    legacy = {"last_event_seq": 7, "last_queue_seq": 5}
    assert bind_marks(legacy, S1)["last_event_seq"] == 7
    short = EventStream("S", "x", last_seq=3)  # a recreated stream shows itself by being shorter
    assert bind_marks(legacy, short)["last_event_seq"] == 0


@given(st.lists(st.tuples(st.sampled_from(["A", "B", "C"]), st.sampled_from(["t1", "t2"]),
                          st.integers(0, 50), st.integers(0, 50)), min_size=1, max_size=30))
def test_switching_streams_restores_each_streams_own_marks(steps):
    """Model: each (name, id) stream has the marks last stored for it."""
    value: dict = {"items_played": 0}
    model: dict[tuple[str, str], tuple[int, int]] = {}
    for name, created, plays, queue in steps:
        s = EventStream(name, created, last_seq=1000)
        value = bind_marks(value, s)
        marks = (value.get("last_event_seq", 0), value.get("last_queue_seq", 0))
        assert marks == model.get((name, created), (0, 0))
        # the daemon reads on: marks only grow
        value["last_event_seq"] = max(marks[0], plays)
        value["last_queue_seq"] = max(marks[1], queue)
        # a stream made again under a name forgets the old one's marks
        model = {k: m for k, m in model.items() if k[0] != name or k[1] == created}
        model[(name, created)] = (value["last_event_seq"], value["last_queue_seq"])
        assert len(value.get("event_marks", {})) <= KEPT_STREAMS


def test_the_stream_id_is_kept_in_its_metadata_and_survives_a_restart(harness, portal):
    """The id, not the creation time (which each node of a cluster reports
    its own way), tells a stream made again apart; a stream without one
    (an earlier version's) gets one once."""
    from kryten_likes.events import STREAM_ID

    h = harness()
    name = f"KRYTEN_LIKES_EVENTS_kryten_{event_channel_token(h.config.cytube.channel)}"
    info = portal.call(lambda: h.nc.jetstream().stream_info(name))
    first = info.config.metadata[STREAM_ID]
    h.change_media("a")
    wait_until(lambda: plays_of(h, "a") == 1)
    g = h.kv(ANALYTICS_BUCKET, global_key(h.config.analytics.namespace))
    assert g["event_stream"] == {"name": name, "id": first}
    h.stop()
    h.start()
    h.change_media("b")
    wait_until(lambda: plays_of(h, "b") == 1)
    assert plays_of(h, "a") == 1  # not read again from the beginning
    info = portal.call(lambda: h.nc.jetstream().stream_info(name))
    assert info.config.metadata[STREAM_ID] == first
