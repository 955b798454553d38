"""The daemon: one NATS connection, the actors under their supervisor, the
command subscriptions, the event feed and a ticker — all owned by one task
group, so stopping the daemon stops everything it started.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import signal
import time
from pathlib import Path
import uuid
from typing import Any

import anyio
import attrs
import nats
import nats.errors
from anyio.abc import ObjectSendStream

from . import __version__, wire
from .chat import ChatLine, ChatMouth, ChatVoice, chat_request
from .http_server import build_app, endpoint_url, serve_http
from .operations import Metrics, check_nats, service_reply
from .bridge_client import SharedConnectionKrytenClient
from .discovery import apply_owner_warning, services_on_bus
from .actors.apply import Applies, ApplyShell
from .actors.counter_writer import CounterWriter
from .actors.counter_writer_shell import CounterWriterShell
from .actors.dedupe_ledger import DedupeLedger
from .actors.gateway import COMMANDS, Gateway, Inbound
from .actors.playback import NowPlaying, Playback
from .actors.rate_buckets import RateBuckets, RatePolicy
from .actors.shell import ActorShell, Bus, FaultHook, Router
from .clock import Clock, SystemClock
from .config import Config, event_channel_token, nats_options
from .events import EventFeed, open_event_source
from .messages import EnqueuesInFlight, ReplyTo, Tick
from .store.documents import media_of_now_playing
from .store import open_buckets
from .store.reconnects import Reconnects
from .startup import (Snapshot, bound_to_stream, bridge_now_playing, first_unstored, give_back_free_memory,
                      load_snapshot, loop_options)
from .supervisor import ActorSpec, RestartPolicy, Supervisor

log = logging.getLogger(__name__)

ACTORS = ("gateway", "rate_buckets", "playback", "dedupe_ledger", "counter_writer", "apply")


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
    supervisor: Supervisor
    bus: Bus
    cancel_scope: anyio.CancelScope
    nc: Any = None
    reconnects: Reconnects | None = None

    def stop(self) -> None:
        self.cancel_scope.cancel()


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
        await _serve_on(nc, kryten, reconnects, config, clock, fault, config.limits.max_in_flight, tick_seconds,
                        task_status)
    finally:
        with anyio.CancelScope(shield=True):
            await kryten.disconnect()
            await nc.close()


async def _serve_on(nc: Any, kryten: Any, reconnects: Reconnects, config: Config, clock: Clock, fault: FaultHook | None, max_in_flight: int,
                    tick_seconds: float, task_status: Any) -> None:
    ns = config.analytics.namespace
    pfx = config.nats.subject_prefix
    js = nc.jetstream()
    analytics, likes = await open_buckets(nc, config.storage.replicas, reconnects)
    source = await open_event_source(js, event_channel_token(config.cytube.channel), ns,
                                     config.storage.replicas)

    sends: dict[str, ObjectSendStream] = {}
    inboxes = {}
    for name in ACTORS:
        sends[name], inboxes[name] = anyio.create_memory_object_stream(math.inf)
    router = Router(sends)
    bus = Bus(nc, max_in_flight)
    started_at = time.monotonic()
    first = bound_to_stream(await load_snapshot(analytics, likes, clock.now()), ns, source.identity)
    # The start-up state is long-lived: keep it out of every later collection
    # (100 000 items are many objects; scanning them costs pauses).
    gc.collect()
    gc.freeze()
    give_back_free_memory()
    def stored_up_to() -> int:
        writer = supervisor.incarnations.get("counter_writer")
        return first_unstored(writer.core.book(ns) if writer is not None else first.books.get(ns))

    feed = EventFeed(js, source, router, config.storage.replicas, stored_up_to)
    feed.rewind(first_unstored(first.books.get(ns)))
    first_users = {"playback", "dedupe_ledger", "counter_writer"}

    async def snapshot_for(name: str) -> Snapshot:
        # The first incarnations share the start-up scan; a restart reads KV again.
        if name in first_users:
            first_users.discard(name)
            return first
        return bound_to_stream(await load_snapshot(analytics, likes, clock.now()), ns, source.identity)

    def shell(name: str, core: Any, cls: type = ActorShell, **kw: Any) -> ActorShell:
        return cls(name, core, router, bus, clock, fault, **kw)

    async def start_gateway() -> ActorShell:
        return shell("gateway", Gateway(ns))

    async def start_rate_buckets() -> ActorShell:
        lim = config.limits
        return shell("rate_buckets", RateBuckets(RatePolicy(
            config.likes.rate_per_minute, config.likes.rate_burst,
            lim.global_likes_per_second, lim.global_likes_burst)))

    async def start_playback() -> ActorShell:
        book = (await snapshot_for("playback")).books.get(ns)
        stored = media_of_now_playing(book.now_playing.value) if book and book.now_playing else None
        current = None
        if stored is not None:
            current = NowPlaying(*stored)
        else:
            media = await bridge_now_playing(nc, config.cytube.channel)
            if media is not None:
                current = NowPlaying(media, clock.now())
        last_seq = int(book.global_value().get("last_event_seq", 0)) if book else 0
        return shell("playback", Playback(ns, current, last_seq, epoch=feed.epoch))

    async def start_ledger() -> ActorShell:
        snap = await snapshot_for("dedupe_ledger")
        return shell("dedupe_ledger", DedupeLedger(config.likes.dedupe_window_seconds,
                                                   config.likes.dedupe_enabled, snap.claims))

    async def start_writer() -> ActorShell:
        first_life = "counter_writer" in first_users
        snap = await snapshot_for("counter_writer")
        # Only at daemon start is what a previous life left half-done truly dead.
        # A restarted writer learns from the apply actor what is in flight.
        core = CounterWriter(snap.books, ns, group_prefix=f"{uuid.uuid4().hex[:12]}-", recover=first_life,
                             retry_window=config.likes.retry_window_seconds, epoch=feed.epoch,
                             max_remembered_requests=config.likes.max_remembered_requests,
                             await_applies=not first_life)
        return shell("counter_writer", core, CounterWriterShell,
                     buckets={"analytics": analytics, "likes": likes})

    async def start_apply() -> ActorShell:
        return shell("apply", Applies(id_prefix=f"{uuid.uuid4().hex[:12]}-"), ApplyShell,
                     kryten=kryten, channel=config.cytube.channel, timeout=config.cytube.bridge_timeout_seconds)

    specs = [ActorSpec("apply", start_apply), ActorSpec("gateway", start_gateway), ActorSpec("rate_buckets", start_rate_buckets),
             ActorSpec("playback", start_playback), ActorSpec("dedupe_ledger", start_ledger),
             ActorSpec("counter_writer", start_writer)]
    s = config.supervisor
    policy = RestartPolicy(s.max_restarts, s.period_seconds, s.backoff_initial_seconds, s.backoff_max_seconds)

    def after_crash(dead: ActorShell) -> None:
        # Events held by a dead playback or counter writer are read again from
        # the stream, from the first one not stored (see EventFeed).
        if dead.name == "apply":
            # Its enqueues died with it: nothing of it is in flight any more.
            router.send("counter_writer", EnqueuesInFlight(()))
            return
        if dead.name not in ("playback", "counter_writer"):
            return
        # (The dead writer is still the incarnation on record: its book is what is stored.)
        epoch = feed.rewind(stored_up_to())
        rewind = getattr(dead, "rewind", None)
        if rewind is not None:
            router.send("playback", attrs.evolve(rewind, epoch=epoch))

    supervisor = Supervisor(specs, inboxes, router, bus, clock, policy, after_crash)

    async def on_request(msg: Any) -> None:
        command = msg.subject.rsplit(".", 1)[-1]
        if not bus.admit():
            cid = _correlation_id(msg.data)
            if msg.reply:
                await bus.send(msg.reply, wire.error(ReplyTo(msg.reply, cid, command), "unavailable",
                                                     "the daemon is at capacity; retry").body)
            return
        router.send("gateway", Inbound(command, msg.data, msg.reply or None, time.monotonic()))

    def snapshot() -> dict:
        writer = supervisor.incarnations.get("counter_writer")
        g = writer.core.book(ns).global_value() if writer is not None else {}
        return {"global": g, "in_flight": bus.in_flight, "restarts": dict(supervisor.restarts),
                "mailboxes": {n: inboxes[n].statistics().current_buffer_used for n in ACTORS},
                "kv_conflicts": analytics.conflicts + likes.conflicts,
                "kv_lost": analytics.lost_answers + likes.lost_answers}

    async def health() -> dict:
        # A NATS round trip within 2 s, not the connection flag: a hung server
        # leaves the connection "connected" for minutes.
        return {"service": "likes", **await check_nats(nc),
                "version": __version__, "uptime_seconds": round(time.monotonic() - started_at, 1),
                "namespace": ns, "channel": config.cytube.channel, "actor_restarts": dict(supervisor.restarts)}

    def stats() -> dict:
        s = snapshot()
        return {"global": s["global"], "in_flight": s["in_flight"], "actor_restarts": s["restarts"],
                "mailbox_depths": s["mailboxes"], "kv_conflicts": s["kv_conflicts"], "kv_lost_answers": s["kv_lost"]}

    metrics = Metrics(snapshot)
    bus.watchers.append(metrics.observe)
    metrics_endpoint: str | None = None  # system.ping's; set once HTTP serves

    async def on_service_command(msg: Any) -> None:
        try:
            request = json.loads(msg.data)
        except ValueError:
            request = None
        if msg.reply:
            await bus.send(msg.reply, await service_reply(request, health, stats, metrics_endpoint=metrics_endpoint,
                                                          uptime_seconds=time.monotonic() - started_at))

    voice = ChatVoice(config.chat)
    chat_out, chat_in = anyio.create_memory_object_stream(100)
    mouth = ChatMouth(kryten, config.cytube.channel, chat_out)

    def speak(r: Any) -> None:
        line = voice.line_for(r.to, r.body, clock.now())
        if line is not None:
            mouth.say(line)

    bus.watchers.append(speak)

    async def on_chat(event: Any) -> None:
        line = ChatLine(getattr(event, "username", ""), getattr(event, "message", ""),
                        bool(getattr(event, "shadow", False)))
        forward = chat_request(line, config.chat, ns)
        if forward is not None and bus.admit():
            router.send(forward.to, forward.message)

    if config.chat.enabled:
        kryten.on("chatmsg")(on_chat)

    async def ticker() -> None:
        while True:
            await anyio.sleep(tick_seconds)  # a periodic timer, not synchronisation
            for name in ("rate_buckets", "dedupe_ledger", "counter_writer"):
                router.send(name, Tick())

    async with anyio.create_task_group() as tg:
        await tg.start(supervisor.run)
        # Where kryten-playlist owns applies ([queue] apply_enabled = false) we
        # do not answer queue_apply at all: NATS would hand each request to both.
        served = [c for c in COMMANDS if c != "queue_apply" or config.queue.apply_enabled]
        subs = [await nc.subscribe(f"{pfx}.playlist.cmd.{c}", cb=on_request) for c in served]
        subs.append(await nc.subscribe("kryten.likes.command", cb=on_service_command))
        await nc.flush()  # the server knows our subscriptions before we say we serve
        tg.start_soon(warn_about_neighbours, nc, config)
        tg.start_soon(feed.run)
        tg.start_soon(ticker)
        tg.start_soon(mouth.run, chat_in)
        if config.http.port:
            try:
                app = build_app(metrics, health, dashboard=config.http.dashboard)
                port = await tg.start(serve_http, config.http.host, config.http.port, app)
                metrics_endpoint = endpoint_url(config.http.host, port, "/metrics")
            except OSError as exc:  # metrics are for operators; the counts must go on
                log.error("no metrics endpoint on %s:%d: %s", config.http.host, config.http.port, exc)
        log.info("kryten-likes serving namespace %s on %s.playlist.cmd.*", ns, pfx)
        task_status.started(Daemon(config, supervisor, bus, tg.cancel_scope, nc, reconnects))
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                for sub in subs:
                    await sub.unsubscribe()


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


def _correlation_id(data: bytes) -> str | None:
    try:
        cid = json.loads(data).get("correlation_id")
    except Exception:
        return None
    return cid if isinstance(cid, str) and len(cid) <= 200 else None


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
        log.error("daemon stopped: %s", known.exceptions[0] if known else eg, exc_info=not known)
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
