"""Hostile input that once broke the daemon, now fixed: JSON nested ~1000 deep,
lone surrogates (in a correlation id, in a changeMedia), oversized bodies,
media ids too long for a key, trailing newlines in config names, reads of
empty namespaces.
"""

from __future__ import annotations

import json

import nats.errors
import pytest
from conftest import playing, wait_until

from kryten_likes.config import ConfigError, parse_config
from support.hostile import calm, portal_module  # noqa: F401 (fixtures)
from support.contract_oracle import MAX_BODY
from support.hostile import concurrently, hostile_config, own_daemon


# --- once bugs, now fixed ---------------------------------------------------------------------------------------

def test_deeply_nested_json_is_refused_and_the_daemon_survives(portal, nats_server):
    with own_daemon(portal, nats_server, hostile_config()) as h:
        for _ in range(6):
            r = h.request("like", b"[" * 3000, timeout=1)
            assert (r["error"], r["detail"].split(":")[0]) == ("invalid_request", "body"), r
        assert h.request("now_playing", {})["status"] == "ok"


@pytest.mark.parametrize("case", ["stats", "like, nothing playing", "like, something playing"])
def test_correlation_id_with_a_lone_surrogate_gets_a_reply_and_crashes_nothing(portal, nats_server, case):
    command = case.split(",")[0]
    with own_daemon(portal, nats_server, hostile_config()) as h:
        if case.endswith("something playing"):
            h.change_media("v")
            playing(h, "v")
        for i in range(5):
            r = h.request(command, b'{"username": "u%d", "correlation_id": "\\ud800"}' % i, timeout=1)
            assert r["status"] in ("ok", "error") and r["correlation_id"] in (None, "\ud800"), r
        assert h.daemon.supervisor.restarts == dict.fromkeys(h.daemon.supervisor.restarts, 0)
        assert h.request("now_playing", {})["status"] == "ok"


def test_oversized_body_still_echoes_its_correlation_id(calm):
    r = calm.request("like", json.dumps({"correlation_id": "big", "username": "u", "pad": "p" * MAX_BODY}).encode())
    assert (r["error"], r["detail"].split(":")[0]) == ("invalid_request", "body"), r
    assert r["correlation_id"] == "big", r


@pytest.mark.parametrize("field", ["id", "title", "type"])
def test_change_media_with_a_lone_surrogate_crashes_no_actor(portal, nats_server, field):
    with own_daemon(portal, nats_server, hostile_config()) as h:
        media = {"id": "poison", "title": "t", "type": "yt", **{field: "x\ud800"}}
        h.publish_event("changeMedia", {**media, "seconds": 60, "currentTime": 0})
        h.change_media("after")

        def after_counted():
            try:
                return h.request("stats", {"video_id": "after"}, timeout=1)["item"]["play_count"] == 1
            except nats.errors.TimeoutError:  # a reply that echoes the poison may be lost too
                return False
        wait_until(after_counted, timeout=10)
        assert h.daemon.supervisor.restarts == dict.fromkeys(h.daemon.supervisor.restarts, 0)
        assert h.request("like", {"username": "u"})["status"] == "ok"


def test_media_ids_too_long_for_a_key_are_skipped_and_refused(portal, nats_server):
    # docs/kv-schema.md's encoding makes this a 4000-character key, over nats-server's
    # 4 KiB protocol line: the daemon neither sends it nor dies of it.
    vid = "視" * 1000
    with own_daemon(portal, nats_server, hostile_config()) as h:
        h.change_media(vid)
        h.change_media("after")
        wait_until(lambda: h.request("stats", {"video_id": "after"}, timeout=2)["item"]["play_count"] == 1)
        assert h.request("now_playing", {})["video_id"] == "after"
        r = h.request("stats", {"video_id": vid}, timeout=2)
        assert (r["error"], r["detail"].split(":")[0]) == ("invalid_request", "video_id"), r
        assert h.request("like", {"username": "u"}, timeout=2)["like_count"] == 1


@pytest.mark.parametrize("section,key,value", [("analytics", "namespace", "abc\n"),
                                               ("nats", "subject_prefix", "kryten\n")])
def test_config_refuses_a_trailing_newline(section, key, value):
    try:
        parse_config({section: {key: value}})
    except ConfigError as exc:
        assert f"{section}.{key}" in str(exc)
    else:
        raise AssertionError(f"{section}.{key} = {value!r} was accepted")


def test_reads_of_empty_namespaces_do_not_grow_memory(portal, nats_server):
    with own_daemon(portal, nats_server, hostile_config()) as h:
        writer = h.daemon.supervisor.incarnations["counter_writer"].core  # the core's table of namespaces
        before = len(writer.books)
        for command in ("stats", "top_liked", "top_played"):
            replies = concurrently(h, command, [{"namespace": f"{command}-{i}"} for i in range(500)])
            assert all(r["status"] == "ok" for r in replies)
        assert len(writer.books) <= before + 10, (before, len(writer.books))
