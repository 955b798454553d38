"""The live stream (``/api/v1/stream``): Server-Sent Events of likes, unlikes
and plays, and ``now_playing`` when the item changes.

Where the events come from: the event publisher (``event_out.OutStream``)
hands each event of the namespace here once the stream has acknowledged it,
as the very bytes it published on ``{pfx}.likes.events.{namespace}.{kind}``.
So the page sees what other services see, without the daemon reading its own
events back off the bus (a subscription would cost it a parse per event).

Why 200 open pages cost the like path almost nothing:

- an event is framed once and appended to one shared ring (``RING_FRAMES``
  long): O(1) per event, whatever the number of listeners;
- each listener keeps its place in the ring and writes what is new to its
  socket in one write, at most every ``PACE_SECONDS``: 200 listeners make
  at most 2 000 writes a second at any like rate;
- the listeners at one place share one joined chunk.

A listener that falls a whole ring behind (its client does not read, or
reads slower than the channel likes) is dropped: its stream ends and the
browser's EventSource connects again by itself. A write that does not drain
within ``WRITE_SECONDS`` drops it too. Memory is the ring plus each socket's
bounded buffer. At most ``max_listeners`` at once; the next is refused (the
route answers 503).

``now_playing``: every new item is a counted play (``playback``), so a
``play`` event is the moment to ask what plays now; the answer is sent when
it differs from the last one sent.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from .compact_json import dump_bytes

log = logging.getLogger(__name__)

KINDS = ("like", "unlike", "play")
RING_FRAMES = 4096  # about 1.5 MB of events: a page more than this behind is not reading
PACE_SECONDS = 0.1  # a listener writes at most this often (the page is "live" to a person)
WRITE_SECONDS = 10.0


def frame(event: str, data: bytes) -> bytes:
    """One SSE message. ``data`` is one line of compact JSON (no raw newline)."""
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


class Behind(Exception):
    """The listener's place has left the ring: it missed events; drop it."""


class Listener:
    __slots__ = ("at",)

    def __init__(self, at: int) -> None:
        self.at = at  # the sequence number of the next frame it has not written


class LiveFeed:
    def __init__(self, max_listeners: int, now_playing: Callable[[], Awaitable[dict | None]] | None = None,
                 ring_frames: int = RING_FRAMES) -> None:
        self.max_listeners = max_listeners
        self.listeners: set[Listener] = set()
        self.dropped = 0  # listeners dropped for falling behind
        self.ring: deque[bytes] = deque(maxlen=ring_frames)
        self.next_seq = 0  # sequence number of the next frame offered
        self._more: anyio.Event | None = None  # made by the first listener waiting, set by the next offer
        self._shared: tuple[int, int, bytes] = (0, 0, b"")  # (from, to, chunk): one join per place
        self._now_playing = now_playing
        self._last_now_playing: bytes | None = None
        self._plays: Any = None  # while ``run``s: a play was heard

    @property
    def first_seq(self) -> int:
        return self.next_seq - len(self.ring)

    # --- listeners ---------------------------------------------------------------

    def join(self) -> Listener | None:
        """A new listener (from the next event on), or None when full."""
        if len(self.listeners) >= self.max_listeners:
            return None
        listener = Listener(self.next_seq)
        self.listeners.add(listener)
        return listener

    def leave(self, listener: Listener) -> None:
        self.listeners.discard(listener)

    def take(self, listener: Listener) -> bytes:
        """What the listener has not written yet, as one chunk (b"" if nothing)."""
        start, end = listener.at, self.next_seq
        if start < self.first_seq:
            self.dropped += 1
            raise Behind(f"{self.first_seq - start} events behind")
        if start == end:
            return b""
        shared_from, shared_to, chunk = self._shared
        if (shared_from, shared_to) != (start, end):
            skip = start - self.first_seq
            chunk = b"".join(self.ring[i] for i in range(skip, len(self.ring)))
            self._shared = (start, end, chunk)
        listener.at = end
        return chunk

    async def more(self, listener: Listener) -> None:
        """Return once there is something the listener has not written."""
        while listener.at == self.next_seq:
            if self._more is None:
                self._more = anyio.Event()
            await self._more.wait()

    # --- what goes out -------------------------------------------------------------

    def offer(self, data: bytes) -> None:
        self.ring.append(data)
        self.next_seq += 1
        if self._more is not None:
            self._more.set()
            self._more = None

    def event_published(self, kind: str, data: bytes) -> None:
        """An event of the namespace, as published (``OutStream``'s watcher)."""
        if kind not in KINDS:
            return
        if self.listeners:
            self.offer(frame(kind, _one_line(data)))
        if kind == "play" and self._plays is not None:
            try:
                self._plays.send_nowait(None)  # many plays in a burst: one question
            except anyio.WouldBlock:
                pass

    async def run(self, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Tell ``now_playing`` after plays, until cancelled."""
        send, receive = anyio.create_memory_object_stream[None](1)
        self._plays = send
        try:
            task_status.started()
            async with receive:
                async for _ in receive:
                    await self._tell_now_playing()
        finally:
            self._plays = None

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
