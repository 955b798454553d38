"""One effect router for the tests' models of several actors.

A core returns messages and effects. The daemon delivers a message to the
mailbox ``routes.MAILBOX`` names for its class and the shell performs an
effect; a model does the same through ``EffectRouter``: a handler per
mailbox name (usually stepping that actor's core at once, or queueing into
a modelled mailbox) and per effect class. What a handler returns (a list of
further effects) joins the end of the queue, as messages join a mailbox.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from kryten_likes.routes import MAILBOX


class EffectRouter:
    def __init__(self, mailboxes: dict[str, Callable], effects: dict[type, Callable]) -> None:
        self.mailboxes = mailboxes
        self.effects = effects

    def handler(self, e: object) -> Callable:
        to = MAILBOX.get(type(e))
        handle = self.mailboxes.get(to) if to is not None else self.effects.get(type(e))
        if handle is None:
            raise AssertionError(f"this model has no place for {e!r} (mailbox {to})")
        return handle

    def route(self, effects: list) -> None:
        queue = deque(effects)
        while queue:
            e = queue.popleft()
            more = self.handler(e)(e)
            if more:
                queue.extend(more)


def to_mailbox(effects: list, name: str) -> list:
    """The messages among ``effects`` for one actor's mailbox."""
    return [e for e in effects if MAILBOX.get(type(e)) == name]
