"""RateBuckets (GCRA, one bucket per user) against a plain token-bucket model.

The model keeps a token count per user, refilled continuously at one token
per emission interval and capped at ``burst``. It counts in exact fractions,
and policies and time steps are chosen so the core's floats are exact too
(intervals of 0.5, 1, 2, 4 and 10 s; steps in quarter seconds): "same
decision" is asserted exactly and ``retry_after`` within 1e-6.
"""

from __future__ import annotations

import time
from fractions import Fraction

import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from kryten_likes.actors.rate_buckets import RateBuckets, RatePolicy
from kryten_likes.clock import FakeClock
from kryten_likes.messages import LikeAllowed, LikeRequested, ReplyTo, Tick
from kryten_likes.effects import Reply

T0 = 1_767_225_600.0  # FakeClock's start


def like(user: str, n: int = 1, video_id: str | None = None) -> LikeRequested:
    return LikeRequested(ReplyTo(f"inbox.{n}", f"c{n}"), "ns1", user, video_id)


# --- take: burst, then limited ----------------------------------------------------------


def test_burst_then_limited_with_retry_after():
    rb = RateBuckets(RatePolicy(rate_per_minute=6.0, burst=3))  # one token per 10 s
    now = T0
    assert [rb.take("alice", now) for _ in range(3)] == [None, None, None]
    # The fourth like at the same instant waits one full interval.
    assert rb.take("alice", now) == pytest.approx(10.0, abs=1e-9)
    # A refused like takes nothing: asking again gives the same answer.
    assert rb.take("alice", now) == pytest.approx(10.0, abs=1e-9)
    assert rb.take("alice", now + 4) == pytest.approx(6.0, abs=1e-9)
    # Another user has a bucket of their own.
    assert rb.take("bob", now) is None


def test_refill_over_time_with_fake_clock():
    clock = FakeClock()
    rb = RateBuckets(RatePolicy(rate_per_minute=60.0, burst=2))  # one token per second
    assert rb.take("u", clock.now()) is None
    assert rb.take("u", clock.now()) is None
    assert rb.take("u", clock.now()) == pytest.approx(1.0)
    clock.advance(0.5)
    assert rb.take("u", clock.now()) == pytest.approx(0.5)
    clock.advance(0.5)
    assert rb.take("u", clock.now()) is None  # exactly one token refilled
    assert rb.take("u", clock.now()) == pytest.approx(1.0)
    clock.advance(10.0)  # long idle: refill is capped at the burst, not 10 tokens
    assert rb.take("u", clock.now()) is None
    assert rb.take("u", clock.now()) is None
    assert rb.take("u", clock.now()) == pytest.approx(1.0)


def test_burst_of_one_is_a_plain_rate():
    rb = RateBuckets(RatePolicy(rate_per_minute=30.0, burst=1))  # every 2 s
    assert rb.take("u", T0) is None
    assert rb.take("u", T0 + 1.0) == pytest.approx(1.0)
    assert rb.take("u", T0 + 2.0) is None


def test_sustained_rate_is_rate_per_minute():
    rb = RateBuckets(RatePolicy(rate_per_minute=6.0, burst=3))
    allowed = 0
    now = T0
    for _ in range(600):  # ten minutes, asking every second
        if rb.take("u", now) is None:
            allowed += 1
        now += 1.0
    # burst (3) + one per 10 s over 599 s of refill (59)
    assert allowed == 3 + 59


# --- step: the messages ---------------------------------------------------------------------


def test_step_forwards_allowed_like_to_playback():
    rb = RateBuckets(RatePolicy(6.0, 1))
    msg = like("alice", 1, video_id="v1")
    assert rb.step(msg, T0) == [LikeAllowed(msg.reply, "ns1", "alice", "v1")]


def test_step_limited_reply_is_the_contract_error():
    rb = RateBuckets(RatePolicy(rate_per_minute=7.0, burst=1))  # interval 8.571428... s
    rb.step(like("alice", 1), T0)
    [reply] = rb.step(like("alice", 2), T0 + 1.0)
    assert isinstance(reply, Reply)
    assert reply.to == ReplyTo("inbox.2", "c2")
    body = reply.body
    assert body["status"] == "error" and body["error"] == "rate_limited"
    assert body["correlation_id"] == "c2"
    assert isinstance(body["retry_after_seconds"], float)
    assert body["retry_after_seconds"] == pytest.approx(60 / 7 - 1.0, abs=1e-3)


