import time

def test_like_flow(harness):
    h = harness()
    r = h.request("like", {"username": "alice", "correlation_id": "c1"})
    assert r["error"] == "no_current_item", r
    h.change_media("vid1")
    deadline = time.time() + 5
    while h.request("now_playing", {})["video_id"] is None and time.time() < deadline:
        pass
    r = h.request("like", {"username": "alice"})
    assert r["status"] == "ok" and r["like_count"] == 1, r
    r = h.request("like", {"username": "ALICE"})
    assert r["status"] == "duplicate" and r["like_count"] == 1, r
    print(h.request("stats", {"video_id": "vid1"}))
    print(h.request("top_liked", {}))
    print(h.request("top_played", {}))
