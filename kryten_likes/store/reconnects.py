"""Answers lost with a connection, given up on as soon as it is back.

A request whose reply the server sent while the connection was down never
gets that reply: nats-py reconnects at once and subscribes again, yet the
waiting request sits out its whole timeout (5 s for an atomic batch) before
anyone looks. Waits that are registered here are cancelled the moment nats-py
reports the reconnect, so the batch is resolved (its marker read) right away.
Giving up early is always safe: an unknown outcome is resolved, never guessed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import anyio


class Reconnects:
    def __init__(self) -> None:
        self._waits: set[anyio.CancelScope] = set()
        self.count = 0
        self.last_at: float | None = None  # time.monotonic() of the last reconnect

    @contextmanager
    def given_up_on_reconnect(self) -> Iterator[anyio.CancelScope]:
        """A scope around a wait for an answer; ``cancelled_caught`` tells
        that the connection came back meanwhile and the answer is lost."""
        scope = anyio.CancelScope()
        self._waits.add(scope)
        try:
            with scope:
                yield scope
        finally:
            self._waits.discard(scope)

    async def reconnected(self) -> None:
        """nats-py's ``reconnected_cb``."""
        self.count += 1
        self.last_at = time.monotonic()
        for scope in list(self._waits):
            scope.cancel()
