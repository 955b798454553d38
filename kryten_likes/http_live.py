"""The live stream (``/api/v1/stream``): Server-Sent Events of likes, unlikes
and plays, and ``now_playing`` when the item changes.

Where the events come from: the event publisher (``event_out.OutStream``)
hands each event of the namespace here once the stream has acknowledged it,
as the very bytes it published on ``{pfx}.likes.events.{namespace}.{kind}``.
So the page sees what other services see, without the daemon reading its own
events back off the bus (a subscription would cost it a parse per event).

Why 200 open pages cost the like path little:

- an event is framed once and appended to a list: O(1), whatever the
  number of listeners;
- every ``PACE_SECONDS`` (``run``), the frames since the last time are
  *sealed* into one chunk, joined once and gzip-compressed once (a raw
  deflate block of its own, flushed: chunks concatenate into one valid gzip
  stream, so every listener can be sent the same bytes);
- each listener writes the sealed chunks it has not written, in one write:
  200 listeners make at most 2 000 writes a second at any like rate, and a
  browser (it asks for gzip) is sent about a twentieth of the bytes.

A listener that falls ``RING_BYTES`` behind (its client does not read, or
reads slower than the channel likes) is dropped: its stream ends and the
browser's EventSource connects again by itself. A write that does not drain
within ``WRITE_SECONDS`` drops it too (the sealing task aborts its
connection; no timer per write). A stream with nothing to say for
``KEEPALIVE_SECONDS`` is sent a comment, so proxies keep it open. Memory is
the ring plus each socket's bounded buffer. At most ``max_listeners`` at once; the next is refused (the
route answers 503).

``now_playing``: every new item is a counted play (``playback``), so a
``play`` event is the moment to ask what plays now; the answer is sent when
it differs from the last one sent.
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from .compact_json import dump_bytes

log = logging.getLogger(__name__)

KINDS = ("like", "unlike", "play")
RING_BYTES = 4 << 20  # sealed chunks kept (uncompressed size): a listener further behind is not reading
PACE_SECONDS = 0.1  # how often what came is sealed and written (the page is "live" to a person)
WRITE_SECONDS = 10.0
KEEPALIVE_SECONDS = 15.0
KEEPALIVE = b": keep-alive\n\n"
# gzip's member header (no name, no time, OS unknown). The trailer (CRC and
# size) is never sent: the stream ends when the connection does.
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


def frame(event: str, data: bytes) -> bytes:
    """One SSE message. ``data`` is one line of compact JSON (no raw newline)."""
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


def deflated(plain: bytes) -> bytes:
    """``plain`` as deflate blocks that depend on nothing before them and end
    on a byte boundary: any sequence of these is one valid deflate stream."""
    c = zlib.compressobj(1, zlib.DEFLATED, -15)
    return c.compress(plain) + c.flush(zlib.Z_SYNC_FLUSH)


class Behind(Exception):
    """The listener's place has left the ring: it missed events; drop it."""


class Listener:
    __slots__ = ("at", "gzip", "writing_since", "abort")

    def __init__(self, at: int, gzip: bool) -> None:
        self.at = at  # the number of the next sealed chunk it has not written
        self.gzip = gzip
        self.writing_since: float | None = None  # monotonic start of the write in progress
        self.abort: Callable[[], None] | None = None  # ends its connection (a write that does not drain)


class LiveFeed:
    def __init__(self, max_listeners: int, now_playing: Callable[[], Awaitable[dict | None]] | None = None,
                 ring_bytes: int = RING_BYTES) -> None:
        self.max_listeners = max_listeners
        self.ring_bytes = ring_bytes
        self.listeners: set[Listener] = set()
        self.dropped = 0  # listeners dropped for falling behind
        self.pending: list[bytes] = []  # frames not sealed yet
        self.sealed: deque[tuple[bytes, bytes]] = deque()  # (plain, deflated), oldest first
        self._sealed_bytes = 0
        self.next_chunk = 0  # the number the next sealed chunk gets
        self._more: anyio.Event | None = None  # made by the first listener waiting, set by the next seal
        self._now_playing = now_playing
        self._last_now_playing: bytes | None = None
        self._plays: Any = None  # while ``run``s: a play was heard

    @property
    def first_chunk(self) -> int:
        return self.next_chunk - len(self.sealed)

    # --- listeners ---------------------------------------------------------------

    def join(self, gzip: bool = False) -> Listener | None:
        """A new listener (from the next sealed chunk on), or None when full."""
        if len(self.listeners) >= self.max_listeners:
            return None
        listener = Listener(self.next_chunk, gzip)
        self.listeners.add(listener)
        return listener

    def leave(self, listener: Listener) -> None:
        self.listeners.discard(listener)

    def take(self, listener: Listener) -> bytes:
        """The sealed chunks the listener has not written, as one write (b"" if none)."""
        start = listener.at
        if start < self.first_chunk:
            self.dropped += 1
            raise Behind(f"{self.first_chunk - start} chunks behind")
        listener.at = self.next_chunk
        side = 1 if listener.gzip else 0
        n = self.next_chunk - start
        if n <= 1:
            return self.sealed[-1][side] if n else b""
        return b"".join(self.sealed[i][side] for i in range(len(self.sealed) - n, len(self.sealed)))

    async def more(self, listener: Listener) -> None:
        """Return once a chunk the listener has not written is sealed."""
        while listener.at == self.next_chunk:
            if self._more is None:
                self._more = anyio.Event()
            await self._more.wait()

    # --- what goes out -------------------------------------------------------------

    def offer(self, data: bytes) -> None:
        self.pending.append(data)

    def seal(self) -> None:
        """What came since the last seal becomes the next chunk, for every listener."""
        if not self.pending:
            return
        plain = b"".join(self.pending)
        self.pending = []
        if not self.listeners:
            return  # nobody to send it to (the last one left meanwhile)
        self.sealed.append((plain, deflated(plain)))
        self._sealed_bytes += len(plain)
        self.next_chunk += 1
        while self._sealed_bytes > self.ring_bytes and len(self.sealed) > 1:
            self._sealed_bytes -= len(self.sealed.popleft()[0])
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
        """Seal every ``PACE_SECONDS`` and tell ``now_playing`` after plays, until cancelled."""
        send, receive = anyio.create_memory_object_stream[None](1)
        self._plays = send
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._seal_every_pace)
                task_status.started()
                async with receive:
                    async for _ in receive:
                        await self._tell_now_playing()
        finally:
            self._plays = None

    async def _seal_every_pace(self) -> None:
        quiet_since = time.monotonic()
        while True:
            await anyio.sleep(PACE_SECONDS)  # pacing: what came meanwhile goes out as one chunk
            now = time.monotonic()
            if self.pending:
                quiet_since = now
            elif self.listeners and now - quiet_since >= KEEPALIVE_SECONDS:
                self.offer(KEEPALIVE)
                quiet_since = now
            self.seal()
            self.drop_stuck(now)

    def drop_stuck(self, now: float) -> None:
        """End the connection of each listener whose write has not drained in time."""
        for listener in list(self.listeners):
            since = listener.writing_since
            if since is not None and now - since > WRITE_SECONDS and listener.abort is not None:
                log.info("a live stream's client stopped reading; dropped")
                self.dropped += 1
                self.leave(listener)
                listener.abort()

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
