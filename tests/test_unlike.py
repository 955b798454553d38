"""``unlike`` against a real nats-server (docs/contract-social-web.md, "Unlike")."""

from __future__ import annotations

from conftest import playing, unique_config

from kryten_likes.store import LIKES_BUCKET, likes_key
from kryten_likes.store.keys import record_key, user_key


def test_unlike_takes_the_like_back_and_a_later_like_counts_again(harness):
    h = harness(unique_config(rate_burst=10))
    h.change_media("abc")
    playing(h, "abc")
    assert h.request("like", {"username": "Ann"})["like_count"] == 1
    assert h.request("like", {"username": "bob"})["like_count"] == 2
    r = h.request("unlike", {"username": "ANN", "correlation_id": "u-1"})
    assert r == {"correlation_id": "u-1", "status": "ok", "error": None, "video_id": "abc", "like_count": 1}
    assert h.request("unlike", {"username": "ann", "correlation_id": "u-1"}) == r  # a retry: the same reply
    assert h.request("unlike", {"username": "ann"})["error"] == "not_liked"  # twice
    ns = h.config.analytics.namespace
    assert h.kv(LIKES_BUCKET, likes_key(ns, "abc"))["like_count"] == 1
    unliked = h.kv(LIKES_BUCKET, record_key(ns, "abc", "ann"))
    assert unliked["unliked_at"] is not None and unliked["likes_given"] == 0
    assert h.kv(LIKES_BUCKET, user_key(ns, "ann")) is None
    assert [u["username"] for u in h.request("likers", {})["users"]] == ["bob"]
    again = h.request("like", {"username": "ann"})  # the claim went with the unlike
    assert (again["status"], again["like_count"]) == ("ok", 2), again
    assert h.request("user_likes", {"username": "ann"})["likes_given"] == 1


def test_unlike_outcomes_by_the_contracts_order_of_checks(harness):
    h = harness(unique_config(rate_burst=10, unlike_window_seconds=60))
    r = h.request("unlike", {})
    assert (r["error"], r["detail"].split(":")[0]) == ("invalid_request", "username")
    assert h.request("unlike", {"username": "ann"})["error"] == "no_current_item"
    h.change_media("abc")
    playing(h, "abc")
    assert h.request("unlike", {"username": "ann"})["error"] == "not_liked"
    assert h.request("like", {"username": "ann"})["status"] == "ok"
    h.clock.advance(61)
    r = h.request("unlike", {"username": "ann"})
    assert r["error"] == "unlike_window_passed", r
    h.change_media("xyz")
    playing(h, "xyz")
    assert h.request("unlike", {"username": "ann", "video_id": "abc"})["error"] == "unlike_window_passed"
    assert h.request("stats", {"video_id": "abc"})["item"]["like_count"] == 1


def test_unlikes_take_tokens_like_likes(harness):
    h = harness(unique_config(rate_burst=2, rate_per_minute=1))
    h.change_media("abc")
    playing(h, "abc")
    assert h.request("like", {"username": "ann"})["status"] == "ok"
    assert h.request("unlike", {"username": "ann"})["status"] == "ok"
    r = h.request("like", {"username": "ann"})
    assert r["error"] == "rate_limited" and r["retry_after_seconds"] > 0
