"""Retries of one like request: the original outcome, never a second count.

A like sent with a ``correlation_id`` writes a *request key*
``ns/{ns}/requests/{user}/{correlation_id}`` (TTL ``retry_window_seconds``)
in the same atomic batch as its count, holding the reply it got. A client
that timed out and sends the same request again gets that reply back: from
memory while the daemon runs, from the key after a restart (the start-up scan
loads them, and a create-if-absent that fails on a live request key says the
same). A retry that arrives while the original is still being stored waits
for it and gets the same answer.
"""

from __future__ import annotations

from ..clock import parse_iso
from ..store import StoredEntry, encode_token

RequestKey = tuple[str, str, str]  # namespace, folded user, correlation_id


def request_key(rk: RequestKey) -> str:
    ns, user, cid = rk
    return f"ns/{ns}/requests/{encode_token(user)}/{encode_token(cid)}"


class RequestMemory:
    def __init__(self, window_seconds: float) -> None:
        self.window = window_seconds
        self.outcomes: dict[RequestKey, tuple[float, dict]] = {}  # -> (expires_at, reply fields)
        self.owner: set[RequestKey] = set()  # originals being stored
        self.waiters: dict[RequestKey, list] = {}

    def load(self, ns: str, entry: StoredEntry) -> None:
        v = entry.value or {}
        try:
            rk = (ns, v["user"], v["correlation_id"])
            self.outcomes[rk] = (parse_iso(v["expires_at"]), {"video_id": v["video_id"],
                                                              "like_count": v["like_count"]})
        except (KeyError, TypeError, ValueError):
            pass

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
            self.outcomes[rk] = (now + self.window, outcome)
        return self.waiters.pop(rk, [])

    def evict(self, now: float) -> None:
        for rk in [rk for rk, (exp, _) in self.outcomes.items() if exp <= now]:
            del self.outcomes[rk]
