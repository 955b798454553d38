"""Acks of JetStream publishes, many at once, matched by reply subject.

Used for the daemon's events (event_out.py: an ack per event, or one per
chain) and for a journal entry the counter writer's shell sends at once
(actors/counter_writer_shell.py). One inbox of ours is subscribed once; each
message that asks for an ack gets a reply subject under it and a future.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anyio

from .headed_publish import publish_headed_many

ACK_TIMEOUT = 5.0


def stored(ack: bytes) -> bool:
    """Did the stream store this message now: not refuse it, not find it had
    it already (a duplicate), not answer with a status (no stream)?"""
    return bool(ack) and b'"error"' not in ack and b'"duplicate"' not in ack


class StreamAcks:
    """Publishes whose acks come to one subscription of ours, matched by the
    reply subject: nats-py's ``js.publish`` is a request per message (an
    inbox token, a future, a ``wait_for`` timer, a parsed ``PubAck``), about
    100 µs of our CPU each; this is about 13 µs (``python -m bench.event_acks``)."""

    def __init__(self, nc: Any) -> None:
        self.nc = nc
        self._inbox = ""
        self._next = 0
        self._pending: dict[str, asyncio.Future] = {}

    async def publish(self, messages: list[tuple[str, bytes, dict[str, str]]],
                      acked: list[bool] | None = None) -> list[str]:
        """The reply subjects their acks will come to (give them to ``wait``
        or ``answers``); ``acked``: which messages ask for one (default all)."""
        if not self._inbox:
            self._inbox = self.nc.new_inbox()
            await self.nc.subscribe(f"{self._inbox}.*", cb=self._answered)
        loop = asyncio.get_running_loop()
        replies = []
        subjects = []
        for i in range(len(messages)):
            if acked is not None and not acked[i]:
                subjects.append("")
                continue
            self._next += 1
            reply = f"{self._inbox}.{self._next}"
            self._pending[reply] = loop.create_future()
            replies.append(reply)
            subjects.append(reply)
        try:
            await publish_headed_many(self.nc, [(s, b, h, r) for (s, b, h), r in zip(messages, subjects)])
        except BaseException:
            for reply in replies:
                del self._pending[reply]
            raise
        return replies

    def future(self, reply: str) -> asyncio.Future:
        """The ack of ``reply`` to come (for a caller that waits by callback;
        it ``forget``s the reply once done with it)."""
        return self._pending[reply]

    def forget(self, reply: str) -> None:
        self._pending.pop(reply, None)

    async def answers(self, replies: list[str]) -> list[bytes]:
        """Each ack as it came, once all came; raises when no stream answered
        or after ``ACK_TIMEOUT``, forgetting them all either way."""
        try:
            with anyio.fail_after(ACK_TIMEOUT):
                out = []
                for reply in replies:
                    data = await self._pending[reply]
                    if not data:  # a status message (503: no stream listens there any more)
                        raise StreamRefused("no stream answered")
                    out.append(data)
                return out
        finally:
            for reply in replies:
                self._pending.pop(reply, None)

    async def wait(self, replies: list[str]) -> None:
        """Until each is acked (a duplicate is); raises on the first refusal,
        as ``answers`` does otherwise."""
        for data in await self.answers(replies):
            if b'"error"' in data:
                err = json.loads(data).get("error") or {}
                raise StreamRefused(f"{err.get('description')} (err_code {err.get('err_code')})")

    async def _answered(self, msg: Any) -> None:
        future = self._pending.get(msg.subject)
        if future is not None and not future.done():
            future.set_result(msg.data)


class StreamRefused(Exception):
    """The stream answered an event with an error."""
