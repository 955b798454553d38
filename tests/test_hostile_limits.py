"""Hostile input, limits: the global like cap (``[limits]``) answers the excess
``rate_limited``; the rate-bucket table stays within its documented bound
under a million distinct names (the core, simulated time).
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from conftest import playing

from kryten_likes.actors import rate_buckets
from kryten_likes.actors.rate_buckets import RateBuckets, RatePolicy
from kryten_likes.config import Config, ConfigError
from kryten_likes.messages import LikeAllowed, LikeRequested, ReplyTo, Tick
from kryten_likes.store import LIKES_BUCKET, likes_key
from support.hostile import T0, concurrently, hostile_config


# --- the global cap ---------------------------------------------------------------------------------

def test_global_cap_refuses_the_excess_of_many_users_at_once(harness):
    rate, burst, users = 2.0, 5, 40
    h = harness(hostile_config(limits={"global_likes_per_second": rate, "global_likes_burst": burst}))
    h.change_media("cap-v")
    playing(h, "cap-v")
    replies = concurrently(h, "like", [{"username": f"user-{i}", "correlation_id": f"c{i}"} for i in range(users)])
    assert [r["correlation_id"] for r in replies] == [f"c{i}" for i in range(users)]
    ok = [r for r in replies if r["status"] == "ok"]
    limited = [r for r in replies if r["error"] == "rate_limited"]
    assert (len(ok), len(limited)) == (burst, users - burst), Counter(r["error"] or r["status"] for r in replies)
    assert all(isinstance(r["retry_after_seconds"], float) and r["retry_after_seconds"] > 0 for r in limited)
    assert max(r["like_count"] for r in ok) == burst
    ns = h.config.analytics.namespace
    assert h.request("stats", {"video_id": "cap-v"})["item"]["like_count"] == burst
    assert h.kv(LIKES_BUCKET, likes_key(ns, "cap-v"))["like_count"] == burst
    assert h.request("top_liked", {})["items"][0]["count"] == burst
    # Waiting what it was told gets a refused user a token; the next one waits again.
    refused = [i for i, r in enumerate(replies) if r["error"] == "rate_limited"]
    h.clock.advance(max(replies[i]["retry_after_seconds"] for i in refused))
    r = h.request("like", {"username": f"user-{refused[0]}"})
    assert (r["status"], r["like_count"]) == ("ok", burst + 1), r
    r = h.request("like", {"username": f"user-{refused[1]}"})
    assert r["error"] == "rate_limited" and r["retry_after_seconds"] > 0, r
    assert h.request("stats", {"video_id": "cap-v"})["item"]["like_count"] == burst + 1


def test_global_cap_from_config_reaches_the_daemon():
    lim = hostile_config(limits={"global_likes_per_second": 2.5, "global_likes_burst": 7}).limits
    assert (lim.global_likes_per_second, lim.global_likes_burst) == (2.5, 7)
    with pytest.raises(ConfigError, match="limits.global_likes_per_second"):
        hostile_config(limits={"global_likes_per_second": 0})
    with pytest.raises(ConfigError, match="limits.global_likes_burst"):
        hostile_config(limits={"global_likes_burst": "many"})


# --- the rate-bucket table's memory bound -----------------------------------------------------------

DOCUMENTED_BOUND = "global_burst + global_rate * interval * burst"


def _offer(policy: RatePolicy, names: int, per_second: float, start: float, tick: float = 1.0):
    """Offer ``names`` distinct users one like each at ``per_second`` (simulated
    time from T0 + ``start``), ticking every ``tick`` s as the daemon does;
    the largest table seen at any moment and right after a tick, and the allowed count."""
    rb = RateBuckets(policy)
    step, to = rb.step, ReplyTo(None, None)
    next_tick = T0 + tick
    peak = peak_after_tick = allowed = 0
    for i in range(names):
        now = T0 + start + i / per_second
        while now >= next_tick:
            step(Tick(), next_tick)
            peak_after_tick = max(peak_after_tick, len(rb))
            next_tick += tick
        if type(step(LikeRequested(to, "ns", f"user{i}", None), now)[0]) is LikeAllowed:
            allowed += 1
        size = len(rb)
        if size > peak:
            peak = size
    # Then quiet: every bucket refills and goes.
    step(Tick(), now + policy.interval * policy.burst)
    return peak, peak_after_tick, allowed, len(rb)


def test_rate_bucket_table_stays_within_the_documented_bound_under_a_million_names():
    assert DOCUMENTED_BOUND in " ".join(rate_buckets.__doc__.split())
    c = Config()  # the documented defaults: 6/min, burst 3; 1000/s, burst 2000
    policy = RatePolicy(c.likes.rate_per_minute, c.likes.rate_burst,
                        c.limits.global_likes_per_second, c.limits.global_likes_burst)
    bound = policy.global_burst + policy.global_per_second * policy.interval * policy.burst
    started = time.perf_counter()
    peak, peak_after_tick, allowed, left = _offer(policy, 1_000_000, 20_000.0, start=0.5)
    elapsed = time.perf_counter() - started
    assert peak <= bound and peak_after_tick <= bound, (peak, peak_after_tick, bound)
    # The cap, not the offered rate (which would keep 200,000 names), is what bounds it.
    assert peak >= policy.global_per_second * policy.interval, peak
    assert allowed <= policy.global_burst + policy.global_per_second * 50 + 10, allowed
    assert left == 0
    assert elapsed < 20, elapsed  # ~3-6 s here; a generous bound


def test_rate_bucket_table_bound_with_a_burst_of_one():
    # With rate_burst = 1 the documented bound holds right after each eviction
    # tick; between ticks the table may exceed it by global_rate * tick seconds.
    policy = RatePolicy(6.0, 1, 1000.0, 2000)
    bound = policy.global_burst + policy.global_per_second * policy.interval * policy.burst
    peak, peak_after_tick, _, left = _offer(policy, 250_000, 20_000.0, start=0.5)
    assert peak_after_tick <= bound, (peak_after_tick, bound)
    assert peak <= bound + policy.global_per_second * 1.0, (peak, bound)
    assert left == 0
