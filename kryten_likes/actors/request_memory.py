"""Retries of one like request: the original outcome, never a second count.

A like sent with a ``correlation_id`` writes a *request key*
``ns/{ns}/requests/{user}/{correlation_id}`` (TTL ``retry_window_seconds``)
in the same atomic batch as its count, holding the reply it got. A client
that timed out and sends the same request again gets that reply back: from
memory while the daemon runs, from the key after a restart (the start-up scan
loads them, and a create-if-absent that fails on a live request key says the
same). A retry that arrives while the original is still being stored waits
for it and gets the same answer.

Memory is bounded: at most ``max_remembered`` outcomes (about 600 bytes
each; at 300 likes/s with a 600 s window that would be ~100 MB unbounded).
Past it the oldest is forgotten first. A retry of a forgotten request goes
on as a new like: its request key still lives in KV, so the create-if-absent
fails and the stored reply is read back; and where even that has expired,
the dedupe claim still stops a second count.
"""

from __future__ import annotations

from .. import wire
from ..clock import parse_iso
from ..messages import ClaimsSettled, LikeReserved
from ..store.values import StoredEntry
from ..store.keys import encode_token

RequestKey = tuple[str, str, str]  # namespace, folded user, correlation_id


def request_key(rk: RequestKey) -> str:
    ns, user, cid = rk
    return f"ns/{ns}/requests/{encode_token(user)}/{encode_token(cid)}"


class RequestMemory:
    def __init__(self, window_seconds: float, max_remembered: int = 100_000) -> None:
        self.window = window_seconds
        self.max_remembered = max_remembered
        # -> (expires_at, reply fields); in the order remembered (dicts keep it),
        # so the first is the one to forget.
        self.outcomes: dict[RequestKey, tuple[float, dict]] = {}
        self.forgotten = 0  # outcomes dropped for room before they expired (for metrics)
        self.owner: set[RequestKey] = set()  # originals being stored
        self.waiters: dict[RequestKey, list] = {}

    def load(self, ns: str, entry: StoredEntry) -> None:
        v = entry.value or {}
        try:
            rk = (ns, v["user"], v["correlation_id"])
            self._remember(rk, parse_iso(v["expires_at"]), {"video_id": v["video_id"],
                                                            "like_count": v["like_count"]})
        except (KeyError, TypeError, ValueError):
            pass

    def recall(self, rk: RequestKey, expires_at: float, outcome: dict) -> None:
        """An outcome found at start in the journal (its key is not stored yet)."""
        self._remember(rk, expires_at, outcome)

    def _remember(self, rk: RequestKey, expires_at: float, outcome: dict) -> None:
        self.outcomes.pop(rk, None)  # a key remembered again moves to the newest end
        while len(self.outcomes) >= self.max_remembered:
            del self.outcomes[next(iter(self.outcomes))]
            self.forgotten += 1
        self.outcomes[rk] = (expires_at, outcome)

    def known(self, rk: RequestKey, now: float) -> dict | None:
        hit = self.outcomes.get(rk)
        if hit is None:
            return None
        if hit[0] <= now:
            del self.outcomes[rk]
            return None
        return hit[1]

    def arrive(self, rk: RequestKey, msg: object) -> bool:
        """True: ``msg`` is the original and goes on; False: it waits for it."""
        if rk in self.owner:
            self.waiters.setdefault(rk, []).append(msg)
            return False
        self.owner.add(rk)
        return True

    def settled(self, rk: RequestKey, outcome: dict | None, now: float) -> list:
        """The original is stored (``outcome``) or failed (None): its waiters."""
        self.owner.discard(rk)
        if outcome is not None:
            self._remember(rk, now + self.window, outcome)
        return self.waiters.pop(rk, [])

    @property
    def whole(self) -> bool:
        """Is every live request key of this life in memory (none forgotten
        for room)? Only then may a like with a ``correlation_id`` skip KV's
        create-if-absent of its key (like_journal.py)."""
        return not self.forgotten

    def retries_answered(self, rk: RequestKey, outcome: dict, now: float) -> list:
        """A like's original is stored with ``outcome``: the answers of the
        retries that waited for it (``settled``, each ``replay``ed)."""
        return [e for waiter in self.settled(rk, outcome, now) for e in replay(waiter, outcome)]

    def evict(self, now: float) -> None:
        for rk in [rk for rk, (exp, _) in self.outcomes.items() if exp <= now]:
            del self.outcomes[rk]


def replay(msg, outcome: dict) -> list:
    """A retry's answer: the original outcome; it counts nothing (a claim it
    reserved goes back to the ledger)."""
    out: list = [wire.ok(msg.reply, **outcome)]
    if isinstance(msg, LikeReserved) and msg.claim is not None:
        out.append(ClaimsSettled(released=(msg.claim,)))
    return out
