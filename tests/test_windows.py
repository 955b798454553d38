"""``window`` on the top lists (docs/contract-social-web.md), against a real
nats-server: counts by hour, rolling with the daemon's (fake) clock, exact
after a restart and after an unlike."""

from __future__ import annotations

from conftest import playing, plays_of, unique_config, wait_until

from kryten_likes.store import LIKES_BUCKET, likes_key

DAY = 86400


def _top(h, ranking: str, window: str) -> list[tuple[str, int]]:
    r = h.request(f"top_{ranking}", {"window": window})
    assert (r["status"], r["window"]) == ("ok", window), r
    return [(i["video_id"], i["count"]) for i in r["items"]]


def test_top_lists_by_window_roll_with_the_clock_and_survive_a_restart(harness):
    h = harness(unique_config(dedupe_enabled=False))
    h.change_media("old")
    playing(h, "old")
    wait_until(lambda: plays_of(h, "old") == 1)
    for name in ("a", "b", "c"):
        assert h.request("like", {"username": name})["status"] == "ok"
    h.clock.advance(3 * DAY)
    h.change_media("new")
    playing(h, "new")
    wait_until(lambda: plays_of(h, "new") == 1)  # the play is stored by its own batch
    assert h.request("like", {"username": "a"})["status"] == "ok"
    assert _top(h, "liked", "all") == [("old", 3), ("new", 1)]
    assert _top(h, "liked", "day") == [("new", 1)]
    assert _top(h, "liked", "week") == [("old", 3), ("new", 1)]
    assert _top(h, "played", "day") == [("new", 1)]
    assert _top(h, "played", "month") == [("new", 1), ("old", 1)]
    assert h.request("top_liked", {})["window"] == "all"  # echoed when not asked
    h.stop()
    h.start()  # read back from the documents' hours
    h.clock.advance(5 * DAY)  # old's likes are 8 days old now
    assert _top(h, "liked", "week") == [("new", 1)]
    assert _top(h, "liked", "month") == [("old", 3), ("new", 1)]
    doc = h.kv(LIKES_BUCKET, likes_key(h.config.analytics.namespace, "old"))
    assert sum(doc["hours"].values()) == 3


def test_an_unlike_leaves_the_window_it_was_counted_in(harness):
    h = harness()
    h.change_media("v1")
    playing(h, "v1")
    for name in ("a", "b"):
        assert h.request("like", {"username": name})["status"] == "ok"
    assert h.request("unlike", {"username": "a"})["like_count"] == 1
    assert _top(h, "liked", "day") == [("v1", 1)]
    assert _top(h, "liked", "all") == [("v1", 1)]


def test_a_window_not_in_the_contract_is_refused_by_name(harness):
    h = harness()
    for bad in ("year", "", 7, ["week"], "WEEK"):
        r = h.request("top_liked", {"window": bad, "correlation_id": "w"})
        assert (r["status"], r["error"], r["correlation_id"]) == ("error", "invalid_request", "w"), r
        assert r["detail"].startswith("window"), r
