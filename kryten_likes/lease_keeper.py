"""The lease's shell: the lease rules (``lease``) against KV, and the fence.

``LeaseKeeper.run`` ticks the rules a few times a second (a periodic timer,
never synchronisation) and performs what they ask: read the lease key, write
it with a TTL and an expected revision, and, on becoming active, move the
fence of both buckets before anything is served (``store.values.Fence``).
The daemon is told through two callbacks; what serving means is its own
business.

Keys (likes bucket unless noted; docs/kv-schema.md):

- ``ns/{ns}/lease``: the lease, ``{"holder", "host", "pid", "since"}``,
  with a per-message TTL of ``[ha] lease_seconds``;
- ``ns/{ns}/writer`` in each bucket: the fence, ``{"holder", "epoch", "at"}``,
  moved (compare-and-set, epoch + 1) by every new active daemon, and again
  (same epoch) by every restarted counter writer (``move_fence_again``);
- ``ns/{ns}/writer/last`` in both buckets: written by the fence check of
  every batch, it names the daemon that stored last.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable

import anyio
import nats.errors

from .clock import iso
from .lease import (
    Activate, FenceMoved, LeaseHeld, LeaseRead, LeaseRefused, LeaseRules, LeaseUnanswered, LeaseWritten, ReadLease, ServedBy,
    StepDown, Tick, WriteLease,
)
from .store import AtomicBucket, Fence
from .store.values import REVOKED
from .store.batch import BatchRefused

log = logging.getLogger(__name__)


def holder_id() -> str:
    """Who we are, as others see it in the log: host/pid, and a nonce that
    tells two lives of one pid apart."""
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:6]}"


def lease_key(ns: str) -> str:
    return f"ns/{ns}/lease"


def fence_key(ns: str) -> str:
    return f"ns/{ns}/writer"


class FenceNotMoved(Exception):
    """The fence could not be moved: another daemon moved it meanwhile."""


async def move_fence_again(bucket: AtomicBucket) -> None:
    """The fence of ``bucket`` moves once more, for the same holder and epoch
    (compare-and-set at the revision we hold): what was sent expecting the
    old revision and is not stored yet is refused from now on. A restarted
    counter writer (the only actor that writes the buckets) does this to
    each bucket before it reads KV (cast.py), so that nothing its dead
    predecessor sent lands after that read. A journal entry that did would
    be known to no incarnation and counted by a later start (a retry counted
    meanwhile: twice); a batch is refused by its expectations or found by
    the journal's mark, but need not be. Refused (someone else moved it):
    the bucket says so, as a refused write does, and the keeper steps down."""
    held = bucket.fence
    if held is None or held.revoked:
        return
    now = await bucket.read(held.key)
    revision = None
    if now is not None and now.revision == held.revision:
        revision = await bucket.write_if(held.key, json.dumps(now.value or {}).encode(), held.revision)
    if revision is None:
        bucket.fence_moved = True
    elif bucket.fence is held:  # (the keeper may have revoked it meanwhile: that stands)
        bucket.fence = Fence(held.key, revision, held.check_key, held.check_value)


class LeaseKeeper:
    def __init__(self, buckets: list[AtomicBucket], lease_bucket: AtomicBucket, ns: str,
                 lease_seconds: float, *, on_active: Callable[[], Awaitable[None]],
                 on_standby: Callable[[str], Awaitable[None]], me: str | None = None,
                 monotonic: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.buckets = buckets
        self.lease_bucket = lease_bucket
        self.ns = ns
        self.rules = LeaseRules(me or holder_id(), lease_seconds)
        self.on_active = on_active
        self.on_standby = on_standby
        self.monotonic = monotonic
        self.wall = wall
        self.served_by: str | None = None  # standby: who serves the namespace
        self.standby_seen = anyio.Event()  # set when it first finds another daemon serving
        self.epoch = 0
        # The lease key's revision when it was read as absent: a delete marker
        # (a lease given back) has one, and a create must expect it.
        self._absent_revision = 0

    @property
    def me(self) -> str:
        return self.rules.me

    @property
    def role(self) -> str:
        return self.rules.role

    async def run(self) -> None:
        tick = min(0.1, self.rules.lease_seconds / 20)
        while True:
            if any(b.fence_moved for b in self.buckets):
                # Someone else moved the fence: whatever our lease says, we
                # can store nothing, so we are not the active daemon.
                for b in self.buckets:
                    b.fence_moved = False
                await self._perform(self.rules.step(FenceMoved(self.monotonic())))
            await self._perform(self.rules.step(Tick(self.monotonic())))
            await anyio.sleep(tick)  # a periodic timer, not synchronisation

    async def release(self) -> None:
        """A clean stop: give the lease back, so a standby takes over at once
        instead of after the TTL."""
        if self.rules.role != "active":
            return
        try:
            with anyio.fail_after(2):
                await self.lease_bucket.write_if(lease_key(self.ns), b"", self.rules.revision, delete=True, timeout=2)
        except Exception as exc:  # it lapses by itself
            log.info("lease not given back (%s); it lapses in %g s", exc, self.rules.lease_seconds)

    async def _perform(self, effects: list) -> None:
        for e in effects:
            if isinstance(e, ReadLease):
                await self._perform(self.rules.step(await self._read()))
            elif isinstance(e, WriteLease):
                expected = e.expected_revision or self._absent_revision
                await self._perform(self.rules.step(await self._write(expected)))
            elif isinstance(e, Activate):
                await self._activate()
            elif isinstance(e, StepDown):
                log.warning("stepping down to standby for namespace %s: %s", self.ns, e.reason)
                for b in self.buckets:
                    b.fence = REVOKED  # never None: that would be a batch without the check
                await self.on_standby(e.reason)
            elif isinstance(e, ServedBy):
                self.served_by = e.holder
                self.standby_seen.set()
                log.warning("standby: namespace %s is served by %s", self.ns, e.holder)

    async def _read(self) -> object:
        try:
            entry = await self.lease_bucket.read(lease_key(self.ns))
        except (nats.errors.Error, TimeoutError, OSError):
            return LeaseUnanswered(self.monotonic())
        held = None
        if entry is not None and entry.value is not None:
            held = LeaseHeld(entry.revision, str(entry.value.get("holder", "")))
        self._absent_revision = entry.revision if entry is not None and entry.value is None else 0
        return LeaseRead(held, self.monotonic())

    async def _write(self, expected: int) -> object:
        sent = self.monotonic()
        host, pid, _ = (self.me.split("/") + ["", ""])[:3]
        value = json.dumps({"holder": self.me, "host": host, "pid": pid, "since": iso(self.wall()),
                            "schema_version": 1}).encode()
        try:
            revision = await self.lease_bucket.write_if(lease_key(self.ns), value, expected,
                                                        ttl_seconds=self.rules.lease_seconds,
                                                        timeout=max(1.0, self.rules.lease_seconds / 3))
        except BatchRefused as exc:
            log.warning("lease write refused: %s", exc)
            return LeaseUnanswered(self.monotonic())
        except (nats.errors.Error, TimeoutError, OSError, ValueError):
            return LeaseUnanswered(self.monotonic())
        if revision is None:
            return LeaseRefused(self.monotonic())
        return LeaseWritten(revision, sent, self.monotonic())

    async def _activate(self) -> None:
        try:
            for b in self.buckets:
                b.fence = await self._move_fence(b)
        except Exception as exc:  # not safe to serve: give the lease up again
            log.warning("could not move the fence (%s); staying standby", exc)
            await self._perform(self.rules.step(FenceMoved(self.monotonic())))
            return
        log.info("active for namespace %s as %s (fence epoch %d)", self.ns, self.me, self.epoch)
        await self.on_active()

    async def _move_fence(self, bucket: AtomicBucket) -> Fence:
        key = fence_key(self.ns)
        for _ in range(5):
            now = await bucket.read(key)
            epoch = int((now.value or {}).get("epoch", 0)) + 1 if now is not None and now.value else 1
            self.epoch = max(self.epoch, epoch)
            value = json.dumps({"holder": self.me, "epoch": epoch, "at": iso(self.wall()),
                                "schema_version": 1}).encode()
            revision = await bucket.write_if(key, value, now.revision if now is not None else 0)
            if revision is not None:
                check = json.dumps({"holder": self.me, "epoch": epoch}).encode()
                return Fence(key, revision, f"{key}/last", check)
        raise FenceNotMoved(f"{bucket.bucket}: {key} keeps moving")
