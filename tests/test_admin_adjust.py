"""`adjust` through a running daemon on a real nats-server: the count
changes in KV and in the daemon's memory (stats, rankings, the next like),
an audit record lands with it, bad input is refused naming the field, and
the CLI's exit codes."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

from conftest import playing, plays_of, wait_until

from kryten_likes.cli import main
from kryten_likes.messages import CommitFinished
from kryten_likes.store import ANALYTICS_BUCKET, LIKES_BUCKET, item_key, likes_key
from support.configs import write_config

AUDIT_FIELDS = {"video_id", "field", "old", "new", "reason", "by", "at", "correlation_id", "schema_version", "batch"}


def test_adjust_likes_through_the_daemon(harness):
    h = harness()
    ns = h.config.analytics.namespace
    h.change_media("adj-v1", title="Adjusted")
    playing(h, "adj-v1")
    for user in ("alice", "bob"):
        assert h.request("like", {"username": user})["status"] == "ok"
    r = h.request("adjust", {"video_id": "adj-v1", "like_count": 10, "reason": "two likes lost in the outage",
                             "by": "ops", "correlation_id": "fix-1"})
    assert (r["status"], r["error"], r["correlation_id"]) == ("ok", None, "fix-1"), r
    assert (r["video_id"], r["field"], r["old"], r["new"]) == ("adj-v1", "like_count", 2, 10)
    assert h.kv(LIKES_BUCKET, likes_key(ns, "adj-v1"))["like_count"] == 10
    record = h.kv(LIKES_BUCKET, r["audit_key"])
    assert r["audit_key"].startswith(f"ns/{ns}/audit/") and set(record) == AUDIT_FIELDS, record
    assert (record["video_id"], record["field"], record["old"], record["new"], record["by"],
            record["reason"], record["schema_version"], record["correlation_id"]) == (
        "adj-v1", "like_count", 2, 10, "ops", "two likes lost in the outage", 1, "fix-1")
    assert record["at"].endswith("Z")
    # The daemon's memory moved with KV: stats, the ranking, and the next like.
    assert h.request("stats", {"video_id": "adj-v1"})["item"]["like_count"] == 10
    assert h.request("top_liked", {"limit": 1})["items"] == [{"video_id": "adj-v1", "title": "Adjusted",
                                                             "count": 10}]
    assert h.request("like", {"username": "carol"})["like_count"] == 11
    assert h.kv(LIKES_BUCKET, likes_key(ns, "adj-v1"))["like_count"] == 11
    # Down is allowed too; the reply says what it replaced.
    r = h.request("adjust", {"video_id": "adj-v1", "like_count": 0, "reason": "all bots"})
    assert (r["old"], r["new"]) == (11, 0) and h.kv(LIKES_BUCKET, r["audit_key"])["by"] is None
    assert h.request("top_liked", {})["items"] == []


def test_adjust_plays_moves_the_item_and_not_the_global_counters(harness):
    h = harness()
    ns = h.config.analytics.namespace
    h.change_media("adj-p1")
    wait_until(lambda: plays_of(h, "adj-p1") == 1)
    before = h.request("stats", {})["global"]
    r = h.request("adjust", {"video_id": "adj-p1", "play_count": 25, "reason": "imported history"})
    assert (r["status"], r["field"], r["old"], r["new"]) == ("ok", "play_count", 1, 25), r
    assert h.kv(ANALYTICS_BUCKET, item_key(ns, "adj-p1"))["play_count"] == 25
    assert h.kv(ANALYTICS_BUCKET, r["audit_key"])["field"] == "play_count"
    assert plays_of(h, "adj-p1") == 25
    assert h.request("top_played", {"limit": 1})["items"][0]["count"] == 25
    after = h.request("stats", {})["global"]
    assert (after["items_played"], after["duration_played_seconds"]) == (
        before["items_played"], before["duration_played_seconds"])  # global counters count events
    h.change_media("adj-p1")  # the same item from 0: a replay, a play
    h.change_media("adj-p2")
    wait_until(lambda: plays_of(h, "adj-p2") == 1)
    assert plays_of(h, "adj-p1") == 26
    assert h.request("stats", {})["global"]["items_played"] == before["items_played"] + 2


BAD = [
    ({"like_count": 1, "reason": "r"}, "video_id"),
    ({"video_id": "", "like_count": 1, "reason": "r"}, "video_id"),
    ({"video_id": "v", "reason": "r"}, "like_count"),
    ({"video_id": "v", "like_count": 1, "play_count": 2, "reason": "r"}, "play_count"),
    ({"video_id": "v", "like_count": -1, "reason": "r"}, "like_count"),
    ({"video_id": "v", "like_count": True, "reason": "r"}, "like_count"),
    ({"video_id": "v", "play_count": 1.5, "reason": "r"}, "play_count"),
    ({"video_id": "v", "play_count": "3", "reason": "r"}, "play_count"),
    ({"video_id": "v", "play_count": 2**53, "reason": "r"}, "play_count"),
    ({"video_id": "v", "like_count": 1}, "reason"),
    ({"video_id": "v", "like_count": 1, "reason": ""}, "reason"),
    ({"video_id": "v", "like_count": 1, "reason": "x" * 501}, "reason"),
    ({"video_id": "v", "like_count": 1, "reason": "a\nb"}, "reason"),
    ({"video_id": "v", "like_count": 1, "reason": "r", "by": 7}, "by"),
    ({"video_id": "v", "like_count": 1, "reason": "r", "namespace": "a/b"}, "namespace"),
]


def test_bad_adjustments_are_refused_naming_the_field(harness):
    h = harness()
    for body, field in BAD:
        r = h.request("adjust", {**body, "correlation_id": "bad"})
        assert (r["status"], r["error"], r["correlation_id"]) == ("error", "invalid_request", "bad"), (body, r)
        assert r["detail"].startswith(f"{field}:"), (body, r)
    assert h.request("stats", {"video_id": "v"})["item"] == h.request("stats", {"video_id": "never"})["item"] | {
        "video_id": "v"}


def _config_file(h, tmp_path: Path) -> str:
    return str(write_config(tmp_path / "config.toml", {"nats": {"subject_prefix": h.config.nats.subject_prefix},
                                                       "analytics": {"namespace": h.config.analytics.namespace}}))


def test_the_adjust_command_line(harness, tmp_path, capsys):
    h = harness()
    cfg = _config_file(h, tmp_path)
    where = ["--config", cfg, "--nats-url", h.url]

    def cli(*argv: str) -> tuple[int, str, str]:
        code = main([*argv, *where])
        out, err = capsys.readouterr()
        return code, out, err

    code, out, err = cli("adjust", "cli-v", "--likes", "12", "--reason", "restore")
    assert code == 0, err
    assert out.startswith("cli-v: likes 0 -> 12 (audit ns/")
    assert h.request("stats", {"video_id": "cli-v"})["item"]["like_count"] == 12
    code, out, _ = cli("adjust", "cli-v", "--plays", "4", "--reason", "restore", "--by", "eve", "--json")
    reply = json.loads(out)
    assert code == 0 and (reply["field"], reply["old"], reply["new"]) == ("play_count", 0, 4)
    assert h.kv(ANALYTICS_BUCKET, reply["audit_key"])["by"] == "eve"
    code, out, _ = cli("adjust", "cli-v", "--likes", "13", "--reason", "who", "--json")
    assert h.kv(LIKES_BUCKET, json.loads(out)["audit_key"])["by"] == getpass.getuser()
    # The daemon refuses: exit 1, the reason on stderr.
    code, _, err = cli("adjust", "cli-v", "--likes", str(2**60), "--reason", "too many")
    assert code == 1 and "invalid_request" in err and "like_count" in err
    # Usage errors: exit 2, nothing sent.
    for argv in (["adjust", "cli-v", "--likes", "1"], ["adjust", "cli-v", "--likes", "1", "--plays", "2",
                                                       "--reason", "r"],
                 ["adjust", "cli-v", "--likes", "-1", "--reason", "r"], ["adjust", "--likes", "1", "--reason", "r"]):
        assert cli(*argv)[0] == 2, argv
    assert h.request("stats", {"video_id": "cli-v"})["item"]["like_count"] == 13
    # No daemon on this prefix: exit 3.
    code = main(["adjust", "cli-v", "--likes", "1", "--reason", "r", "--nats-url", h.url, "--timeout", "1"])
    assert code == 3


def test_an_adjustment_inside_a_crashed_writer_is_answered_internal_error(harness):
    fired = []

    def fault(actor: str, msg: object) -> bool:
        # The writer dies as its correction's batch comes back: the request is inside it.
        if actor == "counter_writer" and isinstance(msg, CommitFinished) and not fired:
            fired.append(msg)
            return True
        return False

    h = harness(fault=fault)
    r = h.request("adjust", {"video_id": "crash-v", "like_count": 7, "reason": "r", "correlation_id": "c"})
    assert (r["status"], r["error"], r["correlation_id"]) == ("error", "internal_error", "c"), r
    # As for a like: the batch was on its way and did land; the restarted writer read it from KV.
    assert h.request("stats", {"video_id": "crash-v"})["item"]["like_count"] == 7
    r = h.request("adjust", {"video_id": "crash-v", "like_count": 8, "reason": "r"})
    assert (r["status"], r["old"], r["new"]) == ("ok", 7, 8)
