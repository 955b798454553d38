"""dedupe_ledger: who has liked what within the window.

Theory of operation
-------------------
The ledger is the only writer of dedupe keys, so while the daemon runs its
memory is the truth (rebuilt from the keys under ``ns/{ns}/dedupe/`` at
start). For a like of (namespace, item, user) it answers one of:

- a live claim exists            → ``LikeDuplicate`` (counter_writer answers with the count);
- a reservation is in flight     → the like waits behind it; it is a duplicate
  if the reservation becomes a claim, and takes its place if it is released;
- otherwise                      → reserve, and ``LikeReserved`` with a ``Claim``.

The counter writer stores the claim and the count in one atomic batch and
then settles the reservation (``ClaimsSettled``). The KV create-if-absent in
that batch, not this memory, is what finally makes two likes impossible: if
the ledger was wrong (a restart raced a write), the batch fails and the
writer answers ``duplicate`` from what KV holds.

With dedupe off every like is forwarded without a claim.
"""

from __future__ import annotations

import heapq
from collections import deque

from ..messages import Claim, ClaimsSettled, Forward, LikeDuplicate, LikeForItem, LikeReserved, Tick

ClaimKey = tuple[str, str, str]  # namespace, video_id, folded user


class DedupeLedger:
    def __init__(self, window_seconds: float, enabled: bool = True,
                 claims: dict[ClaimKey, float] | None = None) -> None:
        self.window = window_seconds
        self.enabled = enabled
        self.claims: dict[ClaimKey, float] = dict(claims or {})  # key → expires_at
        self._expiry: list[tuple[float, ClaimKey]] = [(exp, k) for k, exp in self.claims.items()]
        heapq.heapify(self._expiry)
        self.reserved: dict[ClaimKey, deque[LikeForItem]] = {}
        self._reservation: dict[ClaimKey, Claim] = {}  # the claim each reservation stands for

    def is_claimed(self, key: ClaimKey, now: float) -> bool:
        exp = self.claims.get(key)
        return exp is not None and exp > now

    def in_hand(self) -> list:
        """Likes waiting behind a reservation: lost with this actor if it dies."""
        return [w.reply for waiters in self.reserved.values() for w in waiters]

    def step(self, msg: object, now: float) -> list:
        if isinstance(msg, LikeForItem):
            return self._like(msg, now)
        if isinstance(msg, ClaimsSettled):
            return self._settled(msg, now)
        if isinstance(msg, Tick):
            self.expire(now)
            return []
        raise TypeError(f"dedupe_ledger cannot take {msg!r}")

    def _like(self, msg: LikeForItem, now: float) -> list:
        if not self.enabled:
            return [Forward("counter_writer", LikeReserved(msg.reply, msg.namespace, msg.media, None, msg.user))]
        key = (msg.namespace, msg.media.video_id, msg.user)
        if self.is_claimed(key, now):
            return [Forward("counter_writer", LikeDuplicate(msg.reply, msg.namespace, msg.media, msg.user))]
        waiters = self.reserved.get(key)
        if waiters is not None:
            waiters.append(msg)
            return []
        return self._reserve(key, msg, now)

    def _reserve(self, key: ClaimKey, msg: LikeForItem, now: float) -> list:
        self.reserved[key] = deque()
        claim = Claim(msg.namespace, msg.media.video_id, msg.user, now, now + self.window)
        self._reservation[key] = claim
        return [Forward("counter_writer", LikeReserved(msg.reply, msg.namespace, msg.media, claim, msg.user))]

    def _settled(self, msg: ClaimsSettled, now: float) -> list:
        out: list = []
        for c in msg.confirmed:
            key = (c.namespace, c.video_id, c.user)
            self.claims[key] = c.expires_at
            heapq.heappush(self._expiry, (c.expires_at, key))
            if not self._settles(key, c):
                continue  # a claim of an earlier life; our own reservation settles later
            for w in self.reserved.pop(key, ()):
                out.append(Forward("counter_writer", LikeDuplicate(w.reply, w.namespace, w.media, w.user)))
        for c in msg.released:
            key = (c.namespace, c.video_id, c.user)
            if not self._settles(key, c):
                continue
            waiters = self.reserved.pop(key, None)
            if waiters:
                first = waiters.popleft()
                out.extend(self._reserve(key, first, now))
                self.reserved[key].extend(waiters)
        return out

    def _settles(self, key: ClaimKey, c: Claim) -> bool:
        """Is ``c`` the reservation we hold for ``key``? (Then it is settled now.)"""
        mine = self._reservation.get(key)
        # liked_at identifies a reservation: a confirmation may carry the
        # expiry KV holds (a duplicate found there), not the one we proposed.
        if mine is None or mine.liked_at != c.liked_at:
            return False
        del self._reservation[key]
        return True

    def expire(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            exp, key = heapq.heappop(self._expiry)
            if self.claims.get(key) == exp:
                del self.claims[key]
