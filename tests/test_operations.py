"""A good Kryten citizen: service commands, lifecycle events, /metrics and
/health, and likes from the channel chat — through a real nats-server."""

from __future__ import annotations

import json
import urllib.request

from conftest import playing, wait_until

from kryten_likes.config import parse_config
from support.configs import merged, unique_sections
from support.daemon_process import free_port
from support.events import event_bytes, event_subject


_n = iter(range(1, 10_000))


def citizen_config(**chat):
    """Chat comes through kryten-py, which reads the fixed ``kryten.events``
    prefix, so these daemons use prefix ``kryten`` with a channel of their own."""
    n = next(_n)
    return parse_config(merged(unique_sections(), {
        "nats": {"subject_prefix": "kryten"}, "cytube": {"channel": f"citizen{n}"},
        "analytics": {"namespace": f"citizen{n}"}, "http": {"port": free_port()},
        "chat": {"bot_username": "KrytenBot", **chat}}))


def collect(h, subject: str) -> list[dict]:
    seen: list[dict] = []

    async def cb(msg):
        seen.append({"subject": msg.subject, **json.loads(msg.data)})

    h.portal.call(lambda: h.nc.subscribe(subject, cb=cb))
    h.portal.call(h.nc.flush)
    return seen


def service(h, command: str) -> dict:
    msg = h.portal.call(lambda: h.nc.request("kryten.likes.command",
                                             json.dumps({"service": "likes", "command": command}).encode(),
                                             timeout=5))
    return json.loads(msg.data)


def test_service_commands_and_lifecycle(harness):
    h = harness(citizen_config(), start=False)
    lifecycle = collect(h, "kryten.lifecycle.likes.>")
    h.start()
    wait_until(lambda: any(e["subject"].endswith(".startup") for e in lifecycle))
    r = service(h, "system.ping")
    assert (r["service"], r["command"], r["success"], r["data"]["pong"]) == ("likes", "system.ping", True, True)
    assert r["data"]["service"] == "likes" and r["data"]["timestamp"]
    assert r["data"]["metrics_endpoint"] == f"http://127.0.0.1:{h.config.http.port}/metrics"
    r = service(h, "system.health")
    assert r["success"] and r["data"]["status"] == "healthy" and r["data"]["nats_connected"] is True
    assert r["data"]["reason"] is None  # the round trip answered (tests/test_http.py: when it does not)
    r = service(h, "system.stats")
    assert r["success"] and "global" in r["data"] and "mailbox_depths" in r["data"]
    assert service(h, "system.nonsense")["success"] is False
    h.stop()
    wait_until(lambda: any(e["subject"].endswith(".shutdown") for e in lifecycle))


def scrape(h, path: str) -> tuple[int, str]:
    url = f"http://127.0.0.1:{h.config.http.port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_metrics_show_the_counters_moving(harness):
    h = harness(citizen_config())
    status, body = scrape(h, "/health")
    assert status == 200 and json.loads(body)["status"] == "healthy"
    assert json.loads(body)["nats_round_trip_ms"] >= 0
    h.change_media("m1")
    playing(h, "m1")
    wait_until(lambda: 'kryten_likes_items_played 1.0' in scrape(h, "/metrics")[1])
    for user in ("a", "b", "a"):
        h.request("like", {"username": user})
    _, text = scrape(h, "/metrics")
    assert 'kryten_likes_requests_total{command="like",outcome="ok"} 2.0' in text
    assert 'kryten_likes_requests_total{command="like",outcome="duplicate"} 1.0' in text
    assert 'kryten_likes_request_seconds_count{command="like"} 3.0' in text
    assert 'kryten_likes_actor_restarts{actor="counter_writer"} 0.0' in text
    assert 'kryten_likes_mailbox_depth{actor="gateway"}' in text
    assert scrape(h, "/nope")[0] == 404


def chat(h, username: str, msg: str, shadow: bool = False) -> None:
    """A chatMsg RawEvent as the bridge publishes it (plain NATS: no stream keeps chat)."""
    channel = h.config.cytube.channel
    data = event_bytes("chatMsg", {"username": username, "msg": msg, "meta": {"shadow": shadow}, "time": 0},
                       channel, correlation_id="c")
    h.portal.call(lambda: h.nc.publish(event_subject(channel, "chatMsg"), data))


