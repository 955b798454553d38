"""One writer per namespace: the lease rules, as a pure core.

Any number of daemons may run for one namespace; exactly one, the *active*
one, serves requests and reads events. It holds a **lease**: a KV key
(``ns/{ns}/lease`` in the likes bucket) written with a per-message TTL of
``lease_seconds`` and renewed every third of that with compare-and-set. The
others are *standby*: they read the key, and when it is gone (the holder
died and the TTL ran out) they try to create it; the create-if-absent lets
exactly one of them win.

Time is the holder's own. A renewal counts from when it was *sent*: the
server starts the TTL later than that, so the holder's idea of its lease
(``valid_until``) ends before the server's.

Safety is the fence, not the clock (``store.batch``): on every activation
the new holder moves the fence keys, and every batch a daemon commits
expects the fence as it was when that daemon became active, so a stale one
cannot write a thing, paused or not. So an active daemon does not step down
just because it could not renew for a while (a NATS cluster electing a new
leader for the bucket takes seconds, and stepping down then would only add
an outage: nobody else can take the lease from a bucket without a leader
either). It keeps renewing; when a renewal is refused it reads the key:

- still ours (our last renewal landed after all): carry on;
- gone (it lapsed and nobody took it): create it again and carry on, with
  the same fence (nobody moved it, or our next batch finds out);
- someone else's: step down.

A batch that finds the fence moved makes it step down at once (``FenceMoved``).

The core takes what the shell saw (the key read, a write's outcome, the
time) and says what to do next: read, write, become active, step down.
No I/O, no clock: ``tests/test_lease.py`` drives several against a model KV
with a fake clock.
"""

from __future__ import annotations

import math

import attrs

STANDBY_LOOK_SECONDS = 0.25


@attrs.frozen
class LeaseHeld:
    """What the lease key holds, as read."""

    revision: int
    holder: str


# --- what the shell tells the core


@attrs.frozen
class Tick:
    now: float


@attrs.frozen
class LeaseRead:
    held: LeaseHeld | None  # None: nobody holds it
    now: float


@attrs.frozen
class LeaseWritten:
    """Our create or renewal was stored at ``revision``; it was sent at ``sent_at``."""

    revision: int
    sent_at: float
    now: float


@attrs.frozen
class LeaseRefused:
    """The key was not as expected: someone else holds it (or took it)."""

    now: float


@attrs.frozen
class FenceMoved:
    """A batch of ours was refused because the fence moved: another daemon
    became active."""

    now: float


@attrs.frozen
class LeaseUnanswered:
    """The write's answer was lost (timeout, no connection): it may have landed."""

    now: float


# --- what the core asks of the shell


@attrs.frozen
class ReadLease:
    pass


@attrs.frozen
class WriteLease:
    expected_revision: int  # 0: create only if nobody holds it


@attrs.frozen
class Activate:
    pass


@attrs.frozen
class StepDown:
    reason: str


@attrs.frozen
class ServedBy:
    """Standby: the namespace is served by ``holder`` (said once per holder)."""

    holder: str


@attrs.define
class LeaseRules:
    me: str
    lease_seconds: float
    role: str = "standby"  # or "active"
    revision: int = 0  # of our last stored write, while active
    valid_until: float = -math.inf  # active: our own (early) idea of when the lease ends
    asking: bool = False  # a read or write is out; one at a time
    next_at: float = -math.inf  # when to renew or read next
    last_sent: float = -math.inf  # when our last write was sent (for a write found landed late)
    seen_holder: str | None = None

    @property
    def renew_every(self) -> float:
        return self.lease_seconds / 3

    def step(self, msg: object) -> list:
        if isinstance(msg, Tick):
            return self._tick(msg.now)
        self.asking = False
        if isinstance(msg, LeaseRead):
            return self._read(msg.held, msg.now)
        if isinstance(msg, LeaseWritten):
            return self._written(msg.revision, msg.sent_at, msg.now)
        if isinstance(msg, FenceMoved):
            return self._lost("another daemon moved the fence") if self.role == "active" else []
        if isinstance(msg, (LeaseRefused, LeaseUnanswered)):
            if self.role == "standby" and isinstance(msg, LeaseRefused):
                return self._wait(msg.now)  # someone else's create won
            # Our write was refused or its answer lost: read what the key holds.
            self.asking = True
            return [ReadLease()]
        raise TypeError(f"lease rules cannot take {msg!r}")

    def _tick(self, now: float) -> list:
        if self.asking or now < self.next_at:
            return []
        self.asking = True
        if self.role == "active":
            self.last_sent = now
            return [WriteLease(self.revision)]
        return [ReadLease()]

    def _read(self, held: LeaseHeld | None, now: float) -> list:
        if self.role == "active":
            if held is None:  # it lapsed and nobody took it: take it again
                self.asking = True
                self.last_sent = now
                return [WriteLease(0)]
            if held.holder != self.me:
                return self._lost(f"{held.holder} holds the lease")
            if held.revision != self.revision:  # the renewal we sent last did land
                return self._written(held.revision, self.last_sent, now)
            self.next_at = now  # it did not: renew at the next tick
            return []
        if held is None:
            self.asking = True
            self.last_sent = now
            return [WriteLease(0)]
        if held.holder == self.me:
            # Our create landed though its answer was lost.
            return self._written(held.revision, self.last_sent, now)
        out: list = []
        if held.holder != self.seen_holder:
            self.seen_holder = held.holder
            out.append(ServedBy(held.holder))
        return out + self._wait(now)

    def _written(self, revision: int, sent_at: float, now: float) -> list:
        self.revision = revision
        self.valid_until = sent_at + self.lease_seconds
        self.next_at = now + self.renew_every
        if self.role == "active":
            return []
        if now >= self.valid_until:
            return self._wait(now)  # stored too late to use; it lapses by itself
        self.role = "active"
        self.seen_holder = self.me
        return [Activate()]

    def _wait(self, now: float) -> list:
        # A standby looks again four times a second: it takes over at most
        # lease_seconds + a quarter second after the holder died.
        self.next_at = now + min(self.renew_every, STANDBY_LOOK_SECONDS)
        return []

    def _lost(self, reason: str) -> list:
        self.role = "standby"
        self.valid_until = -math.inf
        self.next_at = -math.inf
        self.seen_holder = None
        return [StepDown(reason)]
