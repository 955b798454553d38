"""Hostile input, names: namespace escape attempts are refused on every
command (and change nothing); ``Alice``, ``ALICE``, ``alice`` and
``ａｌｉｃｅ`` are one user, for dedupe and for the rate limit.
"""

from __future__ import annotations

import pytest
from conftest import playing

from kryten_likes.actors import gateway
from kryten_likes.store import ANALYTICS_BUCKET, LIKES_BUCKET, dedupe_key
from support.hostile import calm, portal_module  # noqa: F401 (fixtures)
from support.contract_oracle import KEY_RE
from support.hostile import all_keys, hostile_config


# --- namespace escapes ------------------------------------------------------------------------------

BAD_NAMESPACES = ["a.b", "a/b", ">", "*", "..", "", "x" * 65, "ａｌｉｃｅ", "é", "名前", "a b", "a\n", "abc\n",
                  "a\x00", "$KV", "ns/other", "../x", "a.>", 5, 1.5, True, [], {"a": 1}]


def _body_for(command: str, **extra) -> dict:
    base = {"like": {"username": "mallory"},
            "queue_apply": {"playlist_id": "p", "items": [{"video_id": "v", "type": "yt"}]}}.get(command, {})
    return {**base, **extra}


@pytest.mark.parametrize("command", gateway.COMMANDS)
@pytest.mark.parametrize("ns", BAD_NAMESPACES, ids=repr)
def test_namespace_escape_is_refused_on_every_command(calm, command, ns):
    r = calm.request(command, _body_for(command, namespace=ns, correlation_id="esc"))
    assert (r["status"], r["error"], r["correlation_id"]) == ("error", "invalid_request", "esc"), r
    assert r["detail"].startswith("namespace"), r


@pytest.mark.parametrize("ns", ["x" * 64, "A-z_9", "-", "_"])
def test_namespace_at_the_bounds_is_accepted(calm, ns):
    r = calm.request("stats", {"namespace": ns, "video_id": "calm-v"})
    assert r["status"] == "ok" and r["item"]["like_count"] == 0, r


def test_namespace_escapes_changed_nothing(calm):
    for command in gateway.COMMANDS:
        for ns in BAD_NAMESPACES:
            calm.request(command, _body_for(command, namespace=ns))
    assert calm.request("stats", {"video_id": "calm-v"})["item"]["like_count"] == 0
    for bucket in (LIKES_BUCKET, ANALYTICS_BUCKET):
        for key in all_keys(calm, bucket):
            assert KEY_RE.fullmatch(key), key
    assert calm.request("like", {"username": "mallory"})["like_count"] == 1


# --- one user, whatever the case or Unicode form ---------------------------------------------------

ALICES = ["Alice", "ALICE", "alice", "ａｌｉｃｅ"]


@pytest.mark.parametrize("shift", range(4))
def test_folded_names_are_one_user_for_dedupe_and_for_the_rate_limit(harness, shift):
    names = ALICES[shift:] + ALICES[:shift]
    h = harness(hostile_config(likes={"rate_per_minute": 1.0, "rate_burst": 3}))
    h.change_media("fold-v")
    playing(h, "fold-v")
    replies = [h.request("like", {"username": n}) for n in names]
    assert [r["status"] for r in replies[:3]] == ["ok", "duplicate", "duplicate"], replies
    assert [r["like_count"] for r in replies[:3]] == [1, 1, 1], replies
    fourth = replies[3]
    assert (fourth["status"], fourth["error"]) == ("error", "rate_limited"), fourth
    assert 0 < fourth["retry_after_seconds"] <= 60.0 + 1e-3, fourth  # one token a minute
    assert h.request("like", {"username": "bob"})["like_count"] == 2  # others are not limited
    ns = h.config.analytics.namespace
    assert h.kv(LIKES_BUCKET, dedupe_key(ns, "fold-v", "alice")) is not None
    for n in set(ALICES) - {"alice"}:
        assert h.kv(LIKES_BUCKET, dedupe_key(ns, "fold-v", n)) is None, n
    h.clock.advance(fourth["retry_after_seconds"])
    again = h.request("like", {"username": names[3]})
    assert (again["status"], again["like_count"]) == ("duplicate", 2), again
    assert h.request("stats", {"video_id": "fold-v"})["item"]["like_count"] == 2
