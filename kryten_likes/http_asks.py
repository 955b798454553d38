"""HTTP requests asked inside the daemon: the same requests, the same actors,
the same answers as on NATS (no second source of truth).

A route builds the body a NATS client would send and hands it to
``LocalAsks.ask``: the gateway's own ``decode`` checks it (an
``invalid_request`` comes back at once), admission lets it in or answers
``unavailable``, and the actor that answers it replies as to any request.
The reply is addressed to a *ticket* (``ReplyTo.ticket``) instead of a
subject; ``LocalAsks.heard``, one of the bus's reply watchers, hands it to
the route that waits on that ticket.

Every ask ends: an answer, ``unavailable`` (standby, at capacity, or no
answer within ``ASK_SECONDS``), never a hang. A route that gives up (the
client went away) forgets its ticket; a late answer is then dropped.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

from .actors.gateway import decode
from .bus import admit
from .compact_json import dump_bytes
from .effects import Reply
from .messages import ActivityAsked, Inbound, ReplyTo

# The slowest read answer is a ranking or a page of records: milliseconds. An
# answer this late means the daemon is stuck; the client hears so.
ASK_SECONDS = 10.0


NOT_FOR_HTTP = ("correlation_id", "status", "error")


def public(body: dict) -> dict:
    """A reply's fields as HTTP answers them: without the NATS envelope's."""
    return {k: v for k, v in body.items() if k not in NOT_FOR_HTTP}


def unavailable(detail: str) -> dict:
    return {"status": "error", "error": "unavailable", "detail": detail}


class LocalAsks:
    """Requests of this process's HTTP routes, by ticket, until answered."""

    def __init__(self, activation: Callable[[], Any], namespace: str) -> None:
        self.activation = activation  # the daemon's activation now (None while standby)
        self.namespace = namespace
        self._tickets = itertools.count(1)
        self._waiting: dict[int, asyncio.Future] = {}
        self._flying: dict[tuple[str, bytes], asyncio.Future] = {}  # questions in flight, by command and body

    def heard(self, r: Reply) -> None:
        """A bus watcher: a reply to one of our tickets ends its wait."""
        ticket = r.to.ticket
        if ticket is None:
            return
        waiting = self._waiting.pop(ticket, None)
        if waiting is not None and not waiting.done():
            waiting.set_result(r.body)

    async def ask(self, command: str, body: dict) -> dict:
        """The reply body (``status``, ``error``, the command's fields).

        The same question asked while it is in flight shares its answer: 200
        pages hear an event at once and refresh their lists about together;
        the actors answer each list once (the answer is only read)."""
        data = dump_bytes(body)
        key = (command, data)
        flying = self._flying.get(key)
        if flying is None:
            to = ReplyTo(None, None, command, time.monotonic(), ticket=next(self._tickets))
            flying = self._flying[key] = asyncio.ensure_future(
                self._ask(to, decode(Inbound(to, data), self.namespace)))
            flying.add_done_callback(lambda _: self._flying.pop(key, None))
        # Shielded: one page going away (its handler cancelled) must not end the others' question.
        return await asyncio.shield(flying)

    async def now_playing(self) -> dict | None:
        """What plays now, for the live stream; None when not answered ok
        (a standby: the active daemon's streams tell)."""
        body = await self.ask("now_playing", {})
        return public(body) if body.get("status") == "ok" else None

    async def activity(self, hours: int) -> dict:
        """The channel's likes and plays by hour (no NATS command asks this)."""
        to = ReplyTo(None, None, "activity", time.monotonic(), ticket=next(self._tickets))
        return await self._ask(to, ActivityAsked(to, self.namespace, hours))

    async def _ask(self, to: ReplyTo, request: Any) -> dict:
        if isinstance(request, Reply):  # refused by decode: nothing went in
            return request.body
        activation = self.activation()
        if activation is None or not activation.taking_requests:
            return unavailable("this daemon is standby: the active daemon of the namespace answers")
        answer = asyncio.get_running_loop().create_future()
        self._waiting[to.ticket] = answer
        try:
            if not await admit(activation.bus, activation.router, request, lambda: None):
                return unavailable("the daemon is at capacity; retry")
            try:
                async with asyncio.timeout(ASK_SECONDS):  # aiohttp runs each handler as an asyncio task
                    return await answer
            except TimeoutError:
                return unavailable(f"no answer within {ASK_SECONDS:g} s")
        finally:
            self._waiting.pop(to.ticket, None)
