"""Which daemon the demo plays to: one already running, or one of its own.

A running daemon is used when it counts into the demo's namespace: a daemon
counts the plays of its channel into its own namespace, so a demo against a
daemon of another namespace would put fake plays into real counts. Else,
as when no daemon answers at all, ``standalone`` starts a nats-server in a
temp dir and a daemon in-process, and stops both on the way out.
"""

from __future__ import annotations

import json
import socket
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import attrs
import nats
import nats.errors
from attrs import frozen

from .config import Config, NatsSection, event_channel_token, nats_options

__all__ = ["NotHere", "Running", "look_for_daemon", "standalone"]

LOOK_SECONDS = 2.0  # to connect and hear a daemon answer
HEALTH_SECONDS = 0.5  # every daemon on the bus answers kryten.likes.command: listen this long
SERVICE_SUBJECT = "kryten.likes.command"  # the Kryten service-command convention (README, Operating)


@frozen
class Running:
    """A daemon that counts into the demo's namespace answers at ``url``."""

    url: str


@frozen
class NotHere:
    """No daemon the demo may use; ``reason`` says why, for the person."""

    reason: str


async def look_for_daemon(url: str, config: Config, namespace: str) -> Running | NotHere:
    errors: list[Exception] = []

    async def remember(exc: Exception) -> None:
        errors.append(exc)

    try:
        nc = await nats.connect([u.strip() for u in url.split(",")], name="kryten-likes demo",
                                connect_timeout=LOOK_SECONDS, allow_reconnect=False, max_reconnect_attempts=1,
                                reconnect_time_wait=0, error_cb=remember, **nats_options(config))
    except Exception as exc:  # nats-py raises several kinds for a server that is not there
        cause = errors[-1] if errors else exc
        return NotHere(f"no server answers at {url} ({type(cause).__name__})")
    try:
        pfx = config.nats.subject_prefix
        try:
            await nc.request(f"{pfx}.playlist.cmd.now_playing", b"{}", timeout=LOOK_SECONDS)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            return NotHere(f"no kryten-likes answers at {url} on {pfx}.playlist.cmd.*")
        channel = config.cytube.channel
        # Every daemon reading this channel's events counts the demo's plays:
        # each must count into the demo's namespace.
        readers = {h.get("namespace") for h in await _healths(nc)
                   if isinstance(h.get("channel"), str) and event_channel_token(h["channel"])
                   == event_channel_token(channel)}
        if not readers:
            return NotHere(f"a kryten-likes answers at {url}, but none said it reads channel {channel!r}")
        others = sorted(str(ns) for ns in readers - {namespace})
        if others:
            return NotHere(f"the kryten-likes at {url} counts channel {channel!r} into namespace "
                           f"{' and '.join(repr(ns) for ns in others)}, and the demo's plays would count there too "
                           f"(to demo against it: --namespace {others[0]})")
        return Running(url)
    finally:
        await nc.close()


async def _healths(nc: Any) -> list[dict]:
    """Every daemon's system.health answer heard within HEALTH_SECONDS."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.publish(SERVICE_SUBJECT, json.dumps({"service": "likes", "command": "system.health"}).encode(),
                     reply=inbox)
    found = []
    deadline = time.monotonic() + HEALTH_SECONDS
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                msg = await sub.next_msg(timeout=remaining)
            except nats.errors.TimeoutError:
                break
            try:
                data = json.loads(msg.data).get("data")
            except (ValueError, AttributeError):
                continue
            if isinstance(data, dict):
                found.append(data)
    finally:
        await sub.unsubscribe()
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@asynccontextmanager
async def standalone(config: Config, namespace: str, store: Path | None,
                     say: Any) -> AsyncIterator[tuple[str, Config]]:
    """A nats-server in a temp dir (or ``store``) and a daemon in-process, stopped on the way out."""
    # Imported here: the clients that build the parser need none of the daemon.
    from .daemon import serve
    from .embedded import start_nats_server

    with tempfile.TemporaryDirectory(prefix="kryten-likes-demo-") as temp:
        where = store if store is not None else Path(temp)
        say(f"demo: starting a nats-server and a kryten-likes of its own in {where}")
        # Off a worker thread: it waits for the server's "ready" line.
        server = await anyio.to_thread.run_sync(partial(start_nats_server, where / "jetstream", port=None))
        try:
            # Our own server: no credentials or TLS, chat off, one replica; HTTP
            # on a free loopback port, so the show can be watched on the dashboard.
            http_port = _free_port()
            local = attrs.evolve(
                config, nats=NatsSection(servers=(server.url,), subject_prefix=config.nats.subject_prefix),
                analytics=attrs.evolve(config.analytics, namespace=namespace),
                storage=attrs.evolve(config.storage, data_dir=str(where), replicas=1),
                http=attrs.evolve(config.http, host="127.0.0.1", port=http_port, dashboard=True),
                chat=attrs.evolve(config.chat, enabled=False))
            async with anyio.create_task_group() as tg:
                daemon = await tg.start(partial(serve, local, nats_url=server.url))
                try:
                    with anyio.fail_after(30):  # its own server: it takes the lease at once
                        await daemon.serving_started.wait()
                    say(f"demo: watch it live on the dashboard: http://127.0.0.1:{http_port}/")
                    yield server.url, local
                finally:
                    with anyio.CancelScope(shield=True):
                        await daemon.drain()  # (its likes in their documents: the store is kept)
                    daemon.stop()
        finally:
            with anyio.CancelScope(shield=True):  # stopped even when the deadline or Ctrl-C ended the show
                await anyio.to_thread.run_sync(server.stop)
