import json, time
import pytest
from conftest import playing, unique_config
from kryten_likes.store import LIKES_BUCKET, likes_key

def test_probe_nesting(harness):
    h = harness()
    h.change_media("v"); playing(h, "v")
    for i in range(6):
        try:
            r = h.request("like", b"[" * 3000, timeout=3)
            print("nest", i, r)
        except Exception as e:
            print("nest", i, "EXC", type(e), e)
            break

def test_probe_surrogate_cid(harness):
    h = harness()
    try:
        print(h.request("like", b'{"username":"a","correlation_id":"\\ud800"}', timeout=2))
    except Exception as e:
        print("EXC", type(e), e)
    print(h.request("like", b'{"username":"a","correlation_id":"ok"}'))
    print(h.request("like", json.dumps({"correlation_id": "c", "pad": "x" * 70000}).encode()))

def test_probe_surrogate_media(harness):
    h = harness()
    h.change_media("\ud800x"); 
    time.sleep(1)
    print(h.request("now_playing", {}))
    try:
        print(h.request("like", {"username": "bob"}, timeout=3))
    except Exception as e:
        print("EXC", type(e), e)
    print(h.request("now_playing", {}))

def test_probe_long_media(harness):
    h = harness()
    vid = "\U0001F600" * 1000
    h.change_media(vid)
    time.sleep(1)
    print(h.request("now_playing", {})["video_id"] == vid)
    try:
        r = h.request("like", {"username": "bob"}, timeout=8)
        print({k: v for k, v in r.items() if k != "video_id"})
    except Exception as e:
        print("EXC", type(e), e)
    print(h.request("stats", {"video_id": vid})["item"]["play_count"])
    try:
        print(h.request("like", {"username": "carl"}, timeout=8)["status"])
    except Exception as e:
        print("EXC", type(e), e)
