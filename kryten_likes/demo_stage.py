"""The demo's show: the ``SCRIPT`` of steps, and the ``Stage`` that plays it
on the bus as the bridge (kryten-robot) and a handful of viewers would.

The stage publishes the bridge's ``queue`` and ``changeMedia`` events
(RawEvent JSON, on the subjects the daemon reads), sends likes as viewers
would (``{prefix}.playlist.cmd.like``), one of them twice, and says each
outcome as the daemon answers it; at the end ``perform`` waits until the
plays and queue events are counted and says the top lists. The ``SCRIPT``,
read from top to bottom, is the whole show.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import anyio
import nats.errors
from attrs import frozen

from .config import Config, event_channel_token

__all__ = ["SCRIPT", "DemoFailed", "Like", "Play", "Queue", "Stage", "Video", "perform"]

ASK_SECONDS = 5.0  # one request to the daemon
SETTLE_SECONDS = 15.0  # at most, for the daemon to show a change it was sent


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
