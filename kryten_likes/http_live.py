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
- the sealing task hands the chunk to each listener's socket itself, a
  non-blocking write (``Outlet.write``): no task wakes per listener, and
  200 listeners cost 200 writes per seal at any like rate; a browser (it
  asks for gzip) is sent about a twentieth of the bytes.

A listener whose socket holds more than ``BACKLOG_BYTES`` not yet taken by
its client (it does not read, or reads slower than the channel likes) is
dropped: its connection is ended and the browser's EventSource connects
again by itself. A stream with nothing to say for ``KEEPALIVE_SECONDS`` is
sent a comment, so proxies keep it open. Memory: each socket's backlog, at
most ``BACKLOG_BYTES``. At most ``max_listeners`` at once; the next is
refused (the route answers 503).

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
from typing import Any, Protocol

import anyio

from .compact_json import dump_bytes

log = logging.getLogger(__name__)

KINDS = ("like", "unlike", "play")
PACE_SECONDS = 0.25  # how often what came is sealed and written (the page is "live" to a person)
BACKLOG_BYTES = 256 << 10  # unread by its client: a few seconds of the busiest channel, gzipped
KEEPALIVE_SECONDS = 15.0
KEEPALIVE = b": keep-alive\n\n"
HELLO = b"retry: 3000\n: live\n\n"  # the browser reconnects 3 s after a stream ends
TOLD_KEPT = 8192  # event ids remembered: more than a group and its retries hold
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


class Outlet(Protocol):
    """A listener's socket as the feed uses it: ``write`` never blocks
    (bytes wait in the socket's buffer), ``backlog`` is what waits there,
    ``end`` closes the connection."""

    def write(self, data: bytes) -> None: ...
    def backlog(self) -> int: ...
    def end(self) -> None: ...


class Listener:
    __slots__ = ("gzip", "outlet", "gone")

    def __init__(self, gzip: bool) -> None:
        self.gzip = gzip
        self.outlet: Outlet | None = None  # set once its response has begun
        self.gone = anyio.Event()  # set when the feed dropped it


class LiveFeed:
    def __init__(self, max_listeners: int, now_playing: Callable[[], Awaitable[dict | None]] | None = None,
                 backlog_bytes: int = BACKLOG_BYTES) -> None:
        self.max_listeners = max_listeners
        self.backlog_bytes = backlog_bytes
        self.listeners: set[Listener] = set()
        self.dropped = 0  # listeners dropped for not reading
        self.pending: list[bytes] = []  # frames not sealed yet
        self._now_playing = now_playing
        self._last_now_playing: bytes | None = None  # the last now_playing frame sent
        self._told: set[str] = set()  # event ids sent lately
        self._told_order: deque[str] = deque()
        self._plays: Any = None  # while ``run``s: a play was heard

    # --- listeners ---------------------------------------------------------------

    def join(self, gzip: bool = False) -> Listener | None:
        """A place for a new listener (sent what is sealed once its
        ``outlet`` is set), or None when ``max_listeners`` are listening."""
        if len(self.listeners) >= self.max_listeners:
            return None
        listener = Listener(gzip)
        self.listeners.add(listener)
        return listener

    def leave(self, listener: Listener) -> None:
        self.listeners.discard(listener)

    # --- what goes out -------------------------------------------------------------

    def offer(self, data: bytes) -> None:
        self.pending.append(data)

    def seal(self) -> None:
        """What came since the last seal goes to every listener, as one write."""
        if not self.pending:
            return
        plain = b"".join(self.pending)
        self.pending = []
        if not self.listeners:
            return
        packed = deflated(plain) if any(x.gzip for x in self.listeners) else b""
        for listener in list(self.listeners):
            outlet = listener.outlet
            if outlet is None:
                continue  # its response has not begun: it starts from the next seal
            try:
                if outlet.backlog() > self.backlog_bytes:
                    self.drop(listener, "its client stopped reading")
                    continue
                outlet.write(packed if listener.gzip else plain)
            except Exception as exc:  # the connection is gone: so is the listener
                self.drop(listener, repr(exc))

    def drop(self, listener: Listener, why: str) -> None:
        log.info("a live stream dropped: %s (its browser connects again)", why)
        self.dropped += 1  # not reading, its connection failed, or the daemon stepped down
        self.leave(listener)
        listener.gone.set()
        try:
            if listener.outlet is not None:
                listener.outlet.end()
        except Exception:
            pass

    def event_published(self, event_id: str, kind: str, data: bytes) -> None:
        """An event of the namespace, as published (``OutStream``'s watcher).
        A group published again (a later chunk's ack failed; a restart) tells
        an event twice: the stream sends it once, as JetStream keeps it once."""
        if kind == "play" and self._plays is not None:
            try:
                self._plays.send_nowait(None)  # many plays in a burst: one question
            except anyio.WouldBlock:
                pass
        if not self.listeners:
            return  # (told to nobody: a listener that comes later may hear a republished one once)
        if kind not in KINDS or event_id in self._told:
            return
        self._told.add(event_id)
        self._told_order.append(event_id)
        if len(self._told_order) > TOLD_KEPT:
            self._told.discard(self._told_order.popleft())
        self.offer(frame(kind, _one_line(data)))

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
        told = frame("now_playing", dump_bytes(body))
        if told != self._last_now_playing:
            self._last_now_playing = told
            self.offer(told)

    def hello(self, gzip: bool) -> bytes:
        """A new stream's first bytes: the browser's retry time, and what
        plays now when known (a page that reconnects after a gap hears it)."""
        plain = HELLO + (self._last_now_playing or b"")
        return GZIP_HEADER + deflated(plain) if gzip else plain

    def drop_all(self, why: str) -> None:
        """Every listener's stream ends (the daemon steps down: its pages
        connect again, through a proxy perhaps to the active daemon)."""
        for listener in list(self.listeners):
            self.drop(listener, why)


def _one_line(data: bytes) -> bytes:
    """Our events are compact JSON already; anything else is made so (an SSE
    ``data:`` line must not hold a raw newline)."""
    if b"\n" not in data and b"\r" not in data:
        return data
    try:
        return dump_bytes(json.loads(data))
    except ValueError:
        return b"null"
