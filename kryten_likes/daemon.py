"""The daemon, composed: one NATS connection (``connection``), kryten-py's
client on it, HTTP, the service command and the chat ear (``status``,
``chat``), and the lease (``lease_keeper``); while the lease is ours, an
activation (``activation``: the actors under their supervisor, the event
feed, the command subscriptions). All owned by one task group, so stopping
the daemon stops everything it started.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import anyio.abc
import attrs

from . import __version__
from .activation import Activation, Surroundings, serve_active
from .actors.shell import FaultHook
from .bridge_client import SharedConnectionKrytenClient
from .chat import ChatMouth, ChatVoice, hear
from .curation import hear_set_current
from .clock import Clock, SystemClock
from .config import Config
from .connection import connect
from .discovery import warn_about_neighbours
from .http_asks import LocalAsks
from .http_live import LiveFeed
from .http_server import build_app, endpoint_url, serve_http
from .lease_keeper import LeaseKeeper
from .operations import Metrics
from .status import DaemonStatus
from .store import open_buckets, open_journal
from .store.reconnects import Reconnects

log = logging.getLogger(__name__)

# How long a daemon that lost its lease waits for what it holds to be
# answered before it stops serving.
STEP_DOWN_DRAIN_SECONDS = 5.0
# How long a stop waits for the requests it took to be answered and the
# likes answered to be in their documents (not needed for exactness: a start
# stores what the journal holds; but other services read KV meanwhile).
STOP_DRAIN_SECONDS = 5.0


@attrs.define
class Daemon:
    """A running daemon, for tests and the CLI: its parts and a way to stop it."""

    config: Config
    cancel_scope: anyio.CancelScope
    nc: Any = None
    reconnects: Reconnects | None = None
    surroundings: Surroundings | None = None  # what each activation is given
    tasks: anyio.abc.TaskGroup | None = None  # the daemon's own: activations start there
    activation: Activation | None = None  # while active
    serving: anyio.CancelScope | None = None
    keeper: Any = None
    live: Any = None  # the HTTP live stream's feed (http_live.LiveFeed)
    serving_started: anyio.Event = attrs.Factory(anyio.Event)
    serving_ended: anyio.Event = attrs.Factory(anyio.Event)
    failure: Exception | None = None  # why an activation could not start (the daemon stops)

    @property
    def role(self) -> str:
        """``active`` while the lease is ours and an activation serves, else
        ``standby`` (also while one starts, or drains after stepping down)."""
        held = self.keeper is not None and self.keeper.role == "active"
        return "active" if held and self.activation is not None else "standby"

    @property
    def supervisor(self) -> Any:
        return self.activation.supervisor if self.activation is not None else None

    @property
    def bus(self) -> Any:
        return self.activation.bus if self.activation is not None else None

    def stop(self) -> None:
        self.cancel_scope.cancel()

    async def on_active(self) -> None:
        assert self.tasks is not None
        self.tasks.start_soon(self.activate)

    async def on_standby(self, reason: str) -> None:
        # Waited for: the keeper moves the fence for a new activation only
        # once nothing of this one runs.
        await self.step_down()

    async def activate(self) -> None:
        ended = self.serving_ended = anyio.Event()
        try:
            with anyio.CancelScope() as scope:
                self.serving = scope
                # The activation's own task group, inside the scope: stepping
                # down cancels all of it (actors, feed, ticker) and nothing else.
                async with anyio.create_task_group() as serving:
                    try:
                        self.activation = await serving.start(serve_active, self.surroundings)
                    except Exception as exc:  # it cannot start (e.g. a schema it does not know)
                        self.failure = exc
                        self.cancel_scope.cancel()
                        return
                    log.info("kryten-likes serving namespace %s on %s.playlist.cmd.*",
                             self.config.analytics.namespace, self.config.nats.subject_prefix)
                    self.serving_started.set()
        finally:
            self.activation = None
            ended.set()

    async def step_down(self) -> None:
        """Lease lost: stop taking requests, let what is held be answered
        (every commit is Fenced now: ``unavailable``), then stop serving."""
        a, scope = self.activation, self.serving
        if self.live is not None:
            self.live.drop_all("this daemon stepped down")
        if a is not None:
            await a.stop_taking_requests()
            with anyio.move_on_after(STEP_DOWN_DRAIN_SECONDS):
                await a.bus.idle()
        if scope is not None:
            scope.cancel()
            await self.serving_ended.wait()

    async def drain(self) -> None:
        """A clean stop's first half (``stop`` is the second): take no more
        requests, answer those taken, and wait for the likes answered to be
        in their documents; ``STOP_DRAIN_SECONDS`` at most."""
        a = self.activation
        if a is None:
            return
        await a.stop_taking_requests()
        if self.keeper is not None and self.keeper.role != "active":
            return  # (fenced: nothing more would be stored)
        with anyio.move_on_after(STOP_DRAIN_SECONDS):
            await a.bus.idle()
            await a.likes_stored()

    async def stop_serving(self) -> None:
        if self.activation is not None:
            await self.activation.stop_taking_requests()
        if self.serving is not None:
            self.serving.cancel()
            with anyio.move_on_after(10):
                await self.serving_ended.wait()


async def serve(config: Config, *, nats_url: str | None = None, clock: Clock | None = None,
                fault: FaultHook | None = None, tick_seconds: float = 1.0,
                task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
    clock = clock or SystemClock()
    servers = [nats_url] if nats_url else list(config.nats.servers)
    reconnects = Reconnects()
    nc = await connect(servers, config, reconnects)
    # kryten-py's client for what it does well (add_media to the bridge, chat);
    # it also publishes our lifecycle events (kryten.lifecycle.likes.startup,
    # .heartbeat, .shutdown) and answers service discovery. It runs on our own
    # connection, which carries every credential (see bridge_client). The
    # counters use nats-py directly (atomic batches, durable consumer).
    http_port = config.http.port or None
    kryten = SharedConnectionKrytenClient(
        {"nats": {"servers": servers},
         "channels": [{"domain": config.cytube.domain, "channel": config.cytube.channel}],
         "service": {"name": "likes", "version": __version__, "heartbeat_interval": 30,
                     "health_port": http_port, "metrics_port": http_port}},
        nc, logger=logging.getLogger("kryten_likes.kryten"))
    try:
        await kryten.connect()
        daemon = Daemon(config, anyio.CancelScope(), nc, reconnects)
        await _serve_leased(daemon, kryten, clock, fault, tick_seconds, task_status)
    finally:
        with anyio.CancelScope(shield=True):
            await kryten.disconnect()
            await nc.close()


async def _serve_leased(daemon: Daemon, kryten: Any, clock: Clock, fault: FaultHook | None, tick_seconds: float,
                        task_status: Any) -> None:
    """The daemon's whole life: HTTP, the service command, the chat ear and
    the lease; an activation whenever the lease is ours."""
    config, nc, ns = daemon.config, daemon.nc, daemon.config.analytics.namespace
    analytics, likes = await open_buckets(nc, config.storage.replicas, daemon.reconnects)
    try:
        journal = await open_journal(nc, config.storage.replicas, daemon.reconnects)
    except Exception as exc:  # (no permission for a third bucket, say): slower, not less exact
        log.warning("the lone likes' journal (bucket kryten_likes_journal) cannot be used (%s): "
                    "every like waits for an atomic batch", exc)
        journal = None
    status = DaemonStatus(daemon, analytics, likes)
    metrics = Metrics(status.snapshot)
    voice = ChatVoice(config.chat)
    chat_out, chat_in = anyio.create_memory_object_stream(100)
    mouth = ChatMouth(kryten, config.cytube.channel, chat_out)

    def speak(r: Any) -> None:
        line = voice.line_for(r.to, r.body, clock.now())
        if line is not None:
            mouth.say(line)

    async def on_chat(event: Any) -> None:
        await hear(event, daemon.activation, config.chat, ns)

    async def on_set_current(event: Any) -> None:
        await hear_set_current(event, daemon.activation)

    asks = LocalAsks(lambda: daemon.activation, ns)  # the HTTP routes' requests
    feed = daemon.live = LiveFeed(config.http.max_stream_clients, asks.now_playing)
    daemon.surroundings = Surroundings(nc, kryten, config, clock, fault, tick_seconds, analytics, likes,
                                       [metrics.observe, speak, asks.heard], feed.event_published, journal)
    if config.chat.enabled:
        kryten.on("chatmsg")(on_chat)
    kryten.on("setcurrent")(on_set_current)
    async with anyio.create_task_group() as tg:
        daemon.cancel_scope, daemon.tasks = tg.cancel_scope, tg
        keeper = daemon.keeper = LeaseKeeper([analytics, likes, *([journal] if journal else [])], likes, ns, config.ha.lease_seconds,
                                             on_active=daemon.on_active, on_standby=daemon.on_standby)
        service_sub = await nc.subscribe("kryten.likes.command", cb=status.on_service_command)
        tg.start_soon(mouth.run, chat_in)
        tg.start_soon(warn_about_neighbours, nc, config.queue.apply_enabled, config.nats.subject_prefix)
        await _start_http(tg, config, metrics, status, asks, feed)
        tg.start_soon(keeper.run)
        try:
            await _first_role(daemon, keeper)  # active and serving, or standby behind another
            task_status.started(daemon)
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await service_sub.unsubscribe()
                await daemon.stop_serving()
                await keeper.release()
    if daemon.failure is not None:
        raise daemon.failure


async def _start_http(tg: anyio.abc.TaskGroup, config: Config, metrics: Metrics, status: DaemonStatus,
                      asks: LocalAsks, feed: LiveFeed) -> None:
    if not config.http.port:
        return
    try:
        app = build_app(metrics, status.health, asks, feed, dashboard=config.http.dashboard)
        port = await tg.start(serve_http, config.http.host, config.http.port, app)
        await tg.start(feed.run)
        status.metrics_endpoint = endpoint_url(config.http.host, port, "/metrics")
    except OSError as exc:  # metrics are for operators; the counts must go on
        log.error("no metrics endpoint on %s:%d: %s", config.http.host, config.http.port, exc)


async def _first_role(daemon: Daemon, keeper: LeaseKeeper) -> None:
    async with anyio.create_task_group() as tg:
        async def until(event: anyio.Event) -> None:
            await event.wait()
            tg.cancel_scope.cancel()

        tg.start_soon(until, daemon.serving_started)
        tg.start_soon(until, keeper.standby_seen)
