"""The daemon's one HTTP server (aiohttp): Prometheus ``/metrics``,
``/health``, and the JSON API, live stream and dashboard (``http_api``).

Resource handling: `serve_http` runs as a task of the daemon's task group
(``await tg.start(serve_http, ...)``); it owns the aiohttp runner and site
and closes them in its ``finally``, shielded, when the daemon stops. Nothing
here is global: handlers are closures over what the daemon hands in.

Error handling: a port that cannot be bound is an ``OSError`` from
``tg.start`` (the daemon logs it and goes on counting); a client that sends
garbage gets aiohttp's 400 and the server goes on; a health check that does
not finish in time answers 503, never hangs the request.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from .http_api import api_routes, security_headers
from .http_asks import LocalAsks
from .http_live import LiveFeed
from .operations import HEALTH_ROUND_TRIP_SECONDS, Metrics

log = logging.getLogger(__name__)

Health = Callable[[], Awaitable[dict]]

# The health check bounds its own NATS round trip; this bounds the whole
# handler, so /health answers even if something else in the check stalls.
HEALTH_HANDLER_SECONDS = HEALTH_ROUND_TRIP_SECONDS + 1.0
# Prometheus keeps its connection between scrapes (15-60 s apart); aiohttp's
# default would hold an idle connection for an hour.
KEEPALIVE_SECONDS = 75.0
# Stopping the daemon waits this long at most for requests still running.
SHUTDOWN_SECONDS = 1.0


def routes(metrics: Metrics, health: Health) -> list[web.RouteDef]:
    """The operator's routes; the API's are ``http_api.api_routes``."""

    async def get_metrics(request: web.Request) -> web.Response:
        # Rendered on the event loop that owns the counts (no lock, no thread).
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def get_health(request: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(HEALTH_HANDLER_SECONDS):  # aiohttp handlers are asyncio tasks
                h = await health()
        except TimeoutError:
            h = {"service": "likes", "status": "degraded", "nats_connected": False,
                 "reason": f"the health check did not finish within {HEALTH_HANDLER_SECONDS:g} s"}
        except Exception as exc:  # a failing check is news for the operator, not a 500
            log.warning("health check failed: %r", exc)
            h = {"service": "likes", "status": "unhealthy", "nats_connected": False,
                 "reason": f"the health check failed: {exc!r}"}
        return web.json_response(h, status=200 if h.get("status") == "healthy" else 503)

    return [web.get("/metrics", get_metrics), web.get("/health", get_health)]


def build_app(metrics: Metrics, health: Health, asks: LocalAsks, feed: LiveFeed, *,
              dashboard: bool) -> web.Application:
    app = web.Application()
    app.add_routes(routes(metrics, health) + api_routes(asks, feed, dashboard=dashboard))
    app.on_response_prepare.append(security_headers)
    return app


def endpoint_url(host: str, port: int, path: str) -> str:
    """The URL other services can use; a wildcard bind is named by this host's name."""
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{path}"


async def serve_http(host: str, port: int, app: web.Application,
                     task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
    """Serve `app` on host:port until cancelled; ``started()`` gives the bound port."""
    # access_log=None: a log line per scrape would drown the daemon's own lines.
    # handler_cancellation: a live stream whose client went away ends at once
    # (its place is given back), not at its next write.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, handler_cancellation=True,
                           keepalive_timeout=KEEPALIVE_SECONDS, shutdown_timeout=SHUTDOWN_SECONDS)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]  # port 0 in tests: the one the system chose
        log.info("HTTP on %s (/metrics, /health, /api/v1, the dashboard at /)", endpoint_url(host, bound, ""))
        task_status.started(bound)
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()