def test_waiting_retry_after_seconds_is_enough():
    rb = RateBuckets(RatePolicy(rate_per_minute=7.0, burst=1))  # interval 8.571428... s
    rb.step(like("u", 1), T0)
    [r] = rb.step(like("u", 2), T0 + 1.0)  # real wait 7.5714285..., reported 7.571
    retry = r.body["retry_after_seconds"]
    [again] = rb.step(like("u", 3), T0 + 1.0 + retry)
    assert isinstance(again, LikeAllowed), f"told to wait {retry}s, waited that long, got {again.body}"


def test_refused_like_never_says_retry_after_zero():
    rb = RateBuckets(RatePolicy(rate_per_minute=7.0, burst=1))
    rb.step(like("u", 1), T0)
    [r] = rb.step(like("u", 2), T0 + 8.5712)  # 0.00023 s short of a token
    assert r.body["error"] == "rate_limited"
    assert r.body["retry_after_seconds"] > 0, r.body


def test_every_like_takes_a_token_before_anything_else():
    # Duplicates and likes for the wrong item are decided later; here they still cost.
    rb = RateBuckets(RatePolicy(6.0, 2))
    assert isinstance(rb.step(like("u", 1, "v1"), T0)[0], LikeAllowed)
    assert isinstance(rb.step(like("u", 2, "v1"), T0)[0], LikeAllowed)
    [r] = rb.step(like("u", 3, "other"), T0)
    assert r.body["error"] == "rate_limited"


def test_step_tick_evicts_and_unknown_message_raises():
    rb = RateBuckets(RatePolicy(6.0, 3))
    rb.step(like("a"), T0)
    assert len(rb) == 1
    assert rb.step(Tick(), T0 + 5) == []
    assert len(rb) == 1  # still owes 5 s of refill
    assert rb.step(Tick(), T0 + 10) == []
    assert len(rb) == 0
    with pytest.raises(TypeError):
        rb.step(object(), T0)


# --- eviction is lossless ----------------------------------------------------------------------


def _trace(rb: RateBuckets, user: str, start: float) -> list:
    """What a user gets from a fixed, demanding sequence of likes."""
    out = []
    now = start
    for dt in [0, 0, 0, 0, 0.5, 3, 0, 0, 7, 0, 0, 0, 20, 0, 0, 0, 0]:
        now += dt
        out.append(rb.take(user, now))
    return out


def test_evicted_user_behaves_like_a_new_one():
    policy = RatePolicy(rate_per_minute=12.0, burst=3)  # 5 s
    rb = RateBuckets(policy)
    for _ in range(3):
        rb.take("old", T0)
    later = T0 + 15.0  # exactly full again
    assert rb.evict_idle(later) == 1
    assert len(rb) == 0
    fresh = RateBuckets(policy)
    assert _trace(rb, "old", later) == _trace(fresh, "never-seen", later)


def test_eviction_keeps_buckets_that_still_owe_refill():
    rb = RateBuckets(RatePolicy(rate_per_minute=12.0, burst=3))
    for _ in range(3):
        rb.take("busy", T0)
    rb.take("light", T0)
    assert rb.evict_idle(T0 + 4.0) == 0  # both tats are in the future
    assert rb.evict_idle(T0 + 5.0) == 1  # light: tat = T0 + 5
    assert len(rb) == 1
    # busy still has the state it had: 3 tokens used, 5 s → 1 token back.
    assert rb.take("busy", T0 + 5.0) is None
    assert rb.take("busy", T0 + 5.0) == pytest.approx(5.0)


def test_memory_bound_after_many_users():
    n = 1_000_000
    rb = RateBuckets(RatePolicy(rate_per_minute=6.0, burst=3))
    started = time.perf_counter()
    take = rb.take
    for i in range(n):
        assert take(f"user{i}", T0) is None
    assert len(rb) == n
    assert rb.evict_idle(T0 + 5.0) == 0  # nobody's bucket is full yet
    assert rb.evict_idle(T0 + 10.0) == n
    assert len(rb) == 0
    assert rb._tat == {}
    assert time.perf_counter() - started < 15  # a generous bound; ~1-2 s here


