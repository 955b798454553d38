"""The bus side of the daemon: replies and acks going out, admission, and
the command subscriptions requests come in by.

``Bus`` is what every actor's shell answers through; ``CommandSubscriptions``
is the door: a request that finds the daemon at capacity
(``[limits] max_in_flight`` admitted and unanswered) is answered
``unavailable`` at once, the rest go to the gateway's mailbox.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import anyio
import attrs
from nats.aio.client import Client as NatsClient

from . import wire
from .compact_json import dump_bytes
from .effects import Reply
from .mailboxes import MailboxFull, Router
from .store.headed_publish import publish_plain_many
from .domain import EventRef
from .messages import Inbound

log = logging.getLogger(__name__)

AT_CAPACITY = "the daemon is at capacity; retry"


async def send_json(nc: NatsClient, subject: str, body: dict) -> None:
    """Publish a JSON reply; one that cannot go out is logged, never raised
    (it must not kill the actor or callback that sends it)."""
    try:
        await nc.publish(subject, _encoded(body))
    except Exception as exc:
        log.warning("reply to %s lost: %s", subject, exc)


def _encoded(body: dict) -> bytes:
    try:
        return dump_bytes(body)
    except UnicodeEncodeError:  # a lone surrogate somewhere: JSON's \u escapes carry it
        return json.dumps(body, separators=(",", ":")).encode()


class Bus:
    """The daemon's outbound side: replies and event acks, with admission.

    ``in_flight`` counts admitted requests not yet answered; it is what most
    of a mailbox's capacity is for (``mailboxes.mailbox_capacity``).
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
        await self.replies([r])

    async def replies(self, rs: list[Reply]) -> None:
        """Replies (one step's), handed to the client as one command."""
        for r in rs:
            self.in_flight = max(0, self.in_flight - 1)
            if self.in_flight == 0 and self._idle is not None:
                self._idle.set()
            for watch in self.watchers:
                try:
                    watch(r)
                except Exception:  # an observer's bug must not lose the reply
                    log.exception("reply watcher failed")
        to = [r for r in rs if r.to.subject is not None]
        if not to:
            return
        try:
            await publish_plain_many(self.nc, [(r.to.subject, _encoded(r.body)) for r in to])
        except Exception as exc:  # logged, never raised: it must not kill the actor that answers
            log.warning("%d replies lost, to %s first: %s", len(to), to[0].to.subject, exc)

    async def send(self, subject: str, body: dict) -> None:
        await send_json(self.nc, subject, body)

    async def ack(self, ev: EventRef) -> None:
        if ev.ack_subject is None:
            return
        try:
            await self.nc.publish(ev.ack_subject, b"+ACK")
        except Exception as exc:  # unacked events come back; nothing is lost
            log.warning("ack of event %d lost: %s", ev.stream_seq, exc)


class CommandSubscriptions:
    """The command subjects (``{prefix}.playlist.cmd.{command}``), in a queue
    group per namespace: should a stale active daemon (paused past its lease)
    still be subscribed, each request goes to one of the two, never both."""

    def __init__(self, nc: NatsClient, bus: Bus, router: Router) -> None:
        self.nc = nc
        self.bus = bus
        self.router = router
        self.subs: list = []

    async def open(self, prefix: str, commands: list[str], namespace: str) -> None:
        group = f"kryten-likes.{namespace}"
        self.subs = [await self.nc.subscribe(f"{prefix}.playlist.cmd.{c}", queue=group, cb=self.on_request)
                     for c in commands]
        await self.nc.flush()  # the server knows our subscriptions before we say we serve

    async def on_request(self, msg: Any) -> None:
        inbound = Inbound.of(msg.subject.rsplit(".", 1)[-1], msg.data, msg.reply or None, time.monotonic())
        await admit(self.bus, self.router, inbound, lambda: wire.correlation_id_of(msg.data))

    async def close(self) -> None:
        subs, self.subs = self.subs, []
        for sub in subs:
            try:
                await sub.unsubscribe()
            except Exception:  # the connection may be gone: so is the subscription
                pass


async def admit(bus: Bus, router: Router, request: Any, correlation_id: Callable[[], str | None]) -> bool:
    """Let a request in (to the mailbox of the actor that takes it), or answer
    ``unavailable`` at once: at capacity, or (not with admission as it is, see
    ``mailboxes.mailbox_capacity``) its mailbox full. False when it was not let
    in at capacity: a caller in this process (HTTP) answers its own."""
    if not bus.admit():
        if request.reply.subject is not None:  # not counted: it was never let in
            to = attrs.evolve(request.reply, correlation_id=correlation_id())
            await bus.send(to.subject, wire.error(to, "unavailable", AT_CAPACITY).body)
        return False
    try:
        router.send(request)
    except MailboxFull as exc:
        log.error("%s", exc)
        to = attrs.evolve(request.reply, correlation_id=correlation_id())
        await bus.reply(wire.error(to, "unavailable", AT_CAPACITY))
    return True