def said(h) -> list[dict]:
    return [c for c in h.bot_commands if c.get("command") == "say"
            and c.get("meta", {}).get("channel") == h.config.cytube.channel]


def test_chat_like_counts_and_the_bot_answers_sparingly(harness):
    h = harness(citizen_config(reply_window_seconds=300))
    h.bot_commands = collect(h, "kryten.robot.command")
    chat(h, "alice", "!like")
    wait_until(lambda: any("nothing is playing" in c["args"]["message"] for c in said(h)))
    h.change_media("c1", title="Chat song")
    playing(h, "c1")
    chat(h, "bob", "!like")
    wait_until(lambda: h.request("stats", {"video_id": "c1"})["item"]["like_count"] == 1)
    chat(h, "Bob", "!LIKE please")   # a duplicate: counted once, no second chat line
    chat(h, "KrytenBot", "!like")    # the bot's own message
    chat(h, "mallory", "!like", shadow=True)  # shadow-muted
    chat(h, "carol", "!like")
    wait_until(lambda: h.request("stats", {"video_id": "c1"})["item"]["like_count"] == 2)
    h.request("like", {"username": "zed"})  # a bus like after the chat lines: all chat was handled
    assert h.request("stats", {"video_id": "c1"})["item"]["like_count"] == 3
    wait_until(lambda: len(said(h)) == 3)
    lines = [c["args"]["message"] for c in said(h)]
    assert lines[0] == "alice: nothing is playing right now"
    assert lines[1:] == ["bob liked c1 (1 like)", "carol liked c1 (2 likes)"]
    chat(h, "alice", "!top")  # alice already got a line within the window: the bot stays quiet
    chat(h, "dave", "!top")
    wait_until(lambda: len(said(h)) == 4)
    assert said(h)[3]["args"]["message"] == "Top liked: 1. Chat song (3)"


def test_reply_metrics_count_each_outcome_and_bucket_each_latency():
    import time as _time

    from kryten_likes.effects import Reply
    from kryten_likes.messages import ReplyTo
    from kryten_likes.operations import Metrics

    m = Metrics(lambda: {"global": {}, "in_flight": 0, "kv_conflicts": 0, "kv_lost": 0, "restarts": {},
                         "mailboxes": {}})
    now = _time.monotonic()
    # Ages well inside their buckets: observe() measures them again, later
    # (by up to 20 ms on a busy machine: 3 ms once crossed the 5 ms edge).
    for seconds, status in ((0.03, "ok"), (0.3, "ok"), (0.3, "duplicate"), (30.0, "ok")):
        m.observe(Reply(ReplyTo("s", None, "like", now - seconds), {"status": status}))
    m.observe(Reply(ReplyTo("s", None, "stats", 0.0), {"status": "error", "error": "invalid_request"}))
    text = m.render().decode()
    assert 'kryten_likes_requests_total{command="like",outcome="ok"} 3.0' in text
    assert 'kryten_likes_requests_total{command="like",outcome="duplicate"} 1.0' in text
    assert 'kryten_likes_requests_total{command="stats",outcome="invalid_request"} 1.0' in text
    # Cumulative buckets: 30 ms ≤ 50 ms; 300 ms twice ≤ 500 ms; 30 s only in +Inf.
    assert 'kryten_likes_request_seconds_bucket{command="like",le="0.025"} 0.0' in text
    assert 'kryten_likes_request_seconds_bucket{command="like",le="0.05"} 1.0' in text
    assert 'kryten_likes_request_seconds_bucket{command="like",le="0.25"} 1.0' in text
    assert 'kryten_likes_request_seconds_bucket{command="like",le="0.5"} 3.0' in text
    assert 'kryten_likes_request_seconds_bucket{command="like",le="10.0"} 3.0' in text
    assert 'kryten_likes_request_seconds_bucket{command="like",le="+Inf"} 4.0' in text
    assert 'kryten_likes_request_seconds_count{command="like"} 4.0' in text
    assert 'kryten_likes_request_seconds_count{command="stats"}' not in text  # no arrival time: no latency
