"""The daemon's HTTP server (aiohttp) and its health check, through a real
nats-server: /metrics, /health (503 while NATS does not answer), routes,
bad clients, and system.ping's shape."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import attrs
import pytest
from conftest import Harness, unique_config, wait_until
from prometheus_client import CONTENT_TYPE_LATEST

from kryten_likes.clock import FakeClock
from kryten_likes.config import Config, parse_config
from kryten_likes.embedded import start_nats_server
from kryten_likes.http_server import endpoint_url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_config():
    """The shared test config (own prefix, channel, namespace) with HTTP on a free port."""
    c = unique_config()
    return attrs.evolve(c, http=attrs.evolve(c.http, port=free_port()))


def get(h, path: str, method: str = "GET", timeout: float = 10) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{h.config.http.port}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def ping(h) -> dict:
    msg = h.portal.call(lambda: h.nc.request("kryten.likes.command",
                                             json.dumps({"service": "likes", "command": "system.ping"}).encode(),
                                             timeout=5))
    return json.loads(msg.data)


def test_the_default_port_is_28292_and_ping_names_it():
    c = Config()
    assert (c.http.host, c.http.port) == ("127.0.0.1", 28292)
    assert parse_config({}).http.port == 28292
    assert endpoint_url(c.http.host, c.http.port, "/metrics") == "http://127.0.0.1:28292/metrics"
    assert endpoint_url("::1", 28292, "/metrics") == "http://[::1]:28292/metrics"


def test_metrics_health_and_routes(harness):
    h = harness(http_config())
    status, headers, body = get(h, "/metrics")
    assert status == 200
    assert headers["Content-Type"] == CONTENT_TYPE_LATEST
    assert b"# TYPE kryten_likes_in_flight gauge" in body
    assert b"kryten_likes_likes_unstored 0.0" in body  # nothing liked yet, nothing journalled
    assert b'kryten_likes_mailbox_depth{actor="gateway"}' in body

    status, headers, body = get(h, "/health")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    health = json.loads(body)
    assert (health["status"], health["nats_connected"], health["reason"]) == ("healthy", True, None)
    assert health["nats_round_trip_ms"] < 2000

    # Only the routes in the table (the API's: test_http_api), methods are checked.
    for path in ("/nope", "/metrics/x", "/api/v1", "/api/v1/now-playing/x", "/static/other.js"):
        assert get(h, path)[0] == 404, path
    assert get(h, "/metrics", method="POST")[0] == 405


def test_a_bad_client_does_not_stop_the_server(harness):
    h = harness(http_config())
    port = h.config.http.port
    # A client that sends half a request and stays: others are served meanwhile.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as idle:
        idle.sendall(b"GET /metr")
        for garbage in (b"\x00\xff\xfe garbage \x01\r\n\r\n", b"GET /health HTTP/9.9\r\n\r\n",
                        b"GET / HTTP/1.1\r\n" + b"X: " + b"y" * 100_000 + b"\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as bad:
                bad.sendall(garbage)
                answer = bad.recv(200)
            assert re.match(rb"HTTP/1\.[01] 4\d\d ", answer), (garbage[:20], answer)  # 400/431: refused, not served
        with socket.create_connection(("127.0.0.1", port), timeout=5) as rude:
            rude.sendall(b"GET /health HTTP/1.1\r\n")  # and hangs up mid-request
        assert get(h, "/health")[0] == 200
        assert get(h, "/metrics")[0] == 200


def test_ping_in_the_ecosystem_shape(harness):
    h = harness(http_config())
    before = datetime.now(timezone.utc)
    r = ping(h)
    assert (r["service"], r["command"], r["success"]) == ("likes", "system.ping", True)
    data = r["data"]
    assert set(data) == {"pong", "service", "version", "uptime_seconds", "timestamp", "metrics_endpoint"}
    assert (data["pong"], data["service"]) == (True, "likes")
    assert data["metrics_endpoint"] == f"http://127.0.0.1:{h.config.http.port}/metrics"
    assert data["uptime_seconds"] >= 0
    stamp = datetime.fromisoformat(data["timestamp"])
    assert stamp.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=5) <= stamp <= datetime.now(timezone.utc) + timedelta(seconds=5)

    h.stop()  # every daemon answers kryten.likes.command: one at a time
    off = harness()  # the shared test config: HTTP off
    assert ping(off)["data"]["metrics_endpoint"] is None


def stopped(pid: int) -> bool:
    """Whether every thread of `pid` is stopped: kill() returns before the
    kernel has stopped them all (measured: up to ~10 ms), and a round trip on
    loopback can slip through meanwhile."""
    tasks = f"/proc/{pid}/task"
    return all(open(f"{tasks}/{t}/stat").read().rsplit(")", 1)[1].split()[0] == "T" for t in os.listdir(tasks))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs /proc to see the server stopped")
def test_health_is_503_while_nats_does_not_answer_and_200_after(portal, tmp_path):
    """SIGSTOP leaves every connection open but the server silent: the
    connection flag still says "connected"; only a round trip tells."""
    with start_nats_server(tmp_path / "js", port=None) as server:
        h = Harness(portal, server.url, http_config(), FakeClock())
        try:
            h.start()
            assert get(h, "/health")[0] == 200
            os.kill(server.pid, signal.SIGSTOP)
            try:
                wait_until(lambda: stopped(server.pid), timeout=5)
                started = time.monotonic()
                status, _, body = get(h, "/health", timeout=10)  # it answers, it does not hang
                elapsed = time.monotonic() - started
                health = json.loads(body)
                assert status == 503, health
                assert elapsed < 3.5, elapsed
                assert health["status"] in ("degraded", "unhealthy")
                assert health["nats_connected"] is False
                assert "round trip" in health["reason"]
                assert get(h, "/metrics")[0] == 200  # metrics need no NATS
            finally:
                os.kill(server.pid, signal.SIGCONT)
            wait_until(lambda: get(h, "/health")[0] == 200, timeout=20)
            # The checks that timed out left the daemon's NATS client working.
            assert h.request("now_playing", {})["status"] == "ok"
            r = h.portal.call(lambda: h.nc.request("kryten.likes.command", json.dumps(
                {"service": "likes", "command": "system.health"}).encode(), timeout=5))
            assert json.loads(r.data)["data"]["status"] == "healthy"
        finally:
            h.close()


def test_a_taken_port_leaves_the_daemon_counting_without_http(harness):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        c = unique_config()
        h = harness(attrs.evolve(c, http=attrs.evolve(c.http, port=taken.getsockname()[1])))
        assert h.request("now_playing", {})["status"] == "ok"
        assert ping(h)["data"]["metrics_endpoint"] is None
