"""CounterWriter, queries: top_liked, top_played, stats and the rankings' tick,
against a fake KV (``support.counter_writer_rig``).
"""

from __future__ import annotations

import pytest

from kryten_likes.store.documents import zero_global
from kryten_likes.clock import iso
from kryten_likes.messages import EventRef, Media, PlayStarted, ReplyTo, StatsAsked, Tick, TopAsked
from kryten_likes.effects import PutDocument
from kryten_likes.store import StoredEntry, global_key, ranking_key
from support.counter_writer_rig import NS, T0, V1, V2, V3, Rig, reserved, to


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
    assert r.body == {"correlation_id": "k", "status": "ok", "error": None, "window": "all", "items": [
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
