"""What operators see: Prometheus metrics and /health over HTTP, and the
Kryten service commands (``system.ping``, ``system.health``, ``system.stats``
on ``kryten.likes.command``).

Metrics live in a registry of their own (no process-global state). Values
that actors own (counts, mailbox depths, restarts) are read when scraped, by
the event loop that owns them: the HTTP endpoint is an anyio listener in the
daemon's task group, not a thread. (kryten-py's BaseMetricsServer binds every
interface and judges NATS health from a flag only ``KrytenClient.run`` sets,
so it is not used here.)
"""

from __future__ import annotations

import json
import logging
import time
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

import anyio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from . import __version__
from .messages import Reply

log = logging.getLogger(__name__)


LATENCY_BUCKETS = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)


class Metrics:
    """Replies counted by command and outcome, and their latency.

    Every reply is observed, so observing is a dict lookup and two list
    increments; prometheus_client's own ``labels().inc()`` and
    ``Histogram.observe`` (a lock per increment) cost several times more per
    like. The families are built from these counts when scraped.
    """

    def __init__(self, snapshot: Callable[[], dict]) -> None:
        self.registry = CollectorRegistry()
        self.snapshot = snapshot
        self.replies: dict[tuple[str, str], int] = {}  # (command, outcome) -> replies sent
        # command -> ([count per bucket, the last for +Inf], [sum of seconds])
        self.latency: dict[str, tuple[list[int], list[float]]] = {}
        self.registry.register(_ReplyCollector(self))
        self.registry.register(_SnapshotCollector(snapshot))

    def observe(self, r: Reply) -> None:
        command = r.to.command or "unknown"
        body = r.body
        key = (command, body.get("error") or body.get("status") or "unknown")
        self.replies[key] = self.replies.get(key, 0) + 1
        if r.to.received:
            seconds = time.monotonic() - r.to.received
            hist = self.latency.get(command)
            if hist is None:
                hist = self.latency[command] = ([0] * (len(LATENCY_BUCKETS) + 1), [0.0])
            hist[0][bisect_left(LATENCY_BUCKETS, seconds)] += 1
            hist[1][0] += seconds

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _ReplyCollector:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self):
        requests = CounterMetricFamily("kryten_likes_requests", "Replies sent, by command and outcome",
                                       labels=["command", "outcome"])
        for (command, outcome), n in sorted(self.metrics.replies.items()):
            requests.add_metric([command, outcome], n)
        yield requests
        latency = HistogramMetricFamily("kryten_likes_request_seconds", "Time from request to reply",
                                        labels=["command"])
        for command, (counts, total) in sorted(self.metrics.latency.items()):
            cumulative, buckets = 0, []
            for le, n in zip([*(str(float(b)) for b in LATENCY_BUCKETS), "+Inf"], counts):
                cumulative += n
                buckets.append((le, cumulative))
            latency.add_metric([command], buckets, sum_value=total[0])
        yield latency


class _SnapshotCollector:
    """Gauges read from the daemon's state at scrape time."""

    def __init__(self, snapshot: Callable[[], dict]) -> None:
        self.snapshot = snapshot

    def collect(self):
        s = self.snapshot()
        for name, help_, value in (
            ("kryten_likes_items_played", "items_played of the global counters", s["global"].get("items_played", 0)),
            ("kryten_likes_items_queued", "items_queued of the global counters", s["global"].get("items_queued", 0)),
            ("kryten_likes_in_flight", "requests inside the daemon", s["in_flight"]),
            ("kryten_likes_kv_conflicts", "atomic batches refused on a changed revision", s["kv_conflicts"]),
            ("kryten_likes_kv_lost_answers", "atomic batches whose answer was lost and resolved", s["kv_lost"]),
        ):
            yield GaugeMetricFamily(name, help_, value=value)
        restarts = GaugeMetricFamily("kryten_likes_actor_restarts", "restarts per actor", labels=["actor"])
        depth = GaugeMetricFamily("kryten_likes_mailbox_depth", "messages waiting per actor", labels=["actor"])
        for actor, n in s["restarts"].items():
            restarts.add_metric([actor], n)
        for actor, n in s["mailboxes"].items():
            depth.add_metric([actor], n)
        yield restarts
        yield depth


async def serve_http(host: str, port: int, metrics: Metrics, health: Callable[[], dict],
                     task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
    """GET /metrics (Prometheus text) and GET /health (JSON); nothing else."""
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    task_status.started(listener)

    async def handle(stream) -> None:
        async with stream:
            try:
                with anyio.fail_after(5):
                    head = b""
                    while b"\r\n\r\n" not in head and len(head) < 8192:
                        head += await stream.receive()
                parts = head.split(b" ", 2)
                path = parts[1].decode("latin-1") if len(parts) > 1 else ""
                if path == "/metrics":
                    status, ctype, body = "200 OK", "text/plain; version=0.0.4", metrics.render()
                elif path == "/health":
                    h = health()
                    status = "200 OK" if h.get("status") == "healthy" else "503 Service Unavailable"
                    ctype, body = "application/json", json.dumps(h).encode()
                else:
                    status, ctype, body = "404 Not Found", "text/plain", b"not found\n"
                await stream.send(f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                                  f"Connection: close\r\n\r\n".encode() + body)
            except Exception as exc:  # one bad client must not stop the endpoint
                log.debug("metrics client: %r", exc)

    await listener.serve(handle)


def service_reply(request: Any, health: Callable[[], dict], stats: Callable[[], dict]) -> dict:
    """The Kryten service-command convention: ``{"service": "likes", "command": ...}``
    → ``{"service", "command", "success", "data"}``."""
    command = request.get("command") if isinstance(request, dict) else None
    base = {"service": "likes", "command": command}
    if isinstance(request, dict) and request.get("service") not in (None, "likes"):
        return {**base, "success": False, "error": "not for this service"}
    if command == "system.ping":
        return {**base, "success": True, "data": {"pong": True, "version": __version__}}
    if command == "system.health":
        return {**base, "success": True, "data": health()}
    if command == "system.stats":
        return {**base, "success": True, "data": stats()}
    return {**base, "success": False, "error": f"unknown command {command!r}"}
