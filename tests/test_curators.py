"""Curator credit (docs/contract-social-web.md, "Curators"): who queued the
entry that played gets its plays and the likes given on it, exactly, through
unlikes, restarts and windows; ``top_curators``; against a real nats-server."""

from __future__ import annotations

import json

from conftest import playing, plays_of, unique_config, wait_until
from support.events import event_bytes, event_subject, queue_item

from kryten_likes.store import ANALYTICS_BUCKET, LIKES_BUCKET
from kryten_likes.store.keys import curator_key, record_key

DAY = 86400


def _queue(h, vid: str, by: str, uid: int) -> None:
    h.publish_event("queue", queue_item("yt", vid, by=by, uid=uid))


def _set_current(h, uid: int) -> None:
    subject = event_subject(h.config.cytube.channel, "setCurrent")
    data = event_bytes("setCurrent", {"uid": uid}, h.config.cytube.channel)
    h.portal.call(lambda: h.nc.publish(subject, data))
    h.portal.call(h.nc.flush)


def _play(h, vid: str, n: int = 1) -> None:
    h.change_media(vid)
    playing(h, vid)
    wait_until(lambda: plays_of(h, vid) == n)


def _curators(h, window: str = "all") -> list[tuple[str, int, int]]:
    r = h.request("top_curators", {"window": window})
    assert (r["status"], r["window"]) == ("ok", window), r
    return [(i["username"], i["likes_received"], i["plays"]) for i in r["items"]]


def test_likes_and_plays_credit_who_queued_the_entry(harness):
    h = harness(unique_config(dedupe_enabled=False))
    _queue(h, "v1", "Bob", 1)
    _queue(h, "v2", "Carol", 2)
    _play(h, "v1")
    for name in ("a", "b", "c"):
        assert h.request("like", {"username": name})["status"] == "ok"
    _play(h, "v2")
    assert h.request("like", {"username": "a"})["status"] == "ok"
    assert _curators(h) == [("Bob", 3, 1), ("Carol", 1, 1)]
    assert h.request("unlike", {"username": "b", "video_id": "v1"})["status"] == "ok"
    assert _curators(h) == [("Bob", 2, 1), ("Carol", 1, 1)]
    ns = h.config.analytics.namespace
    assert h.kv(LIKES_BUCKET, curator_key(ns, "bob"))["likes_received"] == 2
    assert h.kv(ANALYTICS_BUCKET, curator_key(ns, "bob"))["plays"] == 1
    assert h.kv(LIKES_BUCKET, record_key(ns, "v2", "a"))["curator"] == "Carol"
    bob = h.request("user_likes", {"username": "BOB"})
    assert (bob["likes_received"], bob["plays"], bob["likes_given"]) == (2, 1, 0)
    h.stop()
    h.start()  # read back from KV, the credits of recent likes included
    assert _curators(h) == [("Bob", 2, 1), ("Carol", 1, 1)]
    assert h.request("unlike", {"username": "a", "video_id": "v1"})["status"] == "ok"
    assert _curators(h) == [("Bob", 1, 1), ("Carol", 1, 1)]


def test_set_current_picks_the_entry_when_one_media_is_queued_twice(harness):
    h = harness()
    _queue(h, "v3", "Dan", 3)
    _queue(h, "v3", "Eve", 4)  # the same media again, by someone else
    wait_until(lambda: h.request("stats", {"video_id": "v3"})["item"]["queue_count"] == 2)
    _set_current(h, 3)
    _play(h, "v3")
    assert h.request("like", {"username": "x"})["status"] == "ok"
    assert _curators(h) == [("Dan", 1, 1)]


def test_a_play_of_an_entry_no_one_is_known_to_have_queued_credits_no_one(harness):
    h = harness()
    _play(h, "lonely")
    assert h.request("like", {"username": "x"})["status"] == "ok"
    assert _curators(h) == []


def test_curator_windows_roll_with_the_clock(harness):
    h = harness()
    _queue(h, "v1", "Bob", 1)
    _play(h, "v1")
    assert h.request("like", {"username": "a"})["status"] == "ok"
    h.clock.advance(2 * DAY)
    _queue(h, "v2", "Carol", 2)
    _play(h, "v2")
    assert h.request("like", {"username": "a"})["status"] == "ok"
    assert _curators(h, "day") == [("Carol", 1, 1)]
    assert _curators(h, "week") == [("Bob", 1, 1), ("Carol", 1, 1)]
    bad = h.request("top_curators", {"window": "fortnight"})
    assert (bad["error"], bad["detail"][:6]) == ("invalid_request", "window")


def test_the_bridges_playlist_read_at_start_names_the_curators(harness):
    config = unique_config()
    h = harness(config, start=False)
    bucket = f"kryten_{config.cytube.channel}_playlist"
    items = [{"uid": 7, "media": {"id": "k1", "type": "yt", "title": "K", "seconds": 30}, "queueby": "Kim"}]

    async def seed():
        js = h.nc.jetstream()
        kv = await js.create_key_value(bucket=bucket)
        await kv.put("items", json.dumps(items).encode())

    h.portal.call(seed)
    h.start()
    _play(h, "k1")
    assert h.request("like", {"username": "x"})["status"] == "ok"
    assert _curators(h) == [("Kim", 1, 1)]
