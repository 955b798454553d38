"""Bounded mailboxes (``mailboxes.mailbox_capacity``): what a full one does.

A send that would overflow raises ``MailboxFull`` in the sender (in an actor,
its incarnation ends and the supervisor restarts it); a tick is never queued
behind another tick, nor into a full mailbox; the event feed waits for room
beyond the reserve kept for requests.
"""

from __future__ import annotations

import anyio
import pytest

from kryten_likes.actors.shell import ActorShell
from kryten_likes.mailboxes import INTERNAL_ROOM, MailboxFull, Router, mailbox_capacity, mailbox_reserve
from kryten_likes.events import EVENT_WINDOW, FETCH
from kryten_likes.messages import Tick


def _boxes(capacity: int, *names: str):
    sends, inboxes = {}, {}
    for name in names:
        sends[name], inboxes[name] = anyio.create_memory_object_stream(capacity)
    return sends, inboxes


def test_the_capacity_is_the_stated_sum():
    assert mailbox_reserve(20_000) == 2 * 20_000 + INTERNAL_ROOM
    assert mailbox_capacity(20_000) == mailbox_reserve(20_000) + EVENT_WINDOW
    assert FETCH <= EVENT_WINDOW
    assert mailbox_capacity(1) > 2  # a request, and what outlives its reply


def test_a_send_into_a_full_mailbox_raises_a_clear_error():
    sends, inboxes = _boxes(2, "ledger")
    router = Router(sends)
    router.deliver("ledger", "a")
    router.deliver("ledger", "b")
    with pytest.raises(MailboxFull, match=r"the ledger mailbox is full \(2 messages\); str not delivered"):
        router.deliver("ledger", "c")
    assert inboxes["ledger"].receive_nowait() == "a"
    router.deliver("ledger", "c")  # room again once the actor has taken one


def test_at_most_one_tick_waits_in_a_mailbox_and_none_in_a_full_one():
    sends, inboxes = _boxes(3, "writer")
    router = Router(sends)
    router.tick("writer")
    router.tick("writer")
    assert inboxes["writer"].statistics().current_buffer_used == 1
    assert type(inboxes["writer"].receive_nowait()) is Tick
    router.tick_taken("writer")
    router.tick("writer")
    router.deliver("writer", "x")
    router.deliver("writer", "y")
    router.tick_taken("writer")  # (as a shell does on taking the tick)
    router.tick("writer")  # full: skipped, not raised
    assert inboxes["writer"].statistics().current_buffer_used == 3


class _Core:
    def __init__(self) -> None:
        self.seen: list = []

    def step(self, msg, now):
        self.seen.append(msg)
        return [msg] if msg == "forward" else []

    def held_requests(self) -> list:
        return []


class _Clock:
    def now(self) -> float:
        return 0.0


def test_a_shell_takes_its_tick_and_an_actor_overflowing_a_mailbox_ends_its_incarnation():
    sends, inboxes = _boxes(4, "me", "full")
    router = Router(sends, routes={str: "full"})  # what the core sends goes to "full"
    for _ in range(4):
        router.send("already there")
    core = _Core()
    shell = ActorShell("me", core, router, bus=None, clock=_Clock())

    async def main() -> None:
        router.tick("me")
        router.deliver("me", "forward")
        with pytest.raises(MailboxFull, match="the full mailbox is full"):
            await shell.run(inboxes["me"])

    anyio.run(main)
    assert type(core.seen[0]) is Tick and core.seen[1] == "forward"
    router.tick("me")  # the shell said the tick was taken: a new one may go in
    assert inboxes["me"].statistics().current_buffer_used == 1


def test_the_event_feed_waits_for_room_beyond_the_reserve():
    sends, inboxes = _boxes(3, "playback")
    router = Router(sends, reserve=1, routes={str: "playback"})

    async def main() -> None:
        await router.send_with_room("e1")
        await router.send_with_room("e2")  # room 2 > reserve 1
        with anyio.move_on_after(0.1) as waited:
            await router.send_with_room("e3")  # room 1: kept for requests
        assert waited.cancelled_caught
        router.send("a request")  # the reserve is there for it
        assert inboxes["playback"].receive_nowait() == "e1"
        assert inboxes["playback"].receive_nowait() == "e2"
        with anyio.fail_after(2):
            await router.send_with_room("e3")
        assert inboxes["playback"].receive_nowait() == "a request"
        assert inboxes["playback"].receive_nowait() == "e3"

    anyio.run(main)


def test_a_request_an_actor_could_not_forward_is_answered_by_the_supervisor():
    from kryten_likes.messages import LikeRequested, ReplyTo

    sends, inboxes = _boxes(1, "me", "full")
    like = LikeRequested(ReplyTo("_INBOX.x", "c1", "like"), "ns", "u", None)
    router = Router(sends, routes={LikeRequested: "full"})
    router.send(like)

    class _Forwarder:
        def step(self, msg, now):
            return [msg]

        def held_requests(self) -> list:
            return []

    shell = ActorShell("me", _Forwarder(), router, bus=None, clock=_Clock())

    async def main() -> None:
        router.deliver("me", like)
        with pytest.raises(MailboxFull):
            await shell.run(inboxes["me"])

    anyio.run(main)
    replies, _ = shell.orphans()
    assert replies == [like.reply]
