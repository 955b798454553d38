"""`kryten-likes demo`: the product shown to a person who has no CyTube.

Theory of operation: the demo plays the bridge (kryten-robot) and a handful
of viewers. It publishes the bridge's ``queue`` and ``changeMedia`` events
(RawEvent JSON, on the subjects the daemon reads), sends likes as viewers
would (``{prefix}.playlist.cmd.like``), one of them twice, and prints each
outcome as the daemon answers it; at the end it waits until the plays and
queue events are counted and prints the top lists. A ``SCRIPT`` of steps,
read from top to bottom, is the whole show.

Which daemon: the one the client commands would talk to (same URL rule),
when it counts into the demo's namespace (``demo`` unless ``--namespace``
says otherwise). A daemon counts the plays of its channel into its own
namespace, so a demo against a daemon of another namespace would put fake
plays into real counts: then, as when no daemon answers at all, the demo
starts a nats-server in a temp dir and a daemon in-process, and removes
both when done.

Resource handling: everything the demo starts is stopped when it ends, by
success, failure, Ctrl-C or its own deadline (``--seconds`` of pacing plus a
fixed allowance for start-up and counting).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import attrs
import nats
import nats.errors
from attrs import frozen

from .contract import NAMESPACE_PATTERN
from .config import Config, NatsSection, event_channel_token, nats_options

__all__ = ["DEMO_NAMESPACE", "SCRIPT", "add_subparser", "run"]

DEMO_NAMESPACE = "demo"
DEFAULT_SECONDS = 15.0
LOOK_SECONDS = 2.0  # to connect and hear a daemon answer
HEALTH_SECONDS = 0.5  # every daemon on the bus answers kryten.likes.command: listen this long
ASK_SECONDS = 5.0  # one request to the daemon
SETTLE_SECONDS = 15.0  # at most, for the daemon to show a change it was sent
ALLOWANCE_SECONDS = 45.0  # start-up, counting and shut-down, beyond --seconds of pacing
SERVICE_SUBJECT = "kryten.likes.command"  # the Kryten service-command convention (README, Operating)


@frozen
class Video:
    video_id: str
    title: str
    seconds: int
    media_type: str = "yt"

    def media(self) -> dict[str, Any]:
        return {"id": self.video_id, "title": self.title, "seconds": self.seconds, "type": self.media_type}

    def __str__(self) -> str:
        return f"{self.title} ({self.video_id})"


BUNNY = Video("aqz-KE-bpKQ", "Big Buck Bunny", 635)
SINTEL = Video("eRsGyueVLvQ", "Sintel", 888)
TEARS = Video("R6MlUcmOul8", "Tears of Steel", 734)


@frozen
class Queue:
    """A curator adds a video to the channel's playlist (the bridge's queue event)."""

    curator: str
    video: Video


@frozen
class Play:
    """The channel starts a video (the bridge's changeMedia event)."""

    video: Video


@frozen
class Like:
    """A viewer likes what is playing; ``expect`` is the outcome the script shows."""

    viewer: str
    expect: str = "ok"


SCRIPT = (
    Queue("ada", BUNNY), Queue("grace", SINTEL), Queue("ada", TEARS),
    Play(BUNNY), Like("alice"), Like("bob"), Like("carol"), Like("alice", expect="duplicate"),
    Play(SINTEL), Like("dave"), Like("erin"),
    Play(BUNNY), Like("dave"),
    Play(TEARS), Like("bob"),
)


class DemoFailed(Exception):
    """The daemon stopped answering, or did not show what it was sent in time."""


# --- finding a daemon


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


# --- playing the bridge and the viewers


class Stage:
    """The bus as the demo sees it: events out as the bridge, requests as viewers."""

    def __init__(self, nc: Any, config: Config, namespace: str, say: Any) -> None:
        from .events import event_subjects  # the daemon's own rule for the bridge's subjects

        self.nc = nc
        self.js = nc.jetstream()
        self.config = config
        self.namespace = namespace
        self.say = say
        self.changemedia, self.queue = event_subjects(event_channel_token(config.cytube.channel))
        self.queue_uid = 0

    async def ask(self, command: str, body: Mapping[str, Any]) -> dict[str, Any]:
        subject = f"{self.config.nats.subject_prefix}.playlist.cmd.{command}"
        request = {**body, "namespace": self.namespace, "correlation_id": f"demo-{uuid.uuid4().hex[:12]}"}
        try:
            msg = await self.nc.request(subject, json.dumps(request).encode(), timeout=ASK_SECONDS)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError) as exc:
            raise DemoFailed(f"kryten-likes stopped answering on {subject} ({type(exc).__name__})") from None
        try:
            reply = json.loads(msg.data)
        except ValueError:
            reply = None
        return reply if isinstance(reply, dict) else {}

    async def bridge_event(self, subject: str, name: str, payload: dict[str, Any]) -> None:
        # As kryten-robot publishes it: a RawEvent, captured by the daemon's event stream.
        event = {"event_name": name, "payload": payload, "channel": self.config.cytube.channel,
                 "domain": self.config.cytube.domain, "timestamp": datetime.now(timezone.utc).isoformat(),
                 "correlation_id": str(uuid.uuid4())}
        try:
            await self.js.publish(subject, json.dumps(event).encode(), timeout=ASK_SECONDS)
        except nats.errors.Error as exc:  # no stream captures it, or no answer from JetStream
            raise DemoFailed(f"cannot publish the bridge's {name} on {subject} ({type(exc).__name__})") from None

    async def queue_video(self, step: Queue) -> None:
        self.queue_uid += 1
        await self.bridge_event(self.queue, "queue", {
            "item": {"media": step.video.media(), "uid": self.queue_uid, "temp": False, "queueby": step.curator},
            "after": self.queue_uid - 1})
        self.say(f"queued: {step.video} by {step.curator}")

    async def play(self, step: Play) -> None:
        await self.bridge_event(self.changemedia, "changeMedia",
                                {**step.video.media(), "currentTime": 0, "paused": False})
        await self.until(lambda r: r.get("video_id") == step.video.video_id, "now_playing", {},
                         f"now playing {step.video}")
        self.say(f"now playing: {step.video}")

    async def like(self, viewer: str, playing: Video) -> str:
        reply = await self.ask("like", {"username": viewer, "video_id": playing.video_id})
        outcome = reply.get("status") if reply.get("status") in ("ok", "duplicate") else reply.get("error")
        likes = _count(reply.get("like_count"), "like")
        if outcome == "ok":
            self.say(f"like from {viewer}: counted, {playing.title} has {likes}")
        elif outcome == "duplicate":
            self.say(f"like from {viewer}: duplicate refused, {viewer} already liked {playing.title} "
                     f"(still {likes})")
        else:
            detail = f" ({reply['detail']})" if reply.get("detail") else ""
            self.say(f"like from {viewer}: refused: {outcome}{detail}")
        return str(outcome)

    async def until(self, done: Any, command: str, body: Mapping[str, Any], what: str) -> dict[str, Any]:
        """Ask until the reply shows ``done`` (each ask waits for its reply), or fail at the deadline."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            reply = await self.ask(command, body)
            if done(reply):
                return reply
            if time.monotonic() > deadline:
                raise DemoFailed(f"kryten-likes did not show {what} within {SETTLE_SECONDS:g} s")


async def perform(stage: Stage, seconds: float, viewer_tag: str) -> int:
    """Run the SCRIPT on the stage; 0 when every outcome was the expected one."""
    say = stage.say
    was_played, was_queued = _counters(await stage.ask("stats", {}))
    pause = seconds / (len(SCRIPT) + 2)
    surprises = []
    playing: Video | None = None
    for step in SCRIPT:
        if isinstance(step, Queue):
            await stage.queue_video(step)
        elif isinstance(step, Play):
            await stage.play(step)
            playing = step.video
        else:
            assert playing is not None, "the SCRIPT likes before anything plays"
            outcome = await stage.like(step.viewer + viewer_tag, playing)
            if outcome != step.expect:
                surprises.append(f"{step.viewer}'s like was {outcome}, not {step.expect}")
        await anyio.sleep(pause)  # pacing, for a person to read along; not synchronisation

    plays = sum(isinstance(step, Play) for step in SCRIPT)
    queued = sum(isinstance(step, Queue) for step in SCRIPT)

    def all_counted(reply: Mapping[str, Any]) -> bool:
        now_played, now_queued = _counters(reply)
        return now_played >= was_played + plays and now_queued >= was_queued + queued

    try:
        after = await stage.until(all_counted, "stats", {}, f"{plays} plays and {queued} queued items counted")
    except DemoFailed as exc:
        surprises.append(str(exc))
        after = await stage.ask("stats", {})
    now_played, now_queued = _counters(after)
    say(f"plays counted: {now_played - was_played} (items_played {was_played} -> {now_played})")
    say(f"queued items counted: {now_queued - was_queued} (items_queued {was_queued} -> {now_queued})")
    await anyio.sleep(pause)
    for ranking, noun in (("liked", "like"), ("played", "play")):
        items = (await stage.ask(f"top_{ranking}", {"limit": 5})).get("items") or []
        say(f"top {ranking}:" + ("" if items else " nothing yet"))
        for rank, item in enumerate(items, start=1):
            title = item.get("title") or "-"
            say(f"  {rank}. {title} ({item.get('video_id')}): {_count(item.get('count'), noun)}")
    for surprise in surprises:
        say(f"demo: unexpected: {surprise}")
    return 1 if surprises else 0


def _counters(stats: Mapping[str, Any]) -> tuple[int, int]:
    """``items_played`` and ``items_queued`` of a stats reply's global document."""
    counters = stats.get("global") or {}
    return int(counters.get("items_played") or 0), int(counters.get("items_queued") or 0)


