"""Plays (AC-002, REQ-002): every new start counted once; re-sent media not."""

from __future__ import annotations

from conftest import playing, plays_of, unique_config, wait_until

from kryten_likes.store import ANALYTICS_BUCKET, global_key, item_key


def test_item_started_adds_one_play_ac002(harness):
    h = harness()
    h.change_media("x1", seconds=200)
    wait_until(lambda: plays_of(h, "x1") == 1)
    ns = h.config.analytics.namespace
    item = h.kv(ANALYTICS_BUCKET, item_key(ns, "x1"))
    assert (item["play_count"], item["duration_seconds"], item["schema_version"]) == (1, 200, 1)
    assert item["last_played_at"].endswith("Z")
    g = h.kv(ANALYTICS_BUCKET, global_key(ns))
    assert (g["items_played"], g["duration_played_seconds"]) == (1, 200)


def test_resent_media_on_reconnect_is_not_a_play(harness):
    h = harness()
    h.change_media("x1", seconds=100)
    h.change_media("x1", seconds=100, current_time=42.5)  # bridge reconnect
    h.change_media("x2", seconds=50, current_time=3.0)    # another item: counts whatever its time
    wait_until(lambda: plays_of(h, "x2") == 1)
    assert plays_of(h, "x1") == 1
    h.change_media("x2", seconds=50, current_time=0)      # the same item again from 0: a replay
    wait_until(lambda: plays_of(h, "x2") == 2)
    g = h.request("stats", {})["global"]
    assert (g["items_played"], g["duration_played_seconds"]) == (3, 200)
    assert h.request("top_played", {"limit": 2})["items"] == [
        {"video_id": "x2", "title": "title of x2", "count": 2},
        {"video_id": "x1", "title": "title of x1", "count": 1}]


def test_now_playing_reports_the_item_and_when_it_started(harness):
    h = harness()
    r = h.request("now_playing", {"correlation_id": "np"})
    assert r == {"correlation_id": "np", "status": "ok", "error": None, "video_id": None, "title": None,
                 "started_at": None}
    h.change_media("x1", title="First")
    playing(h, "x1")
    r = h.request("now_playing", {})
    assert (r["title"], r["started_at"]) == ("First", "2026-01-01T00:00:00Z")


def test_current_media_is_read_from_the_bridge_kv_at_start(harness, portal):
    config = unique_config()
    h = harness(config, start=False)

    async def bridge_state():
        js = h.nc.jetstream()
        kv = await js.create_key_value(bucket=f"kryten_{config.cytube.channel}_playlist")
        await kv.put("current", b'{"id": "br1", "title": "From the bridge", "seconds": 30, "type": "yt"}')
    portal.call(bridge_state)
    h.start()
    r = h.request("now_playing", {})
    assert (r["video_id"], r["title"]) == ("br1", "From the bridge")
    assert h.request("like", {"username": "alice"})["like_count"] == 1
