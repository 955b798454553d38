"""The like flow against a real nats-server: AC-003, AC-004, SEC-001/002,
the contract's outcomes and their order, and key encoding of unsafe ids."""

from __future__ import annotations

from conftest import playing, unique_config

from kryten_likes.store import LIKES_BUCKET, dedupe_key, likes_key


def test_like_counts_and_is_retrievable_ac003(harness):
    h = harness()
    h.change_media("abc", title="A song")
    playing(h, "abc")
    r = h.request("like", {"username": "alice", "correlation_id": "c-1"})
    assert r == {"correlation_id": "c-1", "status": "ok", "error": None, "video_id": "abc", "like_count": 1}
    ns = h.config.analytics.namespace
    doc = h.kv(LIKES_BUCKET, likes_key(ns, "abc"))
    assert doc["like_count"] == 1 and doc["video_id"] == "abc" and doc["schema_version"] == 1
    claim = h.kv(LIKES_BUCKET, dedupe_key(ns, "abc", "alice"))
    assert claim is not None and claim["schema_version"] == 1 and claim["expires_at"] > claim["liked_at"]
    assert h.request("stats", {"video_id": "abc"})["item"]["like_count"] == 1
    assert h.request("top_liked", {})["items"] == [{"video_id": "abc", "title": "A song", "count": 1}]


def test_repeated_like_within_window_is_duplicate_ac004(harness):
    h = harness()
    h.change_media("abc")
    playing(h, "abc")
    assert h.request("like", {"username": "Alice"})["status"] == "ok"
    for name in ("alice", "ALICE", "ａｌｉｃｅ"):  # one user after NFKC + casefold
        r = h.request("like", {"username": name})
        assert (r["status"], r["like_count"]) == ("duplicate", 1), r
    assert h.request("like", {"username": "bob"})["like_count"] == 2


def test_like_after_window_counts_again(harness):
    h = harness(unique_config(dedupe_window_seconds=60))
    h.change_media("abc")
    playing(h, "abc")
    assert h.request("like", {"username": "alice"})["like_count"] == 1
    h.clock.advance(30)
    assert h.request("like", {"username": "alice"})["status"] == "duplicate"
    h.clock.advance(31)
    # The KV key still exists (its TTL runs on the server's clock); the
    # expired claim is overwritten at its revision.
    r = h.request("like", {"username": "alice"})
    assert (r["status"], r["like_count"]) == ("ok", 2), r


def test_dedupe_off_counts_every_like(harness):
    h = harness(unique_config(dedupe_enabled=False))
    h.change_media("abc")
    playing(h, "abc")
    counts = [h.request("like", {"username": "alice"})["like_count"] for _ in range(4)]
    assert counts == [1, 2, 3, 4]


def test_no_current_item_and_not_current(harness):
    h = harness()
    r = h.request("like", {"username": "alice", "correlation_id": "x"})
    assert (r["status"], r["error"], r["correlation_id"]) == ("error", "no_current_item", "x")
    h.change_media("abc")
    playing(h, "abc")
    r = h.request("like", {"username": "alice", "video_id": "other"})
    assert (r["status"], r["error"], r["video_id"]) == ("error", "not_current", "abc")
    r = h.request("like", {"username": "alice", "video_id": "abc"})
    assert (r["status"], r["like_count"]) == ("ok", 1)


def test_rate_limit_takes_a_token_for_every_valid_like_duplicates_included(harness):
    h = harness(unique_config(rate_per_minute=6.0, rate_burst=3))
    h.change_media("abc")
    playing(h, "abc")
    statuses = [h.request("like", {"username": "carol"})["status"] for _ in range(3)]
    assert statuses == ["ok", "duplicate", "duplicate"]
    r = h.request("like", {"username": "CAROL"})
    assert (r["status"], r["error"]) == ("error", "rate_limited")
    assert abs(r["retry_after_seconds"] - 10.0) < 0.01  # one token every 10 s
    # A rate-limited like changed nothing, and other users are not affected.
    assert h.request("like", {"username": "dave"})["like_count"] == 2
    h.clock.advance(10)
    assert h.request("like", {"username": "carol"})["status"] == "duplicate"


def test_rate_limit_comes_before_current_item(harness):
    h = harness(unique_config(rate_per_minute=1.0, rate_burst=1))
    assert h.request("like", {"username": "erin"})["error"] == "no_current_item"
    assert h.request("like", {"username": "erin"})["error"] == "rate_limited"


def test_unsafe_ids_are_encoded_into_keys(harness):
    h = harness()
    url = "https://media.example.com/m/abc.json"
    h.change_media(url, media_type="cm")
    playing(h, url)
    r = h.request("like", {"username": "Zoë.B/x"})
    assert (r["status"], r["video_id"]) == ("ok", url)
    ns = h.config.analytics.namespace
    key = likes_key(ns, url)
    assert key == f"ns/{ns}/items/=aHR0cHM6Ly9tZWRpYS5leGFtcGxlLmNvbS9tL2FiYy5qc29u/likes"
    assert h.kv(LIKES_BUCKET, key)["video_id"] == url
    assert h.kv(LIKES_BUCKET, dedupe_key(ns, url, "zoë.b/x")) is not None


def test_namespaces_are_separate(harness):
    h = harness()
    h.change_media("abc")
    playing(h, "abc")
    assert h.request("like", {"username": "alice"})["like_count"] == 1
    r = h.request("like", {"username": "alice", "namespace": "other-ns"})
    assert (r["status"], r["like_count"]) == ("ok", 1)
    assert h.request("stats", {"video_id": "abc", "namespace": "other-ns"})["item"]["like_count"] == 1
