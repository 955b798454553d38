"""The live stream's fan-out (``http_live.LiveFeed``) on its own: what came
in a pace goes to every listener as one write (gzip-compressed once for
those that asked); one whose socket backs up is dropped without holding up
the others or the sender; at most ``max_listeners``; a burst of plays asks
what plays now once and tells it only when it changed."""

from __future__ import annotations

import itertools
import json
import zlib

import anyio
import pytest

from kryten_likes.http_live import GZIP_HEADER, HELLO, LiveFeed, frame


class Socket:
    """An outlet whose client reads ``reads`` bytes between seals (None: all)."""

    def __init__(self, reads: int | None = None) -> None:
        self.written: list[bytes] = []
        self.waiting = 0
        self.reads = reads
        self.ended = False

    def write(self, data: bytes) -> None:
        self.written.append(data)
        self.waiting += len(data)

    def backlog(self) -> int:
        self.waiting = 0 if self.reads is None else max(0, self.waiting - self.reads)
        return self.waiting

    def end(self) -> None:
        self.ended = True


IDS = itertools.count()


def _like(n: int) -> bytes:
    return json.dumps({"kind": "like", "like_count": n}).encode()


def _listening(feed: LiveFeed, socket: Socket, gzip: bool = False):
    listener = feed.join(gzip)
    listener.outlet = socket
    return listener


def test_what_came_in_a_pace_goes_to_every_listener_as_one_write():
    feed = LiveFeed(max_listeners=3)
    a, b = Socket(), Socket()
    _listening(feed, a), _listening(feed, b)
    for n in range(10):
        feed.event_published(f"e{next(IDS)}", "like", _like(n))  # never waits: an append
        if n % 2:
            feed.seal()
    want = [frame("like", _like(n - 1)) + frame("like", _like(n)) for n in range(1, 10, 2)]
    assert a.written == want and b.written == want
    feed.seal()  # nothing new: nothing written
    assert len(a.written) == 5


def test_a_gzip_listener_reads_the_same_events_from_chunks_compressed_once():
    feed = LiveFeed(max_listeners=3)
    plain, packed = Socket(), Socket()
    _listening(feed, plain), _listening(feed, packed, gzip=True)
    for n in range(50):
        feed.event_published(f"e{next(IDS)}", "like", _like(n))
        if n % 7 == 0:
            feed.seal()
    feed.seal()
    want = b"".join(frame("like", _like(n)) for n in range(50))
    assert b"".join(plain.written) == want
    stream = GZIP_HEADER + b"".join(packed.written)
    assert zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(stream) == want  # no trailer: still read
    assert len(stream) < len(want) / 3


def test_a_listener_whose_socket_backs_up_is_dropped_and_the_others_get_everything():
    feed = LiveFeed(max_listeners=3, backlog_bytes=3 * len(frame("like", _like(0))))
    reader, stuck = Socket(), Socket(reads=0)
    _, stuck_listener = _listening(feed, reader), _listening(feed, stuck)
    for n in range(10):
        feed.event_published(f"e{next(IDS)}", "like", _like(n))
        feed.seal()
    assert b"".join(reader.written) == b"".join(frame("like", _like(n)) for n in range(10))
    assert stuck.ended and stuck_listener.gone.is_set() and feed.dropped == 1
    assert len(stuck.written) == 4  # it got what fitted its backlog, then nothing
    assert len(feed.listeners) == 1


def test_a_socket_that_fails_drops_its_listener_only():
    feed = LiveFeed(max_listeners=2)
    broken, fine = Socket(), Socket()
    broken.write = lambda data: (_ for _ in ()).throw(ConnectionResetError("gone"))
    _listening(feed, broken), _listening(feed, fine)
    feed.event_published(f"e{next(IDS)}", "play", b'{"kind":"play"}')
    feed.seal()
    assert fine.written == [frame("play", b'{"kind":"play"}')] and feed.dropped == 1


def test_nothing_is_kept_while_no_one_listens_and_a_listener_starts_at_the_next_seal():
    feed = LiveFeed(max_listeners=2)
    feed.event_published(f"e{next(IDS)}", "like", _like(1))
    feed.seal()
    assert feed.pending == []
    early = Socket()
    waiting = feed.join()  # its response has not begun: skipped
    _listening(feed, early)
    feed.event_published(f"e{next(IDS)}", "play", b'{"kind":"play"}')
    feed.seal()
    assert early.written == [frame("play", b'{"kind":"play"}')] and waiting.outlet is None


def test_at_most_max_listeners_and_a_place_is_given_back_on_leaving():
    feed = LiveFeed(max_listeners=2)
    a, b = feed.join(), feed.join()
    assert a is not None and b is not None and feed.join() is None
    feed.leave(a)
    assert feed.join() is not None


def test_only_likes_unlikes_and_plays_go_out_and_each_on_one_line():
    feed = LiveFeed(max_listeners=1)
    s = Socket()
    _listening(feed, s)
    feed.event_published(f"e{next(IDS)}", "other", b"{}")
    feed.event_published(f"e{next(IDS)}", "unlike", b'{\n"kind": "unlike"}')
    feed.seal()
    assert s.written == [b'event: unlike\ndata: {"kind":"unlike"}\n\n']


@pytest.mark.anyio
async def test_a_burst_of_plays_asks_once_and_a_change_is_told_once():
    answers = iter([{"video_id": "v1"}, {"video_id": "v1"}, {"video_id": "v2"}])
    asked = []

    async def now_playing():
        asked.append(1)
        return next(answers)

    feed = LiveFeed(max_listeners=1, now_playing=now_playing)
    s = Socket()
    _listening(feed, s)
    async with anyio.create_task_group() as tg:
        await tg.start(feed.run)
        for _ in range(3):
            feed.event_published(f"e{next(IDS)}", "play", b'{"kind":"play"}')  # heard before run's loop wakes: one question
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()
    assert len(asked) == 1
    await feed._tell_now_playing()  # the same answer again: not told twice
    await feed._tell_now_playing()
    feed.seal()
    told = b"".join(s.written).split(b"\n\n")
    assert [f + b"\n\n" for f in told if f.startswith(b"event: now_playing")] == [
        frame("now_playing", b'{"video_id":"v1"}'), frame("now_playing", b'{"video_id":"v2"}')]


def test_an_event_told_twice_goes_out_once():
    """A group published again (a later chunk's ack failed; a restart) tells its events again."""
    feed = LiveFeed(max_listeners=1)
    s = Socket()
    _listening(feed, s)
    for _ in range(2):
        for n in range(3):
            feed.event_published(f"like-{n}", "like", _like(n))
    feed.seal()
    assert s.written == [b"".join(frame("like", _like(n)) for n in range(3))]


@pytest.mark.anyio
async def test_a_new_stream_begins_with_what_plays_now_when_known():
    async def now_playing():
        return {"video_id": "v1"}

    feed = LiveFeed(max_listeners=1, now_playing=now_playing)
    assert feed.hello(gzip=False) == HELLO
    await feed._tell_now_playing()
    told = frame("now_playing", b'{"video_id":"v1"}')
    assert feed.hello(gzip=False) == HELLO + told
    assert zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(feed.hello(gzip=True)) == HELLO + told


def test_stepping_down_ends_every_stream():
    feed = LiveFeed(max_listeners=3)
    sockets = [Socket(), Socket()]
    listeners = [_listening(feed, x) for x in sockets]
    feed.drop_all("this daemon stepped down")
    assert all(x.ended for x in sockets) and all(x.gone.is_set() for x in listeners) and not feed.listeners
