"""Bad input: a structured invalid_request naming the field, nothing changed,
the daemon still serving."""

from __future__ import annotations

import pytest
from conftest import playing

BAD = [
    ("like", b"not json", "body"),
    ("like", b"\xff\xfe", "body"),
    ("like", b"[1, 2]", "body"),
    ("like", b'"alice"', "body"),
    ("like", b"{}", "username"),
    ("like", b'{"username": 5}', "username"),
    ("like", b'{"username": ""}', "username"),
    ("like", b'{"username": "' + b"x" * 65 + b'"}', "username"),
    ("like", b'{"username": "a\\u0000b"}', "username"),
    ("like", b'{"username": "alice", "video_id": 7}', "video_id"),
    ("like", b'{"username": "alice", "video_id": ""}', "video_id"),
    ("like", b'{"username": "alice", "namespace": "a.b"}', "namespace"),
    ("like", b'{"username": "alice", "namespace": ">"}', "namespace"),
    ("like", b'{"username": "alice", "namespace": "a/b"}', "namespace"),
    ("like", b'{"username": "alice", "correlation_id": 12}', "correlation_id"),
    ("top_liked", b'{"limit": 0}', "limit"),
    ("top_liked", b'{"limit": 101}', "limit"),
    ("top_played", b'{"limit": "5"}', "limit"),
    ("top_played", b'{"limit": true}', "limit"),
    ("stats", b'{"video_id": ["x"]}', "video_id"),
    ("stats", b'{"playlist_id": "' + b"p" * 1001 + b'"}', "playlist_id"),
]


@pytest.fixture(scope="module")
def live(portal_module, nats_server):
    from conftest import Harness, unique_config
    from kryten_likes.clock import FakeClock
    h = Harness(portal_module, nats_server.url, unique_config(), FakeClock())
    h.start()
    h.change_media("v")
    playing(h, "v")
    yield h
    h.close()


@pytest.fixture(scope="module")
def portal_module():
    import anyio.from_thread
    with anyio.from_thread.start_blocking_portal() as p:
        yield p


@pytest.mark.parametrize("command,body,field", BAD)
def test_bad_request_is_refused_naming_the_field(live, command, body, field):
    r = live.request(command, body)
    assert (r["status"], r["error"]) == ("error", "invalid_request"), r
    assert r["detail"].startswith(field), r
    assert "correlation_id" in r


def test_refusals_changed_nothing_and_the_daemon_still_serves(live):
    for command, body, _ in BAD:
        live.request(command, body)
    stats = live.request("stats", {"video_id": "v"})
    assert stats["item"]["like_count"] == 0
    r = live.request("like", {"username": "alice", "correlation_id": "after", "unknown_field": [1]})
    assert (r["status"], r["correlation_id"], r["like_count"]) == ("ok", "after", 1)


def test_correlation_id_is_echoed_on_refusals(live):
    r = live.request("like", {"correlation_id": "abc"})
    assert (r["error"], r["correlation_id"]) == ("invalid_request", "abc")
