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

import json
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream
from nats.aio.client import Client as NatsClient

from ..clock import Clock
from ..messages import EventRef, ReplyTo, Tick
from ..routes import MAILBOX, is_request
from ..effects import AckEvent, Reply

log = logging.getLogger(__name__)

DRAIN = 1024
ROOM_POLL = 0.01  # seconds between looks at a full mailbox, for a sender that waits for room


class InjectedFault(Exception):
    """Raised by a test's fault hook inside an actor."""


async def send_json(nc: NatsClient, subject: str, body: dict) -> None:
    """Publish a JSON reply; one that cannot go out is logged, never raised
    (it must not kill the actor or callback that sends it)."""
    try:
        try:
            data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        except UnicodeEncodeError:  # a lone surrogate somewhere: JSON's \u escapes carry it
            data = json.dumps(body, separators=(",", ":")).encode()
        await nc.publish(subject, data)
    except Exception as exc:
        log.warning("reply to %s lost: %s", subject, exc)


class Bus:
    """The daemon's outbound side: replies and event acks, with admission.

    ``in_flight`` counts admitted requests not yet answered; it is what most
    of a mailbox's capacity is for (``activation.mailbox_capacity``).
    """

    def __init__(self, nc: NatsClient, max_in_flight: int,
                 watchers: list[Callable[[Reply], None]] | None = None) -> None:
        self.nc = nc
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.watchers = watchers if watchers is not None else []  # metrics, the chat voice
        self._idle: anyio.Event | None = None  # set when in_flight comes down to 0

    def admit(self) -> bool:
        if self.in_flight >= self.max_in_flight:
            return False
        self.in_flight += 1
        return True

    async def idle(self) -> None:
        """Return once every admitted request has been answered."""
        while self.in_flight > 0:
            self._idle = anyio.Event()
            await self._idle.wait()

    async def reply(self, r: Reply) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        if self.in_flight == 0 and self._idle is not None:
            self._idle.set()
        for watch in self.watchers:
            try:
                watch(r)
            except Exception:  # an observer's bug must not lose the reply
                log.exception("reply watcher failed")
        if r.to.subject is None:
            return
        await self.send(r.to.subject, r.body)

    async def send(self, subject: str, body: dict) -> None:
        await send_json(self.nc, subject, body)

    async def ack(self, ev: EventRef) -> None:
        if ev.ack_subject is None:
            return
        try:
            await self.nc.publish(ev.ack_subject, b"+ACK")
        except Exception as exc:  # unacked events come back; nothing is lost
            log.warning("ack of event %d lost: %s", ev.stream_seq, exc)


class MailboxFull(RuntimeError):
    """A send found the mailbox full: the bounds of ``activation.mailbox_capacity``
    were broken. Raised in the sender; in an actor it ends that incarnation
    (the supervisor restarts it per ``[supervisor]``)."""


class Router:
    """Send ends of every mailbox, by actor name; a message goes to the mailbox
    ``routes.MAILBOX`` names for its class.

    Mailboxes are bounded (``activation.mailbox_capacity``) and a send never
    waits: a message that would not fit raises ``MailboxFull`` (two actors
    waiting on each other's full mailboxes, ledger ⇄ writer, would deadlock).
    Two kinds of sender are kept within the bound here: the ticker sends a
    ``Tick`` only when none waits in that mailbox (``tick``), and the event
    feed, which can wait, waits for room beyond ``reserve`` — the part of each
    mailbox kept for requests and the actors' own messages (``send_with_room``).
    """

    def __init__(self, mailboxes: dict[str, ObjectSendStream], reserve: int = 0,
                 routes: dict[type, str] | None = None) -> None:
        self._boxes = mailboxes
        self.reserve = reserve
        self._routes = MAILBOX if routes is None else routes
        self._tick_waiting: set[str] = set()

    def takes(self, message: Any) -> bool:
        """Is ``message`` one an actor takes (else it is an effect for the shell)?"""
        return type(message) in self._routes

    def mailbox_of(self, message: Any) -> str:
        try:
            return self._routes[type(message)]
        except KeyError:
            raise TypeError(f"no actor takes {type(message).__name__}") from None

    def send(self, message: Any) -> None:
        """Into the mailbox of the actor that takes ``message``; never waits."""
        self.deliver(self.mailbox_of(message), message)

    def deliver(self, to: str, message: Any) -> None:
        """Into ``to``'s mailbox, whatever the message (a tick, a test's)."""
        box = self._boxes[to]
        try:
            box.send_nowait(message)
        except anyio.WouldBlock:
            raise MailboxFull(f"the {to} mailbox is full ({box.statistics().max_buffer_size} messages); "
                              f"{type(message).__name__} not delivered") from None

    def room(self, to: str) -> float:
        """Free places in a mailbox (math.inf for an unbounded one)."""
        stats = self._boxes[to].statistics()
        return stats.max_buffer_size - stats.current_buffer_used

    async def send_with_room(self, message: Any) -> None:
        """Send once the mailbox has more than ``reserve`` free places: for a
        sender outside the actors (the event feed), which may wait."""
        to = self.mailbox_of(message)
        while self.room(to) <= self.reserve:
            await anyio.sleep(ROOM_POLL)  # polled: nothing signals a mailbox's room
        self.deliver(to, message)

    def tick(self, to: str) -> None:
        """A ``Tick`` for ``to``, unless one already waits there (or the
        mailbox is full): a tick only says that time has passed, and the
        waiting one says it as well, so at most one is ever in a mailbox."""
        if to in self._tick_waiting or self.room(to) <= 0:
            return
        self.deliver(to, Tick())
        self._tick_waiting.add(to)

    def tick_taken(self, to: str) -> None:
        """Told by the shell that took a ``Tick`` out of ``to``'s mailbox."""
        self._tick_waiting.discard(to)


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
                effects = self.core.step(msg, now)
                self.in_hand.popleft()
                await self.perform(effects)
            await self.after_batch(now)

    async def after_batch(self, now: float) -> None:
        pass

    async def perform(self, effects: list) -> None:
        for e in effects:
            if isinstance(e, Reply):
                await self.bus.reply(e)
            elif self.router.takes(e):
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

    async def perform_other(self, effect: Any) -> None:
        raise TypeError(f"{self.name} cannot perform {effect!r}")

    def orphans(self) -> tuple[list[ReplyTo], list]:
        """Requests this incarnation held when it died (in its hands and in its
        core: ``held_requests``); messages other actors must get."""
        replies = [m.reply for m in self.in_hand if is_request(m)]
        return replies + self.core.held_requests(), []
