"""The counter writer's shell: commits run as child tasks, so the mailbox
keeps moving (queries are answered, new likes queue) while a batch is in
flight; each outcome comes back through the mailbox as ``CommitFinished``.
The rules live in ``counter_writer`` (the core); this module only performs
its effects and says, when it dies, whom to answer and what others must hear.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel

from ..messages import (
    ClaimsSettled, Commit, CommitFinished, EnqueueRefused, Forward, LikeReserved, PutDocument, ReplyTo, Rewind,
    WriterRestarted,
)
from ..store import AtomicBucket
from ..store import documents as docs
from .shell import ActorShell

log = logging.getLogger(__name__)


class CounterWriterShell(ActorShell):
    """Runs commits as child tasks, so the mailbox keeps moving (queries are
    answered, new likes queue) while a batch is in flight; each outcome comes
    back through the mailbox as ``CommitFinished``."""

    def __init__(self, *args: Any, buckets: dict[str, AtomicBucket], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.buckets = buckets
        self._tg: anyio.abc.TaskGroup | None = None
        self.rewind: Rewind | None = None
        self._puts = anyio.CapacityLimiter(4)

    async def run(self, inbox: Any, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            await super().run(inbox, task_status=task_status)
            tg.cancel_scope.cancel()

    async def after_batch(self, now: float) -> None:
        await self.perform(self.core.flush(now))

    async def perform_other(self, effect: Any) -> None:
        assert self._tg is not None
        if isinstance(effect, Commit):
            self._tg.start_soon(self._commit, effect)
            # Let it publish its batch now, before the effects after it (replies).
            await anyio.lowlevel.checkpoint()
        elif isinstance(effect, PutDocument):
            self._tg.start_soon(self._put, effect)
        else:
            await super().perform_other(effect)

    async def _commit(self, c: Commit) -> None:
        outcome = await self.buckets[c.bucket].commit(c.group_id, c.writes, c.marker_key)
        self.router.send("counter_writer", CommitFinished(c.group_id, outcome))

    async def _put(self, p: PutDocument) -> None:
        try:
            async with self._puts:  # a few at a time: snapshots must not crowd out commits
                await self.buckets[p.bucket].put(p.key, p.value)
        except Exception as exc:  # a ranking snapshot is rewritten on the next tick
            log.warning("could not write %s: %s", p.key, exc)

    def orphans(self) -> tuple[list[ReplyTo], list[Forward]]:
        likes, _plays = self.core.held()  # plays come again: the feed reads the stream again
        # What was drained from the mailbox but not stepped is held too.
        likes += [m for m in self.in_hand if isinstance(m, LikeReserved)]
        replies = [m.reply for m in self.in_hand
                   if isinstance(getattr(m, "reply", None), ReplyTo) and not isinstance(m, LikeReserved)]
        replies += [l.reply for l in likes]
        forwards: list[Forward] = []
        released = tuple(l.claim for l in likes if l.claim is not None)
        book = self.core.book(self.core.namespace)
        stored = docs.media_of_now_playing(book.now_playing.value if book.now_playing is not None else None)
        media, started = stored if stored is not None else (None, 0.0)
        self.rewind = Rewind(media, started, self.core.last_event_seq)  # sent with the new epoch
        replies += [f.reply for f in self.core.held_applies()]
        replies += [a.reply for a in self.core.held_adjusts()]
        # Refusals are said once by apply: the next writer must still hear them.
        forwards += [Forward("counter_writer", c) for c in self.core.held_changes()
                     if isinstance(c, EnqueueRefused)]
        forwards += [Forward("counter_writer", m) for m in self.in_hand if isinstance(m, EnqueueRefused)]
        waiters = self.core.held_waiters()
        replies += [w.reply for w in waiters]
        released += tuple(w.claim for w in waiters if isinstance(w, LikeReserved) and w.claim is not None)
        if released:
            forwards.append(Forward("dedupe_ledger", ClaimsSettled(released=released)))
        forwards.append(Forward("apply", WriterRestarted()))
        # Unstored events need no NAK: the feed reads the stream again from what is stored.
        return replies, forwards
