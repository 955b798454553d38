"""Queue analytics (AC-001, REQ-003): playlist applies through a stand-in
bridge on a real nats-server; queue events counted once; bad applies refused."""

from __future__ import annotations

import json

import anyio
import pytest
from conftest import StandInBridge, plays_of, wait_until

from kryten_likes.store import ANALYTICS_BUCKET, playlist_key
from support.configs import merged, unique_sections, write_config


def items(n: int, prefix: str = "q", **extra) -> list[dict]:
    return [{"video_id": f"{prefix}{i}", "type": "yt", **extra} for i in range(n)]


def global_(h) -> dict:
    return h.request("stats", {})["global"]


def item(h, vid: str) -> dict:
    return h.request("stats", {"video_id": vid})["item"]


def settle_events(h, bridge: StandInBridge, expected_queued: int) -> None:
    """Events are absorbed in order: once a foreign marker event counts, every
    event before it has been judged."""
    bridge.foreign("yt", "marker")
    wait_until(lambda: global_(h)["items_queued"] == expected_queued + 1)


@pytest.fixture
def bridged(harness):
    made = []

    def make(config=None, **bridge_options):
        h = harness(config)
        b = StandInBridge(h, **bridge_options)
        made.append(b)
        return h, b

    yield make
    for b in made:
        b.close()


@pytest.mark.parametrize("event_after", [False, True])
def test_apply_of_ten_items_adds_exactly_ten_ac001(bridged, event_after):
    h, bridge = bridged(event_after=event_after)
    r = h.request("queue_apply", {"playlist_id": "pl-1", "items": items(10, duration_seconds=60),
                                  "requested_by": "alice", "correlation_id": "ap"}, timeout=20)
    assert (r["status"], r["correlation_id"], r["enqueued_count"], r["failed"]) == ("ok", "ap", 10, [])
    assert (r["playlist"]["playlist_id"], r["playlist"]["apply_count"]) == ("pl-1", 1)
    assert bridge.asked == [("yt", f"q{i}") for i in range(10)]  # in the given order
    g = global_(h)
    assert (g["items_queued"], g["duration_queued_seconds"]) == (10, 600)
    settle_events(h, bridge, 10)  # still +10 after the bridge's own events arrived
    assert all(item(h, f"q{i}")["queue_count"] == 1 for i in range(10))
    assert item(h, "q3")["duration_seconds"] == 60 and item(h, "q3")["last_queued_at"].endswith("Z")
    doc = h.kv(ANALYTICS_BUCKET, playlist_key(h.config.analytics.namespace, "pl-1"))
    assert (doc["apply_count"], doc["schema_version"]) == (1, 1) and doc["last_applied_at"].endswith("Z")


def test_two_applies_of_one_playlist_req003(bridged):
    h, bridge = bridged()
    for _ in range(2):
        r = h.request("queue_apply", {"playlist_id": "pl", "items": items(3)}, timeout=20)
        assert r["status"] == "ok"
    assert r["playlist"]["apply_count"] == 2
    assert h.request("stats", {"playlist_id": "pl"})["playlist"]["apply_count"] == 2
    settle_events(h, bridge, 6)
    # Two applies of one item expect two events: each counted once, by the apply.
    assert [item(h, f"q{i}")["queue_count"] for i in range(3)] == [2, 2, 2]


def test_duration_comes_from_the_queue_event_when_the_request_has_none(bridged):
    h, bridge = bridged()
    assert h.request("queue_apply", {"playlist_id": "pl", "items": items(2)}, timeout=20)["status"] == "ok"
    settle_events(h, bridge, 2)
    assert item(h, "q0")["duration_seconds"] == 30  # the stand-in bridge says 30 s
    assert global_(h)["duration_queued_seconds"] == 3 * 30  # q0, q1 and the marker


def test_refused_and_unanswered_items_fail_and_count_nothing(bridged):
    h, bridge = bridged(unique_config_with_timeout(), refuse={"q1"}, silent={"q3"})
    r = h.request("queue_apply", {"playlist_id": "pl", "items": items(5)}, timeout=20)
    assert (r["status"], r["enqueued_count"]) == ("ok", 3)
    assert r["failed"] == [{"video_id": "q1", "reason": "cannot queue"}, {"video_id": "q3", "reason": "timeout"}]
    assert global_(h)["items_queued"] == 3
    settle_events(h, bridge, 3)
    assert item(h, "q1")["queue_count"] == 0 and item(h, "q3")["queue_count"] == 0


def unique_config_with_timeout():
    from kryten_likes.config import parse_config
    return parse_config(merged(unique_sections(), {"cytube": {"bridge_timeout_seconds": 0.5}}))


def test_nothing_confirmed_is_enqueue_failed_and_counts_nothing(bridged):
    h, bridge = bridged(refuse={"q0", "q1"})
    r = h.request("queue_apply", {"playlist_id": "pl", "items": items(2), "correlation_id": "x"}, timeout=20)
    assert (r["status"], r["error"], r["correlation_id"], r["enqueued_count"]) == ("error", "enqueue_failed", "x", 0)
    assert len(r["failed"]) == 2
    assert global_(h)["items_queued"] == 0
    assert h.request("stats", {"playlist_id": "pl"})["playlist"] is None


def test_queue_events_from_others_count_once_each(bridged):
    h, bridge = bridged()
    for vid in ("f1", "f2", "f1"):
        bridge.foreign("yt", vid)
    wait_until(lambda: global_(h)["items_queued"] == 3)
    assert (item(h, "f1")["queue_count"], item(h, "f2")["queue_count"]) == (2, 1)
    h.stop()
    h.start()  # nothing is counted again after a restart
    settle_events(h, bridge, 3)
    assert item(h, "f1")["queue_count"] == 2


