"""The lease rules (kryten_likes.lease) against a model KV with a TTL'd key,
a fence and a fake clock: daemons tick, pause, lose answers and die in any
order. Never two daemons active with a lease they believe valid; a write is
stored only from the last daemon that activated (the fence); and a standby
takes over within lease_seconds and a look after the holder died."""

from __future__ import annotations

import itertools

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from kryten_likes.lease import (
    Activate, FenceMoved, LeaseHeld, LeaseRead, LeaseRefused, LeaseRules, LeaseUnanswered, LeaseWritten, ReadLease, ServedBy,
    StepDown, Tick, WriteLease,
)

LEASE = 5.0
_ids = itertools.count(1)


class ModelKv:
    """The lease key (revision, holder, expiry) and the fence epoch."""

    def __init__(self) -> None:
        self.rev = 0
        self.lease: tuple[int, str, float] | None = None  # (revision, holder, expires_at)
        self.fence = 0

    def held(self, now: float) -> LeaseHeld | None:
        if self.lease is not None and self.lease[2] <= now:
            self.lease = None  # the TTL ran out: the server removed it
        return LeaseHeld(self.lease[0], self.lease[1]) if self.lease else None

    def write(self, expected: int, holder: str, now: float) -> int | None:
        current = self.held(now)
        if (current.revision if current else 0) != expected:
            return None
        self.rev += 1
        self.lease = (self.rev, holder, now + LEASE)
        return self.rev


class Daemon:
    def __init__(self) -> None:
        self.rules = LeaseRules(f"d{next(_ids)}", LEASE)
        self.fence: int | None = None  # the fence epoch it activated with
        self.said: list[str] = []


class LeaseMachine(RuleBasedStateMachine):
    @initialize(n=st.integers(2, 3))
    def start(self, n: int) -> None:
        self.now = 0.0
        self.kv = ModelKv()
        self.daemons = [Daemon() for _ in range(n)]
        self.stored: list[int] = []  # fence epochs of stored writes, in order

    def _perform(self, d: Daemon, effects: list, lose: bool, delay: float) -> None:
        for e in effects:
            if isinstance(e, ReadLease):
                reply = LeaseUnanswered(self.now) if lose else LeaseRead(self.kv.held(self.now), self.now)
                self._perform(d, d.rules.step(reply), False, 0.0)
            elif isinstance(e, WriteLease):
                sent = self.now
                rev = self.kv.write(e.expected_revision, d.rules.me, sent)
                self.now += delay  # the answer takes its time
                if lose:
                    reply = LeaseUnanswered(self.now)
                elif rev is None:
                    reply = LeaseRefused(self.now)
                else:
                    reply = LeaseWritten(rev, sent, self.now)
                self._perform(d, d.rules.step(reply), False, 0.0)
            elif isinstance(e, Activate):
                self.kv.fence += 1  # what the shell does first on activation
                d.fence = self.kv.fence
            elif isinstance(e, StepDown):
                d.fence = None
                d.said.append(e.reason)
            elif isinstance(e, ServedBy):
                d.said.append(f"served by {e.holder}")

    @rule(i=st.integers(0, 2), dt=st.floats(0, 3), lose=st.booleans(), delay=st.floats(0, 2))
    def tick(self, i: int, dt: float, lose: bool, delay: float) -> None:
        d = self.daemons[i % len(self.daemons)]
        self.now += dt
        self._perform(d, d.rules.step(Tick(self.now)), lose, delay)

    @rule(i=st.integers(0, 2))
    def write_counts(self, i: int) -> None:
        """A daemon that believes it is active commits a batch: stored only
        if its fence is the current one."""
        d = self.daemons[i % len(self.daemons)]
        if d.fence is not None and d.fence == self.kv.fence:
            self.stored.append(d.fence)

    @rule(i=st.integers(0, 2))
    def kill_and_start_again(self, i: int) -> None:
        self.daemons[i % len(self.daemons)] = Daemon()

    @rule(i=st.integers(0, 2))
    def a_batch_finds_the_fence_moved(self, i: int) -> None:
        d = self.daemons[i % len(self.daemons)]
        if d.fence is not None and d.fence != self.kv.fence:
            self._perform(d, d.rules.step(FenceMoved(self.now)), False, 0.0)

    @invariant()
    def never_two_active_with_a_lease_they_believe_valid(self) -> None:
        believing = [d for d in self.daemons if d.rules.role == "active" and self.now < d.rules.valid_until]
        assert len(believing) <= 1, [(d.rules.me, d.rules.valid_until) for d in believing]

    @invariant()
    def stored_writes_come_from_ever_newer_activations(self) -> None:
        assert self.stored == sorted(self.stored)

    @invariant()
    def an_active_daemon_believes_its_lease_only_as_long_as_the_server_keeps_it(self) -> None:
        for d in self.daemons:
            if d.rules.role == "active" and self.now < d.rules.valid_until:
                held = self.kv.held(self.now)
                assert held is not None and held.holder == d.rules.me


LeaseMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestLeaseRules = LeaseMachine.TestCase


def _run(daemons: list[Daemon], kv: ModelKv, until: float, now: float, step: float = 0.25,
         alive=lambda d: True) -> float:
    while now < until:
        now += step
        for d in daemons:
            if alive(d):
                m = LeaseMachine.__new__(LeaseMachine)
                m.now, m.kv, m.daemons, m.stored = now, kv, daemons, []
                m._perform(d, d.rules.step(Tick(now)), False, 0.0)
    return now


def test_a_standby_takes_over_within_the_lease_after_the_holder_died():
    kv = ModelKv()
    a, b = Daemon(), Daemon()
    now = _run([a, b], kv, until=2.0, now=0.0)
    active = [d for d in (a, b) if d.rules.role == "active"]
    assert len(active) == 1
    standby = b if active[0] is a else a
    assert standby.said == [f"served by {active[0].rules.me}"]
    died_at = now
    dead = active[0]
    while standby.rules.role != "active":
        now = _run([a, b], kv, until=now + 0.25, now=now, alive=lambda d: d is not dead)
        assert now - died_at <= LEASE + 0.25 + 0.25, "no takeover within lease_seconds + one look"
    assert standby.fence == kv.fence == 2


def test_an_active_daemon_keeps_its_fence_while_it_cannot_renew_and_steps_down_only_for_another_holder():
    rules = LeaseRules("me", LEASE)
    assert rules.step(Tick(0.0)) == [ReadLease()]
    assert rules.step(LeaseRead(None, 0.0)) == [WriteLease(0)]
    assert rules.step(LeaseWritten(1, 0.0, 0.1)) == [Activate()]
    assert rules.step(Tick(2.0)) == [WriteLease(1)]
    # The bucket has no leader for a while (a cluster election): no step down.
    assert rules.step(LeaseUnanswered(3.0)) == [ReadLease()]
    assert rules.step(LeaseUnanswered(9.0)) == [ReadLease()]
    assert rules.role == "active"
    # Back: the lease lapsed meanwhile and nobody took it: take it again.
    assert rules.step(LeaseRead(None, 9.5)) == [WriteLease(0)]
    assert rules.step(LeaseWritten(7, 9.5, 9.6)) == []
    assert (rules.role, rules.revision) == ("active", 7)
    # Refused, and the key is someone else's: step down.
    assert rules.step(Tick(12.0)) == [WriteLease(7)]
    assert rules.step(LeaseRefused(12.1)) == [ReadLease()]
    assert rules.step(LeaseRead(LeaseHeld(9, "other"), 12.2)) == [StepDown("other holds the lease")]
    assert rules.role == "standby"


def test_a_moved_fence_makes_an_active_daemon_step_down_at_once():
    rules = LeaseRules("me", LEASE)
    rules.step(Tick(0.0))
    rules.step(LeaseRead(None, 0.0))
    rules.step(LeaseWritten(1, 0.0, 0.1))
    assert rules.step(FenceMoved(0.5)) == [StepDown("another daemon moved the fence")]
    assert rules.step(FenceMoved(0.6)) == []  # a standby has nothing to give up
