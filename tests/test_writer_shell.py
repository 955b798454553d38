"""The counter writer's shell takes a lone journal entry's landing in two:
its answers go out first, then the writer counts it, and no other message
is stepped between (CounterWriter.answers_first, count_answered). Every
shell hands a step's consecutive replies to the bus together, in order with
its other effects. The cores here are stand-ins that log what the shell
asks of them."""

from __future__ import annotations

import anyio

from kryten_likes.actors.counter_writer_shell import CounterWriterShell
from kryten_likes.actors.shell import ActorShell
from kryten_likes.effects import Reply
from kryten_likes.mailboxes import Router
from kryten_likes.messages import ReplyTo


class _Writer:
    def __init__(self, log: list) -> None:
        self.log = log

    def answers_first(self, msg, now):
        if msg != "lone entry landed":
            return None
        self.log.append("answers")
        return [Reply(ReplyTo("inbox.1"), {"status": "ok"})]

    def count_answered(self) -> list:
        self.log.append("counted")
        return []

    def step(self, msg, now) -> list:
        self.log.append(f"step {msg}")
        return []

    def flush(self, now) -> list:
        self.log.append("flush")
        return []

    def held_requests(self) -> list:
        return []


class _Bus:
    def __init__(self, log: list) -> None:
        self.log = log

    async def reply(self, r: Reply) -> None:
        self.log.append(f"reply to {r.to.subject}")

    async def replies(self, rs: list[Reply]) -> None:
        for r in rs:
            await self.reply(r)


class _Clock:
    def now(self) -> float:
        return 0.0


def test_a_lone_entry_is_answered_before_it_is_counted_and_nothing_steps_between() -> None:
    log: list = []
    send, inbox = anyio.create_memory_object_stream(8)
    shell = CounterWriterShell("counter_writer", _Writer(log), Router({"counter_writer": send}), _Bus(log), _Clock(),
                               buckets={})
    send.send_nowait("lone entry landed")
    send.send_nowait("a query")
    send.close()

    anyio.run(shell.run, inbox)
    assert log == ["answers", "reply to inbox.1", "counted", "step a query", "flush"]


class _Core:
    """One step's effects: two replies, a message for another actor, a reply."""

    def step(self, msg, now) -> list:
        return [Reply(ReplyTo("inbox.a"), {}), Reply(ReplyTo("inbox.b"), {}), "for another actor",
                Reply(ReplyTo("inbox.c"), {})]

    def held_requests(self) -> list:
        return []


class _GroupingBus(_Bus):
    async def replies(self, rs: list[Reply]) -> None:
        self.log.append([r.to.subject for r in rs])


class _Box:
    def __init__(self, log: list) -> None:
        self.log = log

    def send_nowait(self, msg) -> None:
        self.log.append(f"sent {msg}")


def test_a_steps_replies_go_out_together_in_order_with_its_other_effects() -> None:
    log: list = []
    send, inbox = anyio.create_memory_object_stream(8)
    shell = ActorShell("an actor", _Core(), Router({"other": _Box(log)}, routes={str: "other"}), _GroupingBus(log),
                       _Clock())
    send.send_nowait(object())
    send.close()

    anyio.run(shell.run, inbox)
    assert log == [["inbox.a", "inbox.b"], "sent for another actor", ["inbox.c"]]
