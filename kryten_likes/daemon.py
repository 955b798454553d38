"""The daemon: one NATS connection, kryten-py's client on it, HTTP, the
service commands and the lease; while the lease is ours, an activation (the
actors under their supervisor, the command subscriptions, the event feed and
a ticker: ``activation``). All owned by one task group, so stopping the
daemon stops everything it started.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from pathlib import Path
from typing import Any

import anyio
import attrs
import nats
import nats.errors

from . import __version__, wire
from .activation import Activation, Surroundings, serve_active
from .actors.shell import Bus, FaultHook, MailboxFull, send_json
from .bridge_client import SharedConnectionKrytenClient
from .chat import ChatLine, ChatMouth, ChatVoice, chat_request
from .clock import Clock, SystemClock
from .config import Config, nats_options
from .discovery import apply_owner_warning, services_on_bus
from .http_server import build_app, endpoint_url, serve_http
from .lease_keeper import LeaseKeeper
from .operations import Metrics, check_nats, service_reply
from .startup import loop_options
from .store import open_buckets
from .store.reconnects import Reconnects

log = logging.getLogger(__name__)

# How long a daemon that lost its lease waits for what it holds to be
# answered before it stops serving.
STEP_DOWN_DRAIN_SECONDS = 5.0


class StartError(Exception):
    """The daemon cannot start; the message says why (never a secret)."""


async def connect(servers: list[str], config: Config, reconnects: Reconnects | None = None) -> Any:
    """A few tries at start (a wrong password or no server should stop the
    daemon with a clear message), then reconnect forever: once running, the
    daemon outlives nats-server restarts."""
    errors: list[Exception] = []

    async def remember(exc: Exception) -> None:
        errors.append(exc)

    try:
        nc = await nats.connect(servers=servers, name="kryten-likes", max_reconnect_attempts=3,
                                reconnect_time_wait=0.5, allow_reconnect=True, error_cb=remember,
                                reconnected_cb=reconnects.reconnected if reconnects else None,
                                **nats_options(config))
    except Exception as exc:
        # The server closes a refused connection, so the last error may be a
        # reset; the refusal is the news.
        refused = [e for e in errors if isinstance(e, nats.errors.AuthorizationError)]
        cause = refused[-1] if refused else errors[-1] if errors else exc
        hint = ""
        n = config.nats
        if not refused and (n.user or n.token or n.creds_file) and isinstance(cause, ConnectionResetError):
            hint = " (the server closed the connection at the handshake: check the NATS credentials)"
        raise StartError(f"cannot connect to NATS at {', '.join(servers)}: {cause}{hint}") from None
    nc.options["max_reconnect_attempts"] = -1  # nats-py reads this on every reconnect
    return nc


@attrs.define
class Daemon:
    """A running daemon, for tests and the CLI: its parts and a way to stop it."""

    config: Config
    cancel_scope: anyio.CancelScope
    nc: Any = None
    reconnects: Reconnects | None = None
    activation: Activation | None = None  # while active
    serving: anyio.CancelScope | None = None
    keeper: Any = None
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
    def bus(self) -> Bus | None:
        return self.activation.bus if self.activation is not None else None

    def stop(self) -> None:
        self.cancel_scope.cancel()

    async def step_down(self) -> None:
        """Lease lost: stop taking requests, let what is held be answered
        (every commit is Fenced now: ``unavailable``), then stop serving."""
        a, scope = self.activation, self.serving
        if a is not None:
            await a.stop_taking_requests()
            with anyio.move_on_after(STEP_DOWN_DRAIN_SECONDS):
                await a.bus.idle()
        if scope is not None:
            scope.cancel()
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
        await _serve_leased(nc, kryten, reconnects, config, clock, fault, tick_seconds, task_status)
    finally:
        with anyio.CancelScope(shield=True):
            await kryten.disconnect()
            await nc.close()


async def _serve_leased(nc: Any, kryten: Any, reconnects: Reconnects, config: Config, clock: Clock,
                        fault: FaultHook | None, tick_seconds: float, task_status: Any) -> None:
    """The daemon's whole life: HTTP, the service commands, the chat ear and
    the lease; an activation (``activation.serve_active``) whenever the lease
    is ours."""
    ns = config.analytics.namespace
    analytics, likes = await open_buckets(nc, config.storage.replicas, reconnects)
    started_at = time.monotonic()
    daemon = Daemon(config, anyio.CancelScope(), nc, reconnects)
    voice = ChatVoice(config.chat)
    chat_out, chat_in = anyio.create_memory_object_stream(100)
    mouth = ChatMouth(kryten, config.cytube.channel, chat_out)

    def speak(r: Any) -> None:
        line = voice.line_for(r.to, r.body, clock.now())
        if line is not None:
            mouth.say(line)

    def snapshot() -> dict:
        a = daemon.activation
        return {"global": a.global_counters(ns) if a else {}, "in_flight": a.bus.in_flight if a else 0,
                "restarts": dict(a.supervisor.restarts) if a else {}, "mailboxes": a.mailbox_depths() if a else {},
                "kv_conflicts": analytics.conflicts + likes.conflicts,
                "kv_lost": analytics.lost_answers + likes.lost_answers}

    metrics = Metrics(snapshot)
    surroundings = Surroundings(nc, kryten, config, clock, fault, tick_seconds, analytics, likes,
                                [metrics.observe, speak])

    async def health() -> dict:
        # A NATS round trip within 2 s, not the connection flag: a hung server
        # leaves the connection "connected" for minutes.
        a = daemon.activation
        return {"service": "likes", **await check_nats(nc), "role": daemon.role,
                "served_by": keeper.me if daemon.role == "active" else keeper.served_by,
                "version": __version__, "uptime_seconds": round(time.monotonic() - started_at, 1),
                "namespace": ns, "channel": config.cytube.channel,
                "actor_restarts": dict(a.supervisor.restarts) if a else {}}

    def stats() -> dict:
        sn = snapshot()
        return {"role": daemon.role, "global": sn["global"], "in_flight": sn["in_flight"],
                "actor_restarts": sn["restarts"], "mailbox_depths": sn["mailboxes"],
                "kv_conflicts": sn["kv_conflicts"], "kv_lost_answers": sn["kv_lost"]}

    metrics_endpoint: str | None = None  # system.ping's; set once HTTP serves

    async def on_service_command(msg: Any) -> None:
        try:
            request = json.loads(msg.data)
        except ValueError:
            request = None
        if msg.reply:
            reply = await service_reply(request, health, stats, metrics_endpoint=metrics_endpoint,
                                        uptime_seconds=time.monotonic() - started_at)
            await send_json(nc, msg.reply, reply)

    async def on_chat(event: Any) -> None:
        a = daemon.activation
        if a is None:
            return  # the active daemon hears the same line
        line = ChatLine(getattr(event, "username", ""), getattr(event, "message", ""),
                        bool(getattr(event, "shadow", False)))
        request = chat_request(line, config.chat, ns)
        if request is not None and a.bus.admit():
            try:
                a.router.send(request)
            except MailboxFull as exc:  # not with admission as it is (activation.mailbox_capacity)
                log.error("%s", exc)
                await a.bus.reply(wire.error(request.reply, "unavailable", "the daemon is at capacity; retry"))

    if config.chat.enabled:
        kryten.on("chatmsg")(on_chat)

    async with anyio.create_task_group() as tg:
        daemon.cancel_scope = tg.cancel_scope

        async def activate() -> None:
            ended = daemon.serving_ended = anyio.Event()
            try:
                with anyio.CancelScope() as scope:
                    daemon.serving = scope
                    # The activation's own task group, inside the scope: stepping
                    # down cancels all of it (actors, feed, ticker) and nothing else.
                    async with anyio.create_task_group() as serving:
                        try:
                            daemon.activation = await serving.start(serve_active, surroundings)
                        except Exception as exc:  # it cannot start (e.g. a schema it does not know)
                            daemon.failure = exc
                            tg.cancel_scope.cancel()
                            return
                        log.info("kryten-likes serving namespace %s on %s.playlist.cmd.*", ns,
                                 config.nats.subject_prefix)
                        daemon.serving_started.set()
            finally:
                daemon.activation = None
                ended.set()

        async def on_active() -> None:
            tg.start_soon(activate)

        async def on_standby(reason: str) -> None:
            # Waited for: the keeper moves the fence for a new activation only
            # once nothing of this one runs.
            await daemon.step_down()

        keeper = LeaseKeeper([analytics, likes], likes, ns, config.ha.lease_seconds,
                             on_active=on_active, on_standby=on_standby)
        service_sub = await nc.subscribe("kryten.likes.command", cb=on_service_command)
        tg.start_soon(mouth.run, chat_in)
        tg.start_soon(warn_about_neighbours, nc, config)
        if config.http.port:
            try:
                app = build_app(metrics, health, dashboard=config.http.dashboard)
                port = await tg.start(serve_http, config.http.host, config.http.port, app)
                metrics_endpoint = endpoint_url(config.http.host, port, "/metrics")
            except OSError as exc:  # metrics are for operators; the counts must go on
                log.error("no metrics endpoint on %s:%d: %s", config.http.host, config.http.port, exc)
        tg.start_soon(keeper.run)
        daemon.keeper = keeper
        try:
            await _first_role(daemon, keeper)  # active and serving, or standby behind another
            task_status.started(daemon)
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await service_sub.unsubscribe()
                if daemon.activation is not None:
                    await daemon.activation.stop_taking_requests()
                if daemon.serving is not None:
                    daemon.serving.cancel()
                    with anyio.move_on_after(10):
                        await daemon.serving_ended.wait()
                await keeper.release()
    if daemon.failure is not None:
        raise daemon.failure


async def _first_role(daemon: Daemon, keeper: LeaseKeeper) -> None:
    async with anyio.create_task_group() as tg:
        async def until(event: anyio.Event) -> None:
            await event.wait()
            tg.cancel_scope.cancel()

        tg.start_soon(until, daemon.serving_started)
        tg.start_soon(until, keeper.standby_seen)

async def warn_about_neighbours(nc: Any, config: Config) -> None:
    """Ask the bus who is there (kryten-py's discovery) and warn by name when
    another service would answer our subjects too."""
    try:
        services = await services_on_bus(nc, timeout=2.0)
    except Exception as exc:  # advice only: the daemon serves either way
        log.info("could not ask the bus which services run: %s", exc)
        return
    warning = apply_owner_warning(services, config.queue.apply_enabled, config.nats.subject_prefix)
    if warning:
        log.warning("%s", warning)


def run_daemon(config: Config) -> int:
    """The ``kryten-likes run`` command: embedded nats-server when none is
    configured, the daemon until SIGTERM/SIGINT; returns the exit code."""
    from .embedded import EmbeddedNatsError, start_nats_server
    from .store import StoreError  # buckets unusable, or a document of a later schema (store/schema.py)
    from .supervisor import SupervisorGaveUp

    # One line per event; credentials are never put in a log line.
    logging.basicConfig(level=config.logging.level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = None
    url = None  # None: serve() uses every configured server
    if not config.nats.servers:
        data_dir = Path(config.storage.data_dir)
        try:
            server = start_nats_server(data_dir, port=4222)
        except EmbeddedNatsError as exc:
            log.error("cannot start the embedded nats-server: %s", exc)
            return 1
        url = server.url
        (data_dir / "nats.url").write_text(url + "\n")
        log.info("embedded nats-server at %s (store %s)", url, server.store_dir)

    async def main() -> int:
        async with anyio.create_task_group() as tg:
            async def stop_on_signal() -> None:
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for sig in signals:
                        log.info("%s: stopping", signal.Signals(sig).name)
                        tg.cancel_scope.cancel()
                        return

            tg.start_soon(stop_on_signal)
            await serve(config, nats_url=url)
        return 0

    try:
        return anyio.run(main, backend_options=loop_options(config))
    except SupervisorGaveUp as exc:
        log.error("giving up: %s", exc)
        return 1
    except BaseExceptionGroup as eg:  # the task group wraps what ended it
        known = eg.subgroup((SupervisorGaveUp, StartError, StoreError))
        while isinstance(known, BaseExceptionGroup):  # activations nest a task group of their own
            known = known.exceptions[0]
        log.error("daemon stopped: %s", known or eg, exc_info=not known)
        return 1
    except (StartError, StoreError) as exc:
        log.error("%s", exc)
        return 1
    except Exception as exc:
        log.error("daemon failed: %s", exc, exc_info=True)
        return 1
    finally:
        if server is not None:
            server.stop()
