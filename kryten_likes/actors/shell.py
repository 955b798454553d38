"""The thin async shell every actor runs in.

A shell receives from the mailbox the supervisor owns, reads the clock once
per batch of messages, calls its core's ``step`` and performs the effects.
Messages are drained in batches (``receive_nowait`` after the first
``receive``), which is what lets the counter writer group-commit.

Resource handling: the shell owns no mailbox; the supervisor does, so a
restarted incarnation receives what waited for its predecessor.
Error handling: any exception ends the incarnation; ``orphans`` then tells
the supervisor whom to answer and what the other actors must learn.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import anyio
import anyio.lowlevel
from anyio.abc import ObjectReceiveStream

from ..bus import Bus
from ..clock import Clock
from ..effects import AckEvent, Reply
from ..mailboxes import MailboxFull, Router
from ..messages import ReplyTo, Tick
from ..routes import is_request

log = logging.getLogger(__name__)

DRAIN = 1024


class InjectedFault(Exception):
    """Raised by a test's fault hook inside an actor."""


FaultHook = Callable[[str, Any], bool]


class ActorCore(Protocol):
    """What a shell asks of its pure core."""

    def step(self, msg: Any, now: float) -> list:
        """A message at a time: the effects and the messages it sends."""

    def held_requests(self) -> list[ReplyTo]:
        """Requests it keeps waiting across steps (answered by the supervisor if it dies)."""


class ActorShell:
    def __init__(self, name: str, core: ActorCore, router: Router, bus: Bus, clock: Clock,
                 fault: FaultHook | None = None) -> None:
        self.name = name
        self.core = core
        self.router = router
        self.bus = bus
        self.clock = clock
        self.fault = fault
        self.in_hand: deque = deque()

    async def run(self, inbox: ObjectReceiveStream, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            try:
                msg = await inbox.receive()
            except anyio.EndOfStream:
                return
            while True:
                if type(msg) is Tick:
                    self.router.tick_taken(self.name)
                self.in_hand.append(msg)
                if len(self.in_hand) >= DRAIN:
                    break
                try:
                    msg = inbox.receive_nowait()
                except (anyio.WouldBlock, anyio.EndOfStream):
                    break
            now = self.clock.now()
            while self.in_hand:
                msg = self.in_hand[0]
                if self.fault is not None and self.fault(self.name, msg):
                    raise InjectedFault(f"{self.name} at {msg!r}")
                await self.take(msg, now)
            await self.after_batch(now)

    async def take(self, msg: Any, now: float) -> None:
        """One message: the core's step, then its effects (it leaves ``in_hand``
        once stepped: its effects are the core's to hold)."""
        effects = self.core.step(msg, now)
        self.in_hand.popleft()
        await self.perform(effects)

    async def after_batch(self, now: float) -> None:
        pass

    async def perform(self, effects: list) -> None:
        replied = False
        replies: list[Reply] = []  # consecutive ones go out as one command, still in order
        for e in effects:
            if isinstance(e, Reply):
                replies.append(e)
                replied = True
                continue
            if replies:
                await self.bus.replies(replies)
                replies = []
            if self.router.takes(e):
                try:
                    self.router.send(e)
                except MailboxFull:
                    # Held again, so that the supervisor answers its request (orphans).
                    self.in_hand.appendleft(e)
                    raise
            elif isinstance(e, AckEvent):
                await self.bus.ack(e.event)
            else:
                await self.perform_other(e)
        if replies:
            await self.bus.replies(replies)
        if replied:
            # The replies wait in the client's buffer for its flusher task: let
            # it send them now, not once the rest of the mailbox batch is done
            # (a like answered some 150 µs sooner at one in flight).
            await anyio.lowlevel.checkpoint()

    async def perform_other(self, effect: Any) -> None:
        raise TypeError(f"{self.name} cannot perform {effect!r}")

    def orphans(self) -> tuple[list[ReplyTo], list]:
        """Requests this incarnation held when it died (in its hands and in its
        core: ``held_requests``); messages other actors must get."""
        replies = [m.reply for m in self.in_hand if is_request(m)]
        return replies + self.core.held_requests(), []
