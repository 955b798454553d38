"""The live stream's fan-out (``http_live.LiveFeed``) on its own: each
listener has a bounded queue; one that does not read is dropped without
holding up the others or the sender; at most ``max_listeners``; a burst of
plays asks what plays now once and tells it only when it changed."""

from __future__ import annotations

import json

import anyio
import pytest

from kryten_likes.http_live import LiveFeed, frame


def _like(n: int) -> bytes:
    return json.dumps({"kind": "like", "like_count": n}).encode()


def test_a_listener_that_does_not_read_is_dropped_and_the_others_get_everything():
    feed = LiveFeed(max_listeners=3, queue_frames=4)
    reader, stuck = feed.join(), feed.join()
    got = []
    for n in range(10):
        feed.event_heard("like", _like(n))  # never waits: send_nowait
        got.append(reader.frames.receive_nowait())
    assert got == [frame("like", _like(n)) for n in range(10)]
    assert feed.listeners == {reader} and feed.dropped == 1
    with pytest.raises(anyio.ClosedResourceError):  # its route sees its stream end
        stuck.frames.receive_nowait()


def test_at_most_max_listeners_and_a_place_is_given_back_on_leaving():
    feed = LiveFeed(max_listeners=2)
    a, b = feed.join(), feed.join()
    assert a is not None and b is not None and feed.join() is None
    feed.leave(a)
    assert feed.join() is not None


def test_only_likes_unlikes_and_plays_go_out_and_each_on_one_line():
    feed = LiveFeed(max_listeners=1)
    listener = feed.join()
    feed.event_heard("other", b"{}")
    feed.event_heard("unlike", b'{\n"kind": "unlike"}')
    assert listener.frames.receive_nowait() == b'event: unlike\ndata: {"kind":"unlike"}\n\n'
    with pytest.raises(anyio.WouldBlock):
        listener.frames.receive_nowait()


async def _follow_with(feed: LiveFeed, plays: int) -> None:
    """``follow``'s loop without a bus: plays heard, then what it told."""
    class Bus:
        async def subscribe(self, subject, cb):
            class Sub:
                async def unsubscribe(self):
                    pass
            return Sub()

    async with anyio.create_task_group() as tg:
        await tg.start(feed.follow, Bus(), "kryten", "default")
        for _ in range(plays):
            feed.event_heard("play", b'{"kind":"play"}')
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_a_burst_of_plays_asks_once_and_a_change_is_told_once():
    answers = iter([{"video_id": "v1"}, {"video_id": "v1"}, {"video_id": "v2"}])
    asked = []

    async def now_playing():
        asked.append(1)
        return next(answers)

    feed = LiveFeed(max_listeners=1, now_playing=now_playing)
    listener = feed.join()
    await _follow_with(feed, plays=3)  # heard before the loop runs: one question
    assert len(asked) == 1
    await feed._tell_now_playing()  # the same answer again: not told twice
    await feed._tell_now_playing()
    told = []
    while True:
        try:
            told.append(listener.frames.receive_nowait())
        except anyio.WouldBlock:
            break
    assert [f for f in told if f.startswith(b"event: now_playing")] == [
        frame("now_playing", b'{"video_id":"v1"}'), frame("now_playing", b'{"video_id":"v2"}')]
