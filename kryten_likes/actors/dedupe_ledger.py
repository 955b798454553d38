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

import math
from collections import deque
from collections.abc import Iterable

from ..messages import Claim, ClaimsSettled, LikeDuplicate, LikeForItem, LikeReserved, Tick

ClaimKey = tuple[str, str, str]  # namespace, video_id, folded user


class LiveClaims:
    """Confirmed claims, item by item: ``(namespace, video_id) → {user: expires_at}``.

    A hot item liked by 100 000 users costs one dict entry per user and no
    more (no key tuple, no expiry heap): expired claims are swept out a whole
    table at a time, at most every ``sweep_every`` seconds. A claim past its
    expiry and not yet swept is never answered as live.
    """

    def __init__(self, claims: Iterable[tuple[ClaimKey, float]] = ()) -> None:
        self._by_item: dict[tuple[str, str], dict[str, float]] = {}
        self._swept_at = -math.inf
        for key, exp in claims:
            self.add(key, exp)

    def add(self, key: ClaimKey, expires_at: float) -> None:
        ns, vid, user = key
        users = self._by_item.get((ns, vid))
        if users is None:
            users = self._by_item[(ns, vid)] = {}
        users[user] = expires_at

    def discard(self, key: ClaimKey) -> None:
        ns, vid, user = key
        users = self._by_item.get((ns, vid))
        if users is not None:
            users.pop(user, None)
            if not users:
                del self._by_item[(ns, vid)]

    def expires_at(self, key: ClaimKey) -> float | None:
        users = self._by_item.get((key[0], key[1]))
        return users.get(key[2]) if users is not None else None

    def sweep(self, now: float, every: float) -> None:
        if now < self._swept_at + every:
            return
        self._swept_at = now
        for item, users in list(self._by_item.items()):
            live = {u: exp for u, exp in users.items() if exp > now}  # a new dict: dicts never shrink
            if not live:
                del self._by_item[item]
            elif len(live) < len(users):
                self._by_item[item] = live

    def __len__(self) -> int:
        return sum(len(users) for users in self._by_item.values())

    def as_dict(self) -> dict[ClaimKey, float]:
        return {(ns, vid, u): exp for (ns, vid), users in self._by_item.items() for u, exp in users.items()}


class DedupeLedger:
    def __init__(self, window_seconds: float, enabled: bool = True,
                 claims: LiveClaims | dict[ClaimKey, float] | None = None) -> None:
        self.window = window_seconds
        self.enabled = enabled
        self.sweep_every = min(60.0, max(1.0, window_seconds / 10))
        self.live = claims if isinstance(claims, LiveClaims) else LiveClaims((claims or {}).items())
        self.reserved: dict[ClaimKey, deque[LikeForItem]] = {}
        self._reservation: dict[ClaimKey, Claim] = {}  # the claim each reservation stands for
        self._last_now = self._last_expiry = math.nan

    @property
    def claims(self) -> dict[ClaimKey, float]:
        """Every claim held, flat (for inspection and tests; built on demand)."""
        return self.live.as_dict()

    def is_claimed(self, key: ClaimKey, now: float) -> bool:
        exp = self.live.expires_at(key)
        return exp is not None and exp > now

    def held_requests(self) -> list:
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
            return [LikeReserved(msg.reply, msg.namespace, msg.media, None, msg.user, msg.username, msg.play_at,
                                 msg.curator)]
        key = (msg.namespace, msg.media.video_id, msg.user)
        if self.is_claimed(key, now):
            return [LikeDuplicate(msg.reply, msg.namespace, msg.media, msg.user)]
        waiters = self.reserved.get(key)
        if waiters is not None:
            waiters.append(msg)
            return []
        return self._reserve(key, msg, now)

    def _reserve(self, key: ClaimKey, msg: LikeForItem, now: float) -> list:
        self.reserved[key] = deque()
        claim = Claim(msg.namespace, msg.media.video_id, msg.user, now, self._expiry_for(now))
        self._reservation[key] = claim
        return [LikeReserved(msg.reply, msg.namespace, msg.media, claim, msg.user, msg.username, msg.play_at,
                                 msg.curator)]

    def _expiry_for(self, now: float) -> float:
        """``now + window``, one float object for every claim made at one ``now``
        (a mailbox batch): 100 000 live claims then share a few thousand floats."""
        if now != self._last_now:
            self._last_now, self._last_expiry = now, now + self.window
        return self._last_expiry

    def _settled(self, msg: ClaimsSettled, now: float) -> list:
        out: list = []
        for c in msg.confirmed:
            key = (c.namespace, c.video_id, c.user)
            if c.expires_at > now:
                self.live.add(key, c.expires_at)
            else:  # KV held a claim that has run out since: nothing to remember
                self.live.discard(key)
            if not self._settles(key, c):
                continue  # a claim of an earlier life; our own reservation settles later
            for w in self.reserved.pop(key, ()):
                out.append(LikeDuplicate(w.reply, w.namespace, w.media, w.user))
        for c in msg.withdrawn:  # unliked: the claim is stored as expired
            self.live.discard((c.namespace, c.video_id, c.user))
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
        self.live.sweep(now, self.sweep_every)
