"""The counter writer's shell takes a lone journal entry's landing in two:
its answers go out first, then the writer counts it, and no other message
is stepped between (CounterWriter.answers_first, count_answered). The core
here is a stand-in that logs what the shell asks of it."""

from __future__ import annotations

import anyio

from kryten_likes.actors.counter_writer_shell import CounterWriterShell
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