def _count(n: object, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# --- running it, against a daemon or on its own


async def demo(url: str, config: Config, namespace: str, seconds: float, store: Path | None,
               say: Any = print) -> int:
    started = time.monotonic()
    found = await look_for_daemon(url, config, namespace)
    try:
        with anyio.fail_after(seconds + ALLOWANCE_SECONDS):
            if isinstance(found, Running):
                say(f"demo: against the kryten-likes at {url}: channel {config.cytube.channel!r}, "
                    f"namespace {namespace!r}")
                # A daemon remembers who liked what for a day (the dedupe window):
                # viewers new to it let a second demo count again.
                code = await _perform_at(url, config, namespace, seconds, f"-{uuid.uuid4().hex[:4]}", say)
                say(f"demo: done in {time.monotonic() - started:.1f} s")
                return code
            say(f"demo: {found.reason}.")
            async with standalone(config, namespace, store, say) as (local_url, local_config):
                code = await _perform_at(local_url, local_config, namespace, seconds, "", say)
            kept = f"; its store is kept in {store}" if store is not None else "; its temp dir is removed"
            say(f"demo: done in {time.monotonic() - started:.1f} s; the nats-server and kryten-likes it "
                f"started are stopped{kept}")
            return code
    except TimeoutError:
        say(f"demo: not done within {seconds + ALLOWANCE_SECONDS:g} s; stopped")
        return 1
    except DemoFailed as exc:
        say(f"demo: {exc}")
        return 1


async def _perform_at(url: str, config: Config, namespace: str, seconds: float, viewer_tag: str, say: Any) -> int:
    nc = await nats.connect([u.strip() for u in url.split(",")], name="kryten-likes demo",
                            **nats_options(config))
    try:
        viewers = len({step.viewer for step in SCRIPT if isinstance(step, Like)})
        say(f"demo: playing the bridge of channel {config.cytube.channel!r} and {viewers} viewers")
        return await perform(Stage(nc, config, namespace, say), seconds, viewer_tag)
    finally:
        with anyio.CancelScope(shield=True):  # closed even when the deadline or Ctrl-C ended the show
            await nc.close()


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
            # Our own server: no credentials or TLS, HTTP and chat off, one replica.
            local = attrs.evolve(
                config, nats=NatsSection(servers=(server.url,), subject_prefix=config.nats.subject_prefix),
                analytics=attrs.evolve(config.analytics, namespace=namespace),
                storage=attrs.evolve(config.storage, data_dir=str(where), replicas=1),
                http=attrs.evolve(config.http, port=0), chat=attrs.evolve(config.chat, enabled=False))
            async with anyio.create_task_group() as tg:
                daemon = await tg.start(partial(serve, local, nats_url=server.url))
                try:
                    with anyio.fail_after(30):  # its own server: it takes the lease at once
                        await daemon.serving_started.wait()
                    yield server.url, local
                finally:
                    daemon.stop()
        finally:
            with anyio.CancelScope(shield=True):  # stopped even when the deadline or Ctrl-C ended the show
                await anyio.to_thread.run_sync(server.stop)


# --- the command line


def add_subparser(subparsers: Any, where: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "demo", parents=[where], help="show kryten-likes at work, with no CyTube (about 15 s)",
        description="Play the bridge and a few viewers: queue and play videos, like them (one viewer twice), and "
                    "print what kryten-likes counted. Uses the daemon the client commands would use when it "
                    "counts into the demo's namespace; else starts a nats-server and a daemon of its own in a "
                    "temp dir, and removes them when done.",
        epilog="example: kryten-likes demo --seconds 5")
    parser.add_argument("--seconds", type=_seconds, default=DEFAULT_SECONDS, metavar="N",
                        help=f"how long the show takes, paced for reading (default: {DEFAULT_SECONDS:g}; 0: "
                             "no pauses)")
    parser.add_argument("--namespace", type=_namespace, default=DEMO_NAMESPACE, metavar="NS",
                        help=f"count into this namespace (default: {DEMO_NAMESPACE}); a running daemon is "
                             "used only when it counts into the same one")
    parser.add_argument("--store", type=Path, metavar="DIR",
                        help="when the demo runs its own server: keep its store in DIR instead of a temp dir")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, config: Config) -> int:
    from .cli import resolve_client_url  # imported here: cli imports this module to build its parser

    url = resolve_client_url(config, args.nats_url)
    # An in-process daemon's log would interleave with the show; its errors still
    # show. The level is the handler's: kryten-py sets its own logger's level.
    errors_only = logging.StreamHandler()
    errors_only.setLevel(logging.ERROR)
    errors_only.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.ERROR, handlers=[errors_only])
    say = partial(print, flush=True)  # a line at a time, as it happens
    try:
        return anyio.run(demo, url, config, args.namespace, args.seconds, args.store, say)
    except KeyboardInterrupt:
        return 130


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= seconds <= 600:
        raise argparse.ArgumentTypeError(f"must be from 0 to 600: {text!r}")
    return seconds


def _namespace(text: str) -> str:
    if NAMESPACE_PATTERN.fullmatch(text) is None:
        raise argparse.ArgumentTypeError(f"must match {NAMESPACE_PATTERN.pattern}: {text!r}")
    return text