# --- stateful: GCRA vs a token count ------------------------------------------------------------

USERS = ["alice", "bob", "carol"]
INTERVALS = {10.0: 6.0, 4.0: 15.0, 2.0: 30.0, 1.0: 60.0, 0.5: 120.0}  # interval → rate_per_minute


class TokenModel:
    """A token bucket in exact arithmetic: ``level`` tokens, +1 per interval, ≤ burst."""

    def __init__(self, interval: float, burst: int) -> None:
        self.interval = Fraction(interval)
        self.burst = burst
        self.tokens: dict[str, Fraction] = {}
        self.seen_at: dict[str, Fraction] = {}

    def level(self, user: str, now: Fraction) -> Fraction:
        if user not in self.tokens:
            return Fraction(self.burst)
        refilled = self.tokens[user] + (now - self.seen_at[user]) / self.interval
        return min(Fraction(self.burst), refilled)

    def take(self, user: str, now: Fraction) -> Fraction | None:
        """None if a token was taken, else the exact wait for one."""
        level = self.level(user, now)
        self.tokens[user] = level
        self.seen_at[user] = now
        if level >= 1:
            self.tokens[user] = level - 1
            return None
        return (1 - level) * self.interval


class RateBucketsMachine(RuleBasedStateMachine):
    @initialize(interval=st.sampled_from(sorted(INTERVALS)), burst=st.integers(1, 5))
    def setup(self, interval: float, burst: int) -> None:
        self.now = Fraction(T0)  # exact; the core gets float(self.now), also exact
        self.rb = RateBuckets(RatePolicy(INTERVALS[interval], burst))
        self.model = TokenModel(interval, burst)
        self.n = 0

    @rule(user=st.sampled_from(USERS), via_step=st.booleans())
    def like(self, user: str, via_step: bool) -> None:
        expected = self.model.take(user, self.now)
        if via_step:
            self.n += 1
            [effect] = self.rb.step(like(user, self.n), float(self.now))
            if expected is None:
                assert isinstance(effect, LikeAllowed), effect
            else:
                assert effect.body["error"] == "rate_limited", effect
                assert abs(effect.body["retry_after_seconds"] - float(expected)) <= 5e-4  # rounded to ms
        else:
            got = self.rb.take(user, float(self.now))
            if expected is None:
                assert got is None, (user, got)
            else:
                assert got is not None, (user, expected)
                assert abs(got - float(expected)) <= 1e-6, (got, expected)

    @rule(quarters=st.integers(min_value=0, max_value=200))
    def advance(self, quarters: int) -> None:
        self.now += Fraction(quarters, 4)

    @rule()
    def evict(self) -> None:
        before = len(self.rb)
        evicted = self.rb.evict_idle(float(self.now))
        assert len(self.rb) == before - evicted
        # Exactly the full buckets go: those left still owe some refill.
        for user in USERS:
            full = self.model.level(user, self.now) == self.model.burst
            assert full == (user not in self.rb._tat), (user, self.model.level(user, self.now))

    @precondition(lambda self: hasattr(self, "rb"))
    @invariant()
    def table_holds_only_known_users(self) -> None:
        assert set(self.rb._tat) <= set(USERS)


RateBucketsMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestRateBucketsAgainstModel = RateBucketsMachine.TestCase


def test_global_cap_limits_all_users_together_and_spares_the_shared_bucket_from_one_user():
    from kryten_likes.actors.rate_buckets import RateBuckets, RatePolicy
    b = RateBuckets(RatePolicy(rate_per_minute=60.0, burst=1, global_per_second=2.0, global_burst=2))
    now = 1000.0
    assert b.take("a", now) is None and b.take("b", now) is None
    wait = b.take("c", now)  # the shared bucket is empty
    assert wait is not None and abs(wait - 0.5) < 1e-9
    assert b.take("c", now + 0.5) is None
    # One user hammering stops at their own bucket and takes no shared token.
    for _ in range(10):
        assert b.take("a", now + 0.6) is not None
    assert b.take("d", now + 1.0) is None
