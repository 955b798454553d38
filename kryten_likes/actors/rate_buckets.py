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

Every valid like takes a token, duplicates included (contract.md); a limited
like is answered here and goes no further.
"""

from __future__ import annotations

import math

import attrs

from .. import wire
from ..messages import Forward, LikeAllowed, LikeRequested, Tick


@attrs.frozen
class RatePolicy:
    rate_per_minute: float
    burst: int

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

    def __len__(self) -> int:
        return len(self._tat)

    def take(self, user: str, now: float) -> float | None:
        """Take one token: None if allowed, else seconds until one is free."""
        tat = self._tat.get(user, now)
        wait = tat - self.policy.tolerance - now
        if wait > 0:
            return wait
        self._tat[user] = max(tat, now) + self.policy.interval
        return None

    def evict_idle(self, now: float) -> int:
        idle = [u for u, tat in self._tat.items() if tat <= now]
        for u in idle:
            del self._tat[u]
        return len(idle)

    def step(self, msg: object, now: float) -> list:
        if isinstance(msg, LikeRequested):
            # Rounded *up*: a client that waits what it is told must get a token.
            wait = self.take(msg.user, now)
            if wait is not None:
                return [wire.error(msg.reply, "rate_limited", "too many likes; slow down",
                                   retry_after_seconds=math.ceil(wait * 1000) / 1000)]
            return [Forward("playback", LikeAllowed(msg.reply, msg.namespace, msg.user, msg.video_id))]
        if isinstance(msg, Tick):
            self.evict_idle(now)
            return []
        raise TypeError(f"rate_buckets cannot take {msg!r}")
