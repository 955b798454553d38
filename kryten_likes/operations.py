"""What operators see: Prometheus metrics, the NATS health check, and the
Kryten service commands (``system.ping``, ``system.health``, ``system.stats``
on ``kryten.likes.command``). The HTTP server that shows the first two is in
`http_server`.

Metrics live in a registry of their own (no process-global state). Values
that actors own (counts, mailbox depths, restarts) are read when scraped, by
the event loop that owns them. (kryten-py's BaseMetricsServer binds every
interface and judges NATS health from a flag only ``KrytenClient.run`` sets,
so it is not used here.)
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

import nats.errors
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from . import __version__
from .effects import Reply

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
            ("kryten_likes_stream_clients", "live streams (/api/v1/stream) open", s.get("stream_clients", 0)),
            ("kryten_likes_likes_unstored", "likes answered through the journal and not yet in their documents",
             s.get("likes_unstored", 0)),
        ):
            yield GaugeMetricFamily(name, help_, value=value)
        # Only grows: a counter (exposed as ..._total), so rate() reads it.
        yield CounterMetricFamily("kryten_likes_streams_dropped", "live streams the daemon ended since start: "
                                  "not reading, a failed write, or stepping down", value=s.get("streams_dropped", 0))
        restarts = GaugeMetricFamily("kryten_likes_actor_restarts", "restarts per actor", labels=["actor"])
        depth = GaugeMetricFamily("kryten_likes_mailbox_depth", "messages waiting per actor", labels=["actor"])
        for actor, n in s["restarts"].items():
            restarts.add_metric([actor], n)
        for actor, n in s["mailboxes"].items():
            depth.add_metric([actor], n)
        yield restarts
        yield depth


HEALTH_ROUND_TRIP_SECONDS = 2.0


async def check_nats(nc: Any, timeout: float = HEALTH_ROUND_TRIP_SECONDS) -> dict:
    """``status``, ``nats_connected`` and ``reason`` from a NATS round trip.

    A connection can look connected while the server does not answer (a hung
    or stopped server: nats-py notices only after minutes of unanswered
    pings), so the check sends a message to a fresh inbox of ours and waits
    for the server to deliver it back. Not ``nc.flush(timeout=...)``: when its
    PING times out, nats-py (2.16) cancels the PONG's future, and the late
    PONG then kills the client's read loop (InvalidStateError in
    ``_process_pong``) — one slow check would leave the daemon deaf for good.
    A subscription's queue may be waited on with a timeout safely.

    ``degraded``: NATS may come back by itself (reconnecting, no answer in
    time); ``unhealthy``: the connection is closed for good.
    """
    if nc.is_closed:
        return {"status": "unhealthy", "nats_connected": False, "reason": "the NATS connection is closed"}
    if not nc.is_connected:
        return {"status": "degraded", "nats_connected": False, "reason": "reconnecting to NATS"}
    started = time.monotonic()
    inbox = nc.new_inbox()
    try:
        sub = await nc.subscribe(inbox)
        try:
            await nc.publish(inbox, b"")
            await sub.next_msg(timeout=timeout)
        finally:
            await sub.unsubscribe()
    except nats.errors.TimeoutError:
        return {"status": "degraded", "nats_connected": False,
                "reason": f"NATS did not answer a round trip within {timeout:g} s"}
    except Exception as exc:  # e.g. closed meanwhile
        return {"status": "degraded", "nats_connected": False, "reason": f"NATS round trip failed: {exc!r}"}
    return {"status": "healthy", "nats_connected": True, "reason": None,
            "nats_round_trip_ms": round((time.monotonic() - started) * 1000, 1)}


async def service_reply(request: Any, health: Callable[[], Awaitable[dict]], stats: Callable[[], dict], *,
                        uptime_seconds: float, metrics_endpoint: str | None) -> dict:
    """The Kryten service-command convention: ``{"service": "likes", "command": ...}``
    → ``{"service", "command", "success", "data"}``."""
    command = request.get("command") if isinstance(request, dict) else None
    base = {"service": "likes", "command": command}
    if isinstance(request, dict) and request.get("service") not in (None, "likes"):
        return {**base, "success": False, "error": "not for this service"}
    if command == "system.ping":
        return {**base, "success": True, "data": {
            "pong": True, "service": "likes", "version": __version__, "uptime_seconds": round(uptime_seconds, 1),
            "timestamp": datetime.now(timezone.utc).isoformat(), "metrics_endpoint": metrics_endpoint}}
    if command == "system.health":
        return {**base, "success": True, "data": await health()}
    if command == "system.stats":
        return {**base, "success": True, "data": stats()}
    return {**base, "success": False, "error": f"unknown command {command!r}"}
