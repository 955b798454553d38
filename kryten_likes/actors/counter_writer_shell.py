"""The counter writer's shell: commits run as child tasks, so the mailbox
keeps moving (queries are answered, new likes queue) while a batch is in
flight; each outcome comes back through the mailbox as ``CommitFinished``.
The rules live in ``counter_writer`` (the core); this module only performs
its effects and says, when it dies, whom to answer and what others must hear.

A journal entry (one plain write) is sent at once instead, and its ack
handled by a callback: no task, no request machinery, which a lone like's
answer waited for (alternated at one like in flight: ×0.55 → ×0.61 of the
ceiling). Anything but a plain "stored" (a duplicate, an error, no ack in
time) hands the write to the task way, which sends it again (the stream
drops it by ``Nats-Msg-Id`` if the first landed) and resolves what happened.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel

from ..effects import Commit, PublishEvents, PurgeJournal, PutDocument
from ..event_out import OutStream
from ..messages import (
    ClaimsSettled, CommitFinished, EnqueueRefused, EventsPublished, LikeReserved, ReplyTo, WriterRestarted,
)
from ..routes import is_request
from ..store import AtomicBucket
from ..store.acks import StreamAcks
from .shell import ActorShell

log = logging.getLogger(__name__)


class CounterWriterShell(ActorShell):
    """Runs commits as child tasks, so the mailbox keeps moving (queries are
    answered, new likes queue) while a batch is in flight; each outcome comes
    back through the mailbox as ``CommitFinished``."""

    def __init__(self, *args: Any, buckets: dict[str, AtomicBucket], out: OutStream | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.buckets = buckets
        self.out = out
        self._tg: anyio.abc.TaskGroup | None = None
        self._puts = anyio.CapacityLimiter(4)
        self._acks: StreamAcks | None = None  # the acks of journal writes sent at once
        self._at_once: dict[str, asyncio.TimerHandle] = {}  # their reply subjects -> timeouts, until acked
        self._stored: anyio.Event | None = None  # set once no like is unstored (``all_stored``)

    async def run(self, inbox: Any, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                await super().run(inbox, task_status=task_status)
                tg.cancel_scope.cancel()
        finally:
            # This incarnation is over: what it sent at once is not its to finish
            # (a new writer reads KV; its own groups' ids differ).
            for reply, timer in self._at_once.items():
                timer.cancel()
                if self._acks is not None:
                    self._acks.forget(reply)
            self._at_once.clear()

    async def take(self, msg: Any, now: float) -> None:
        # A lone journal entry's answers go out before the writer counts it
        # (CounterWriter.answers_first); no other message is stepped between.
        answers = self.core.answers_first(msg, now)
        if answers is None:
            await super().take(msg, now)
            return
        self.in_hand.popleft()
        await self.perform(answers)
        await self.perform(self.core.count_answered())

    async def after_batch(self, now: float) -> None:
        await self.perform(self.core.flush(now))
        if self._stored is not None and not self.core.likes.journal.unstored():
            self._stored.set()

    async def all_stored(self) -> None:
        """Until every like answered is in its documents (staged likes are
        stored by the next tick's group at the latest): a stop waits for it,
        so that what other services read in KV is whole once we are gone."""
        while self.core.likes.journal.unstored():
            self._stored = anyio.Event()
            await self._stored.wait()

    async def perform_other(self, effect: Any) -> None:
        assert self._tg is not None
        if isinstance(effect, Commit):
            if not await self._send_at_once(effect):
                self._tg.start_soon(self._commit, effect)
                # Let it publish its batch now, before the effects after it (replies).
                await anyio.lowlevel.checkpoint()
        elif isinstance(effect, PutDocument):
            self._tg.start_soon(self._put, effect)
        elif isinstance(effect, PublishEvents):
            self._tg.start_soon(self._publish, effect)
        elif isinstance(effect, PurgeJournal):
            self._tg.start_soon(self._purge, effect)
        else:
            await super().perform_other(effect)

    async def _send_at_once(self, c: Commit) -> bool:
        """A journal entry out now, its ack by callback (see the module's
        docstring); False: not this one, or not now (the task way then)."""
        bucket = self.buckets[c.bucket]
        w = bucket.single_write(c.writes)
        if c.bucket != "journal" or w is None or not bucket.single_sendable():
            return False
        if self._acks is None:
            self._acks = StreamAcks(bucket.nc)
        acks = self._acks
        try:
            (reply,) = await acks.publish([bucket.single_message(c.group_id, w)])
        except Exception as exc:  # (the connection went meanwhile) the task way waits and resolves
            log.info("journal write %s goes the task way: %s", c.group_id, exc)
            return False

        def timed_out() -> None:
            if self._at_once.pop(reply, None) is not None:
                acks.forget(reply)
                self._by_task(c)

        def answered(ack: asyncio.Future) -> None:
            timer = self._at_once.pop(reply, None)
            if timer is None:
                return  # timed out already, or this incarnation is over
            timer.cancel()
            acks.forget(reply)
            landed = None if ack.cancelled() else bucket.single_landed(c.group_id, w, ack.result())
            if landed is None:
                self._by_task(c)
                return
            try:
                self.router.send(CommitFinished(c.group_id, landed))
            except Exception:
                # (lost if raised in a callback: in a task it ends this incarnation, as in ``_commit``)
                self._by_task(c)

        self._at_once[reply] = asyncio.get_running_loop().call_later(bucket.timeout, timed_out)
        acks.future(reply).add_done_callback(answered)
        return True

    def _by_task(self, c: Commit) -> None:
        assert self._tg is not None
        self._tg.start_soon(self._commit, c)

    async def _commit(self, c: Commit) -> None:
        outcome = await self.buckets[c.bucket].commit(c.group_id, c.writes, c.marker_key)
        self.router.send(CommitFinished(c.group_id, outcome))

    async def _publish(self, p: PublishEvents) -> None:
        """Until the stream has them all: what is stored must be told (its
        like records wait meanwhile, actors/outbox.py)."""
        pause = 0.1
        chained = p.fresh  # (an attempt after a failure may find some of them stored: no chain then)
        while self.out is not None:
            try:
                await self.out.publish(p.events, chained=chained)
                break
            except Exception as exc:  # the bus is away, the stream refused: again, more slowly
                log.warning("events of %s not published yet: %s", p.group_id, exc)
                chained = False
                await anyio.sleep(pause)  # a back-off, not a synchronisation: nothing signals the bus's return
                pause = min(pause * 2, 5.0)
        self.router.send(EventsPublished(p.group_id))

    async def _purge(self, p: PurgeJournal) -> None:
        try:
            await self.buckets["journal"].purge_below(f"ns/{p.namespace}/journal/>", p.revision + 1)
        except Exception as exc:  # stored entries are skipped at start: the next purge takes them too
            log.warning("could not purge the journal: %s", exc)

    async def _put(self, p: PutDocument) -> None:
        try:
            async with self._puts:  # a few at a time: snapshots must not crowd out commits
                await self.buckets[p.bucket].put(p.key, p.value)
        except Exception as exc:  # a ranking snapshot is rewritten on the next tick
            log.warning("could not write %s: %s", p.key, exc)

    def orphans(self) -> tuple[list[ReplyTo], list]:
        # What was drained from the mailbox but not stepped is held too.
        replies = self.core.held_requests() + [m.reply for m in self.in_hand if is_request(m)]
        released = self.core.held_claims() + [m.claim for m in self.in_hand
                                              if isinstance(m, LikeReserved) and m.claim is not None]
        # Refusals are said once by apply: the next writer must still hear them.
        messages: list = [c for c in [*self.core.held_changes(), *self.in_hand] if isinstance(c, EnqueueRefused)]
        if released:
            messages.append(ClaimsSettled(released=tuple(released)))
        messages.append(WriterRestarted())
        # Unstored events need no NAK: the feed reads the stream again from what is stored.
        return replies, messages
