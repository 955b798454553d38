"""Mailboxes: one bounded memory stream per actor, owned by the supervisor's
side (so a restarted actor keeps its mailbox), and the router that puts
each message into the right one (``routes.MAILBOX``).

Theory of operation
-------------------
A send never waits: two actors waiting on each other's full mailboxes
(ledger ⇄ writer) would deadlock. So every mailbox is sized for the most
that can be in it (``mailbox_capacity``) and admission (``bus.Bus.admit``)
keeps requests within it; a send that would still overflow raises
``MailboxFull`` in the sender (in an actor, that incarnation ends and the
supervisor restarts it).
"""

from __future__ import annotations

from typing import Any

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from .events import EVENT_WINDOW
from .messages import Tick
from .routes import MAILBOX

ROOM_POLL = 0.01  # seconds between looks at a full mailbox, for a sender that waits for room

# Places in each mailbox for the actors' own messages: a Tick (at most one
# waits in a mailbox: Router.tick), what a crash makes the supervisor and
# after_crash send (a rewind, EnqueuesInFlight, WriterRestarted, a released
# ClaimsSettled), commits finishing (CommitFinished: at most MAX_LIKE_GROUPS = 3
# likes batches and one analytics batch in flight), and the apply actor's
# traffic (one enqueue in flight per apply, at most 4 applies: EnqueueAnswered,
# EnqueueStarted, QueueConfirmed, ApplyProgress, EnqueuesInFlight of 1 + 4).
INTERNAL_ROOM = 64


def mailbox_reserve(max_in_flight: int) -> int:
    """The part of each mailbox kept for requests and the actors' own messages.

    - Requests: admission (``Bus.admit``) lets at most ``max_in_flight`` in,
      each one message in one mailbox at a time (a like travels gateway →
      rate_buckets → playback → dedupe_ledger → counter_writer; the gateway's
      mailbox holds nothing else).
    - What outlives a request's reply: the counter writer answers a batch's
      requests and tells the ledger (``ClaimsSettled``, one per batch of at
      least one request): up to ``max_in_flight`` more while the ledger catches up.
    - ``INTERNAL_ROOM`` for the rest (above).
    """
    return 2 * max_in_flight + INTERNAL_ROOM


def mailbox_capacity(max_in_flight: int) -> int:
    """Each mailbox's bound: the reserve, plus ``EVENT_WINDOW`` for the bridge's
    events (JetStream hands out at most that many unacknowledged, in fetches of
    at most 256). The event feed waits for room beyond the reserve
    (``Router.send_with_room``), so events of a voided reading still waiting
    in a mailbox never crowd out requests. With the default ``max_in_flight``
    of 20 000: 2 × 20 000 + 64 + 2 000 = 42 064 places, none allocated until used.

    A send that would still overflow raises ``MailboxFull`` in the sender: in
    an actor, that incarnation ends and the supervisor restarts it (its
    requests are answered ``internal_error``); a request that finds the
    gateway's mailbox full is answered ``unavailable``; a tick is skipped.
    """
    return mailbox_reserve(max_in_flight) + EVENT_WINDOW


def open_mailboxes(names: tuple[str, ...], max_in_flight: int) -> tuple[Router, dict[str, ObjectReceiveStream]]:
    """A mailbox per actor; the router holds the send ends, the supervisor the rest."""
    sends: dict[str, ObjectSendStream] = {}
    inboxes: dict[str, ObjectReceiveStream] = {}
    for name in names:
        sends[name], inboxes[name] = anyio.create_memory_object_stream(mailbox_capacity(max_in_flight))
    return Router(sends, reserve=mailbox_reserve(max_in_flight)), inboxes


class MailboxFull(RuntimeError):
    """A send found the mailbox full: the bounds of ``mailbox_capacity``
    were broken. Raised in the sender; in an actor it ends that incarnation
    (the supervisor restarts it per ``[supervisor]``)."""


class Router:
    """Send ends of every mailbox, by actor name; a message goes to the mailbox
    ``routes.MAILBOX`` names for its class.

    Mailboxes are bounded (``mailbox_capacity``) and a send never
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
