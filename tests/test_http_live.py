"""The live stream's fan-out (``http_live.LiveFeed``) on its own: one shared
ring; each listener takes what is new as one chunk; one that falls a ring
behind is dropped without holding up the others or the sender; at most
``max_listeners``; a burst of plays asks what plays now once and tells it
only when it changed."""

from __future__ import annotations

import json
import zlib

import anyio
import pytest

from kryten_likes.http_live import GZIP_HEADER, WRITE_SECONDS, Behind, LiveFeed, frame


def _like(n: int) -> bytes:
    return json.dumps({"kind": "like", "like_count": n}).encode()


def test_each_listener_takes_what_is_new_as_one_chunk_and_one_a_ring_behind_is_dropped():
    feed = LiveFeed(max_listeners=3, ring_bytes=3 * len(frame("like", _like(0))))
    reader, stuck = feed.join(), feed.join()
    got = []
    for n in range(10):
        feed.event_published("like", _like(n))  # never waits: an append
        if n % 2:
            feed.seal()  # two frames at a time, as one chunk
            got.append(feed.take(reader))
    assert got == [frame("like", _like(n - 1)) + frame("like", _like(n)) for n in range(1, 10, 2)]
    assert feed.take(reader) == b""
    with pytest.raises(Behind):
        feed.take(stuck)
    assert feed.dropped == 1


def test_a_gzip_listener_reads_the_same_events_from_chunks_compressed_once():
    feed = LiveFeed(max_listeners=3)
    plain, packed = feed.join(), feed.join(gzip=True)
    written_plain, written_gzip = b"", GZIP_HEADER
    for n in range(50):
        feed.event_published("like", _like(n))
        if n % 7 == 0:
            feed.seal()
            written_gzip += feed.take(packed)
        if n % 11 == 0:
            feed.seal()
            written_plain += feed.take(plain)
    feed.seal()
    written_plain += feed.take(plain)
    written_gzip += feed.take(packed)
    want = b"".join(frame("like", _like(n)) for n in range(50))
    assert written_plain == want
    assert zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(written_gzip) == want  # no trailer: still read
    assert len(written_gzip) < len(want) / 3


def test_at_most_max_listeners_and_a_place_is_given_back_on_leaving():
    feed = LiveFeed(max_listeners=2)
    a, b = feed.join(), feed.join()
    assert a is not None and b is not None and feed.join() is None
    feed.leave(a)
    assert feed.join() is not None


def test_only_likes_unlikes_and_plays_go_out_and_each_on_one_line():
    feed = LiveFeed(max_listeners=1)
    listener = feed.join()
    feed.event_published("other", b"{}")
    feed.event_published("unlike", b'{\n"kind": "unlike"}')
    feed.seal()
    assert feed.take(listener) == b'event: unlike\ndata: {"kind":"unlike"}\n\n'


@pytest.mark.anyio
async def test_a_waiting_listener_wakes_on_the_next_event():
    feed = LiveFeed(max_listeners=2)
    a = feed.join()
    async with anyio.create_task_group() as tg:
        tg.start_soon(feed.more, a)
        await anyio.wait_all_tasks_blocked()
        feed.event_published("like", _like(1))
        feed.seal()
    assert feed.take(a) == frame("like", _like(1))


@pytest.mark.anyio
async def test_a_burst_of_plays_asks_once_and_a_change_is_told_once():
    answers = iter([{"video_id": "v1"}, {"video_id": "v1"}, {"video_id": "v2"}])
    asked = []

    async def now_playing():
        asked.append(1)
        return next(answers)

    feed = LiveFeed(max_listeners=1, now_playing=now_playing)
    listener = feed.join()
    async with anyio.create_task_group() as tg:
        await tg.start(feed.run)
        for _ in range(3):
            feed.event_published("play", b'{"kind":"play"}')  # heard before run's loop wakes: one question
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()
    assert len(asked) == 1
    await feed._tell_now_playing()  # the same answer again: not told twice
    await feed._tell_now_playing()
    feed.seal()
    told = feed.take(listener).split(b"\n\n")
    assert [f + b"\n\n" for f in told if f.startswith(b"event: now_playing")] == [
        frame("now_playing", b'{"video_id":"v1"}'), frame("now_playing", b'{"video_id":"v2"}')]


def test_a_write_that_does_not_drain_in_time_ends_its_connection():
    feed = LiveFeed(max_listeners=2)
    stuck, fine = feed.join(), feed.join()
    aborted = []
    stuck.abort, fine.abort = (lambda: aborted.append("stuck")), (lambda: aborted.append("fine"))
    stuck.writing_since, fine.writing_since = 100.0, 109.0
    feed.drop_stuck(now=100.0 + WRITE_SECONDS + 0.5)
    assert aborted == ["stuck"] and feed.listeners == {fine} and feed.dropped == 1
