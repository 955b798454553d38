"""What `kryten-likes doctor` asks the bus, before any judging.

``gather`` connects as the daemon would (the same credentials and TLS
options) and asks the bus everything at once: the server's version, the
JetStream account, the stream behind each bucket, whether a stream already
captures the bridge's events, the server's clock, and which Kryten services
answer discovery. What it hears is a ``BusFacts``; a connection that cannot
be made is ``Unreachable``.

The JetStream API is asked in its own JSON (``$JS.API.*``) rather than
through nats-py's models: the answer then holds every field the server
sent (``allow_atomic``, ``metadata``, ``ts`` of the answer, tiered account
limits) whatever nats-py's version knows of.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any

import nats.errors
from attrs import frozen
from nats.aio.client import Client as NatsClient

from .config import Config, event_channel_token, nats_options
from .discovery import services_on_bus
from .store.keys import ANALYTICS_BUCKET, LIKES_BUCKET

__all__ = ["BUCKETS", "BusFacts", "ClockReading", "Unreachable", "gather"]

BUCKETS = (ANALYTICS_BUCKET, LIKES_BUCKET)
API_TIMEOUT = 5.0
DISCOVERY_SECONDS = 1.0


@frozen
class Unreachable:
    """No connection to the server could be made; ``cause`` says why."""

    url: str
    cause: str


@frozen
class ClockReading:
    """A JetStream answer's ``ts`` and this machine's time around the request."""

    stream: str
    server_time: str
    asked_at: float
    answered_at: float


@frozen
class BusFacts:
    """What the bus said, before any judging."""

    url: str
    version: str
    account: Mapping[str, Any] | None  # None: nobody answers the JetStream API
    streams: Mapping[str, Mapping[str, Any]]  # bucket -> its stream info answer (error answers too)
    event_stream: str | None  # the stream that captures the bridge's changeMedia, if any
    clock: ClockReading | None
    services: Mapping[str, Mapping[str, Any]]


async def gather(url: str, config: Config, timeout: float = API_TIMEOUT) -> BusFacts | Unreachable:
    """Connect like the daemon and collect the facts every check needs."""
    errors: list[Exception] = []

    async def remember(exc: Exception) -> None:
        errors.append(exc)

    nc = NatsClient()
    try:
        try:
            # One quick try per server: a doctor that waits a minute helps nobody.
            await asyncio.wait_for(nc.connect(
                [server.strip() for server in url.split(",")], name="kryten-likes doctor",
                connect_timeout=timeout, allow_reconnect=False, max_reconnect_attempts=1, reconnect_time_wait=0,
                error_cb=remember, **nats_options(config)), timeout)
        except (OSError, nats.errors.Error, asyncio.TimeoutError) as exc:
            return Unreachable(url, _describe(errors[-1] if errors else exc))
        return await _ask_everything(nc, url, config, timeout)
    finally:
        await nc.close()


async def _ask_everything(nc: Any, url: str, config: Config, timeout: float) -> BusFacts:
    api = _JetStreamApi(nc, timeout)
    account = await api.ask("$JS.API.INFO")
    streams: dict[str, Mapping[str, Any]] = {}
    event_stream = clock = None
    if account is not None and "error" not in account:
        for bucket in BUCKETS:
            answer, reading = await api.stream_info(f"KV_{bucket}")
            streams[bucket] = answer or {}
            clock = clock or reading
        # The daemon's event stream, or another that already captures the
        # bridge's subjects (the daemon then reads from that one).
        from .events import event_subjects  # the daemon's own subject rule; imported only when needed

        event_stream = await api.first_stream(event_subjects(event_channel_token(config.cytube.channel))[0])
        if clock is None:  # no bucket yet: any stream's answer tells the server's time
            other = event_stream or await api.first_stream()
            clock = (await api.stream_info(other))[1] if other is not None else None
    services = await services_on_bus(nc, timeout=DISCOVERY_SECONDS)
    return BusFacts(url, _version_text(nc), account, streams, event_stream, clock, services)


class _JetStreamApi:
    """The JetStream API's own JSON answers. None: nobody answers it (no
    JetStream); a timeout or garbage is an answer with an ``error``."""

    def __init__(self, nc: Any, timeout: float) -> None:
        self.nc = nc
        self.timeout = timeout

    async def ask(self, subject: str, body: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        payload = json.dumps(body).encode() if body is not None else b""
        try:
            msg = await self.nc.request(subject, payload, timeout=self.timeout)
        except nats.errors.NoRespondersError:
            return None
        except asyncio.TimeoutError:  # nats.errors.TimeoutError is one too
            return {"error": {"description": f"no answer within {self.timeout:g} s"}}
        try:
            answer = json.loads(msg.data)
        except ValueError:
            answer = None
        return answer if isinstance(answer, dict) else {"error": {"description": "an answer that is not JSON"}}

    async def stream_info(self, name: str) -> tuple[dict[str, Any] | None, ClockReading | None]:
        """A stream's info, and the clock reading its ``ts`` gives."""
        asked_at = time.time()
        answer = await self.ask(f"$JS.API.STREAM.INFO.{name}")
        answered_at = time.time()
        ts = (answer or {}).get("ts")
        return answer, ClockReading(name, ts, asked_at, answered_at) if isinstance(ts, str) else None

    async def first_stream(self, subject: str | None = None) -> str | None:
        """The first stream (capturing ``subject``, when given), if any."""
        names = await self.ask("$JS.API.STREAM.NAMES", {"subject": subject} if subject else {})
        return next(iter((names or {}).get("streams") or []), None)


def _version_text(nc: Any) -> str:
    try:
        v = nc.connected_server_version
        return f"{v.major}.{v.minor}.{v.patch}" + (f"-{v.prerelease}" if v.prerelease else "")
    except ValueError:  # not semantic versioning: judged as unknown
        return "unknown"


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
