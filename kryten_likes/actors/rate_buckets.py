"""rate_buckets: one GCRA bucket per user.

Theory of operation
-------------------
GCRA (the generic cell rate algorithm) is a token bucket kept as one number
per user, the *theoretical arrival time* ``tat``. With emission interval
``T = 60 / rate_per_minute`` and tolerance ``tau = T * (burst - 1)``, a like at
``now`` conforms when ``tat - tau <= now``; it then moves ``tat`` to
``max(tat, now) + T``. Otherwise the user waits ``tat - tau - now`` seconds.

A bucket whose ``tat`` is in the past is the same as no bucket at all (a full
bucket), so evicting it loses nothing: that is how the table stays bounded by
the users active within one refill time, not by all users ever seen.

Every valid like takes a token, duplicates included (docs/contract.md); a limited
like is answered here and goes no further.

A second bucket, shared by all users, caps likes per second to protect the
bus. The user's bucket is checked first and a like takes a token from both
or from neither, so one user hammering cannot drain the shared bucket for
everyone: their likes stop at their own bucket.

Memory: only users allowed within their last refill time have a bucket, and
every allowed like also took a shared token, so the table is bounded by
``global_burst + global_rate * interval * burst``, whatever names arrive.
"""

from __future__ import annotations

import math

import attrs

from .. import wire
from ..messages import LikeAllowed, LikeRequested, Tick, UnlikeAllowed, UnlikeRequested


@attrs.frozen
class RatePolicy:
    rate_per_minute: float
    burst: int
    global_per_second: float = math.inf
    global_burst: int = 1

    @property
    def interval(self) -> float:
        return 60.0 / self.rate_per_minute

    @property
    def tolerance(self) -> float:
        return self.interval * (self.burst - 1)


class RateBuckets:
    def __init__(self, policy: RatePolicy) -> None:
        self.policy = policy
        self._tat: dict[str, float] = {}
        self._global_tat = -math.inf
        self._global_interval = 1.0 / policy.global_per_second
        self._global_tolerance = self._global_interval * (policy.global_burst - 1)
        self._last_now = self._fresh_tat = math.nan

    def __len__(self) -> int:
        return len(self._tat)

    def take(self, user: str, now: float) -> float | None:
        """Take one token: None if allowed, else seconds until one is free."""
        tat = self._tat.get(user, now)
        wait = tat - self.policy.tolerance - now
        if wait > 0:
            return wait
        gtat = max(self._global_tat, now)
        gwait = gtat - self._global_tolerance - now
        if gwait > 0:
            return gwait
        self._global_tat = gtat + self._global_interval
        if tat > now:
            self._tat[user] = tat + self.policy.interval
        else:  # a full bucket: one float object for every such user at one ``now``
            if now != self._last_now:
                self._last_now, self._fresh_tat = now, now + self.policy.interval
            self._tat[user] = self._fresh_tat
        return None

    def evict_idle(self, now: float) -> int:
        before = len(self._tat)
        # A new dict, not deletions: a dict never shrinks, and after a burst of
        # 100 000 users the old table would hold its peak size for good.
        self._tat = {u: tat for u, tat in self._tat.items() if tat > now}
        return before - len(self._tat)

    def held_requests(self) -> list:
        return []  # each request it takes is answered or passed on in the same step

    def step(self, msg: object, now: float) -> list:
        if isinstance(msg, (LikeRequested, UnlikeRequested)):
            # An unlike takes a token as a like does, from the same bucket.
            wait = self.take(msg.user, now)
            if wait is not None:
                what = "likes" if isinstance(msg, LikeRequested) else "likes and unlikes"
                # Rounded *up*: a client that waits what it is told must get a token.
                return [wire.error(msg.reply, "rate_limited", f"too many {what}; slow down",
                                   retry_after_seconds=math.ceil(wait * 1000) / 1000)]
            allowed = LikeAllowed if isinstance(msg, LikeRequested) else UnlikeAllowed
            return [allowed(msg.reply, msg.namespace, msg.user, msg.video_id, msg.username)]
        if isinstance(msg, Tick):
            self.evict_idle(now)
            return []
        raise TypeError(f"rate_buckets cannot take {msg!r}")
