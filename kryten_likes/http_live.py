"""The live stream (``/api/v1/stream``): Server-Sent Events of likes, unlikes
and plays, and ``now_playing`` when the item changes.

Where the events come from: the bus. The daemon publishes each counted
like, unlike and play on ``{pfx}.likes.events.{namespace}.{kind}`` once it
is durable (``event_out``); ``LiveFeed.follow`` subscribes to those subjects
like any other service, so a page sees what other services see, and the
like path does not know the page exists.

Why a slow page cannot slow anything: each listener has its own bounded
queue; an event is framed once and offered to every queue without waiting
(``send_nowait``). A listener whose queue is full is dropped (its stream
ends; the browser's EventSource connects again by itself and goes on from
the next event). At most ``max_listeners`` at once; the next is refused
(the route answers 503).

``now_playing``: every new item is a counted play (``playback``), so a
``play`` event is the moment to ask what plays now; the answer is sent when
it differs from the last one sent.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .compact_json import dump_bytes

log = logging.getLogger(__name__)

KINDS = ("like", "unlike", "play")
# A listener this far behind is not reading: a page takes a few events a second.
QUEUE_FRAMES = 256


def frame(event: str, data: bytes) -> bytes:
    """One SSE message. ``data`` is one line of compact JSON (no raw newline)."""
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


class Listener:
    def __init__(self, send: MemoryObjectSendStream, receive: MemoryObjectReceiveStream) -> None:
        self.send = send
        self.frames = receive


class LiveFeed:
    def __init__(self, max_listeners: int, now_playing: Callable[[], Awaitable[dict | None]] | None = None,
                 queue_frames: int = QUEUE_FRAMES) -> None:
        self.max_listeners = max_listeners
        self.queue_frames = queue_frames
        self.listeners: set[Listener] = set()
        self.dropped = 0  # listeners dropped for not keeping up
        self._now_playing = now_playing
        self._last_now_playing: bytes | None = None
        self._plays: MemoryObjectSendStream | None = None

    # --- listeners ---------------------------------------------------------------

    def join(self) -> Listener | None:
        """A new listener, or None when ``max_listeners`` are listening."""
        if len(self.listeners) >= self.max_listeners:
            return None
        listener = Listener(*anyio.create_memory_object_stream[bytes](self.queue_frames))
        self.listeners.add(listener)
        return listener

    def leave(self, listener: Listener) -> None:
        self.listeners.discard(listener)
        listener.send.close()
        listener.frames.close()

    def offer(self, data: bytes) -> None:
        """Hand one framed event to every listener; drop those that are full."""
        for listener in list(self.listeners):
            try:
                listener.send.send_nowait(data)
            except anyio.WouldBlock:
                self.dropped += 1
                log.info("a live stream listener fell %d events behind; dropped", self.queue_frames)
                self.leave(listener)  # its route sees the stream end
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                self.leave(listener)

    # --- what goes out -------------------------------------------------------------

    def event_heard(self, kind: str, data: bytes) -> None:
        """A bus event (its JSON as published)."""
        if kind not in KINDS:
            return
        if self.listeners:
            self.offer(frame(kind, _one_line(data)))
        if kind == "play" and self._plays is not None:
            try:
                self._plays.send_nowait(None)  # many plays in a burst: one question
            except anyio.WouldBlock:
                pass

    async def follow(self, nc: Any, prefix: str, namespace_token: str,
                     task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Subscribe to the namespace's events until cancelled."""

        async def on_event(msg: Any) -> None:
            self.event_heard(msg.subject.rsplit(".", 1)[-1], msg.data)

        sub = await nc.subscribe(f"{prefix}.likes.events.{namespace_token}.*", cb=on_event)
        send, receive = anyio.create_memory_object_stream[None](1)
        self._plays = send
        try:
            task_status.started()
            async with receive:
                async for _ in receive:
                    await self._tell_now_playing()
        finally:
            self._plays = None
            with anyio.CancelScope(shield=True):
                try:
                    await sub.unsubscribe()
                except Exception:  # the connection is gone: so is the subscription
                    pass

    async def _tell_now_playing(self) -> None:
        if self._now_playing is None:
            return
        try:
            body = await self._now_playing()
        except Exception as exc:  # the page misses one change; the next play tells it
            log.warning("now playing not known for the live stream: %r", exc)
            return
        if body is None:
            return
        data = dump_bytes(body)
        if data != self._last_now_playing:
            self._last_now_playing = data
            self.offer(frame("now_playing", data))


def _one_line(data: bytes) -> bytes:
    """Our events are compact JSON already; anything else is made so (an SSE
    ``data:`` line must not hold a raw newline)."""
    if b"\n" not in data and b"\r" not in data:
        return data
    try:
        return dump_bytes(json.loads(data))
    except ValueError:
        return b"null"
