"""The read-only JSON API, the live stream and the dashboard's files
(docs/contract-social-web.md, "HTTP").

Each JSON route is a NATS command asked inside the daemon (``http_asks``):
the query becomes the request body a NATS client would send, the reply
loses ``correlation_id``/``status``/``error``, and an error word becomes an
HTTP status with ``{"error", "detail"}``. So a bad parameter is refused by
the same checks, with the same detail, as on the bus.

kryten-playlist's stats routes (``/api/v1/stats/...``) answer in its shapes
(its ``CurrentVideoOut``, ``TopLikedOut``, ``TopPlayedOut``), so its stats
page can be pointed at ours.
"""

from __future__ import annotations

import logging
import re
import socket
from importlib import resources
from typing import Any

from aiohttp import web

from .http_asks import LocalAsks, public
from .http_live import LiveFeed

log = logging.getLogger(__name__)

# What a status word is over HTTP; any other error word of a read command is a 404.
HTTP_STATUS = {"invalid_request": 400, "unavailable": 503, "internal_error": 500}
INTEGER = re.compile(r"[+-]?[0-9]{1,18}")
ACTIVITY_HOURS = 7 * 24
STATS_LIMIT_MAX = 50  # kryten-playlist's stats routes: 1-50, default 10
# A vanished client (a laptop asleep, a NAT forgetting it) holds a stream's
# place until TCP notices: ask it to, within about two minutes.
TCP_KEEPALIVE = ((socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),) + tuple(
    (socket.IPPROTO_TCP, getattr(socket, name), v) for name, v in
    (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 15), ("TCP_KEEPCNT", 4)) if hasattr(socket, name))
# The page and its two files, and nothing else: no inline script or style, no
# other origin (the page is built from text nodes; a hostile title stays text).
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}
DASHBOARD_FILES = {"/": ("index.html", "text/html"), "/static/dashboard.js": ("dashboard.js", "text/javascript"),
                   "/static/dashboard.css": ("dashboard.css", "text/css")}


def accepts_gzip(header: str) -> bool:
    """Whether ``Accept-Encoding`` admits gzip (``gzip`` or ``*`` with q > 0)."""
    weights = {}
    for part in header.split(","):
        coding, _, params = part.strip().partition(";")
        q = 1.0
        for p in params.split(";"):
            name, _, value = p.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        weights[coding.strip().lower()] = q
    return weights.get("gzip", weights.get("*", 0.0)) > 0


def answered(body: dict) -> web.Response:
    if body.get("status") == "error":
        word = body.get("error") or "internal_error"
        return web.json_response({"error": word, "detail": body.get("detail")},
                                 status=HTTP_STATUS.get(word, 404))
    return web.json_response(public(body))


def invalid(detail: str) -> web.Response:
    return web.json_response({"error": "invalid_request", "detail": detail}, status=400)


def query_body(request: web.Request, *names: str) -> dict:
    """The query as a NATS request body: digits become integers (``limit``),
    the rest stays text for the gateway's checks; an empty value is absent."""
    body: dict = {}
    for name in names:
        v = request.query.get(name, "")
        if v != "":
            body[name] = int(v) if name == "limit" and INTEGER.fullmatch(v) else v
    return body


def stats_limit(request: web.Request) -> int | None:
    v = request.query.get("limit", "")
    if v == "":
        return 10
    if not INTEGER.fullmatch(v) or not 1 <= int(v) <= STATS_LIMIT_MAX:
        return None
    return int(v)