@pytest.mark.parametrize("body,field", [
    ({"items": items(1)}, "playlist_id"),
    ({"playlist_id": "p", "items": []}, "items"),
    ({"playlist_id": "p", "items": items(501)}, "items"),
    ({"playlist_id": "p"}, "items"),
    ({"playlist_id": "p", "items": "q1"}, "items"),
    ({"playlist_id": "p", "items": [{"type": "yt"}]}, "items[0].video_id"),
    ({"playlist_id": "p", "items": [*items(2), {"video_id": "x"}]}, "items[2].type"),
    ({"playlist_id": "p", "items": [{"video_id": 5, "type": "yt"}]}, "items[0].video_id"),
    ({"playlist_id": "p", "items": [{"video_id": "v", "type": "yt", "duration_seconds": "60"}]},
     "items[0].duration_seconds"),
    ({"playlist_id": "p", "items": [{"video_id": "v", "type": "yt", "duration_seconds": -1}]},
     "items[0].duration_seconds"),
    ({"playlist_id": "p", "items": ["v"]}, "items[0]"),
    ({"playlist_id": 7, "items": items(1)}, "playlist_id"),
])
def test_bad_applies_are_refused_whole(bridged, body, field):
    h, bridge = bridged()
    r = h.request("queue_apply", body)
    assert (r["status"], r["error"]) == ("error", "invalid_request") and r["detail"].startswith(field), r
    assert bridge.asked == [] and global_(h)["items_queued"] == 0


def test_a_flood_of_applies_queue_events_plays_and_likes_stays_exact(bridged):
    h, bridge = bridged()
    prefix = h.config.nats.subject_prefix

    async def flood():
        async def apply(n: int) -> dict:
            body = {"playlist_id": f"pl{n % 2}", "items": items(5, prefix="hot")}
            return json.loads((await h.nc.request(f"{prefix}.playlist.cmd.queue_apply",
                                                  json.dumps(body).encode(), timeout=30)).data)

        async def like(i: int) -> dict:
            return json.loads((await h.nc.request(f"{prefix}.playlist.cmd.like",
                                                  json.dumps({"username": f"u{i}"}).encode(), timeout=30)).data)

        replies: list[dict] = []
        async with anyio.create_task_group() as tg:
            async def run(coro_fn, arg):
                replies.append(await coro_fn(arg))
            for n in range(6):
                tg.start_soon(run, apply, n)
            for i in range(100):
                tg.start_soon(run, like, i)
            for i in range(10):
                await bridge._publish_event("yt", f"hot{i % 5}")  # others queue the same items
        return replies

    h.change_media("hot0")
    wait_until(lambda: plays_of(h, "hot0") == 1)
    replies = h.portal.call(flood)
    applies = [r for r in replies if "enqueued_count" in r]
    likes = [r for r in replies if "like_count" in r]
    assert all(r["status"] == "ok" and r["enqueued_count"] == 5 for r in applies)
    assert sum(r["status"] == "ok" for r in likes) == 100
    settle_events(h, bridge, 6 * 5 + 10)
    assert [item(h, f"hot{i}")["queue_count"] for i in range(5)] == [6 + 2] * 5
    assert item(h, "hot0")["like_count"] == 100 and item(h, "hot0")["play_count"] == 1
    pls = [h.request("stats", {"playlist_id": f"pl{k}"})["playlist"]["apply_count"] for k in (0, 1)]
    assert pls == [3, 3]


def test_cli_apply_and_stats_playlist(bridged, tmp_path):
    import subprocess
    import sys
    h, bridge = bridged()
    cfg = write_config(tmp_path / "c.toml", {"nats": {"servers": [h.url], "subject_prefix": h.config.nats.subject_prefix}})
    toml_items = tmp_path / "items.toml"
    toml_items.write_text('[[items]]\nvideo_id = "c1"\ntype = "yt"\n\n[[items]]\nvideo_id = "c2"\ntype = "yt"\n'
                          'duration_seconds = 90\n')

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "kryten_likes.cli", *args, "--config", str(cfg)],
                              capture_output=True, text=True, timeout=30)

    out = cli("apply", "mix", str(toml_items), "--requested-by", "op")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "enqueued 2 of playlist mix (applied 1 time)"
    json_items = tmp_path / "items.json"
    json_items.write_text(json.dumps([{"video_id": "c1", "type": "yt"}]))
    assert cli("apply", "mix", str(json_items)).returncode == 0
    out = cli("stats", "--playlist", "mix", "--json")
    assert json.loads(out.stdout)["playlist"]["apply_count"] == 2
    assert cli("apply", "mix", str(tmp_path / "missing.json")).returncode == 2


def test_cli_watch_redraws_the_top_list(bridged, tmp_path):
    import subprocess
    import sys
    h, bridge = bridged()
    h.change_media("w1", title="Watched")
    wait_until(lambda: plays_of(h, "w1") == 1)
    cfg = write_config(tmp_path / "c.toml", {"nats": {"servers": [h.url], "subject_prefix": h.config.nats.subject_prefix}})
    out = subprocess.run([sys.executable, "-m", "kryten_likes.cli", "watch", "played", "--count", "2",
                          "--interval", "0.1", "--config", str(cfg)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("w1") == 2 and "Watched" in out.stdout