def api_routes(asks: LocalAsks, feed: LiveFeed, *, dashboard: bool) -> list[web.RouteDef]:
    async def now_playing(request: web.Request) -> web.Response:
        return answered(await asks.ask("now_playing", {}))

    def top(ranking: str):
        async def route(request: web.Request) -> web.Response:
            return answered(await asks.ask(f"top_{ranking}", query_body(request, "window", "limit")))
        return route

    async def item(request: web.Request) -> web.Response:
        video_id = request.match_info["video_id"]
        stats = await asks.ask("stats", {"video_id": video_id})
        if stats.get("status") != "ok":
            return answered(stats)
        likers = await asks.ask("likers", {"video_id": video_id})
        if likers.get("status") != "ok":
            return answered(likers)
        return web.json_response({**stats["item"], "likers": likers["users"], "likers_cursor": likers["cursor"]})

    async def user_likes(request: web.Request) -> web.Response:
        body = {"username": request.match_info["username"], **query_body(request, "cursor", "limit")}
        return answered(await asks.ask("user_likes", body))

    async def activity(request: web.Request) -> web.Response:
        return answered(await asks.activity(ACTIVITY_HOURS))

    # --- kryten-playlist's shapes ----------------------------------------------------

    async def stats_current(request: web.Request) -> web.Response:
        body = await asks.ask("now_playing", {})
        if body.get("status") != "ok":
            return answered(body)
        return web.json_response({"video_id": body["video_id"], "title": body["title"],
                                  "playing": body["video_id"] is not None})

    def stats_top(ranking: str):
        async def route(request: web.Request) -> web.Response:
            limit = stats_limit(request)
            if limit is None:
                return invalid(f"limit: must be an integer 1-{STATS_LIMIT_MAX}")
            body = await asks.ask(f"top_{ranking}", {"limit": limit})
            if body.get("status") != "ok":
                return answered(body)
            return web.json_response({"items": [
                {"video_id": it["video_id"], "title": it["title"] or "", "count": it["count"], "thumbnail_url": None}
                for it in body["items"]]})
        return route

    # --- the live stream -----------------------------------------------------------------

    async def stream(request: web.Request) -> web.StreamResponse:
        if asks.activation() is None:  # a standby hears no events: its page would wait for nothing
            return web.json_response({"error": "unavailable", "detail": "this daemon is standby: the active "
                                      "daemon of the namespace streams"}, status=503, headers={"Retry-After": "5"})
        gzip = accepts_gzip(request.headers.get("Accept-Encoding", ""))  # browsers ask for it
        listener = feed.join(gzip)
        if listener is None:
            return web.json_response({"error": "unavailable", "detail": "too many live streams open; retry later"},
                                     status=503, headers={"Retry-After": "30"})
        try:
            headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                       "X-Accel-Buffering": "no", "Vary": "Accept-Encoding"}  # nginx: pass each event on at once
            if gzip:
                headers["Content-Encoding"] = "gzip"
            resp = web.StreamResponse(headers=headers)
            await resp.prepare(request)
            await resp.write(feed.hello(gzip))
            if request.transport is None:  # gone already
                return resp
            sock = request.transport.get_extra_info("socket")
            if sock is not None:
                for option in TCP_KEEPALIVE:
                    try:
                        sock.setsockopt(*option)
                    except OSError:
                        pass
            # From here the feed writes to the socket itself (http_live: no
            # task per listener wakes per event); this waits for the end: the
            # feed dropped it, or the client went away (the handler is cancelled).
            listener.outlet = SocketOutlet(request.transport, resp.headers.get("Transfer-Encoding") == "chunked")
            await listener.gone.wait()
            return resp
        finally:
            feed.leave(listener)

    table = [
        web.get("/api/v1/now-playing", now_playing),
        web.get("/api/v1/top/liked", top("liked")),
        web.get("/api/v1/top/played", top("played")),
        web.get("/api/v1/top/curators", top("curators")),
        web.get("/api/v1/items/{video_id}", item),
        web.get("/api/v1/users/{username}/likes", user_likes),
        web.get("/api/v1/activity", activity),
        web.get("/api/v1/stream", stream, allow_head=False),  # a HEAD must not take a place, nor get a body
        web.get("/api/v1/stats/current", stats_current),
        web.get("/api/v1/stats/top-played", stats_top("played")),
        web.get("/api/v1/stats/top-liked", stats_top("liked")),
    ]
    if dashboard:
        table += [web.get(path, dashboard_file(name, kind)) for path, (name, kind) in DASHBOARD_FILES.items()]
    return table


class SocketOutlet:
    """A live stream's socket, written by the feed without waiting (``http_live.Outlet``).

    After the response began through aiohttp, the bytes go to the transport
    directly, in HTTP/1.1 chunks when the response is chunked; aiohttp ends
    the body (its last chunk) when the handler returns."""

    def __init__(self, transport: Any, chunked: bool) -> None:
        self.transport = transport
        self.chunked = chunked

    def write(self, data: bytes) -> None:
        if self.chunked:
            data = b"%x\r\n%b\r\n" % (len(data), data)
        self.transport.write(data)

    def backlog(self) -> int:
        return self.transport.get_write_buffer_size()

    def end(self) -> None:
        self.transport.abort()


def dashboard_file(name: str, content_type: str):
    body = resources.files(__package__).joinpath("dashboard", name).read_bytes()  # read once: a few kB

    async def route(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type, charset="utf-8",
                            headers={"Cache-Control": "no-cache"})
    return route


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: every answer, the stream and 404s included."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
