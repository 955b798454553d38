"""What each curator's plays earned: likes received and plays, all time and
by window (docs/contract-social-web.md, "Curators").

A curator is the user who queued the playlist entry that played
(playlist_entries). Their totals live in two documents of one key,
``ns/{ns}/curators/{user}``: ``likes_received`` in the likes bucket, written
in the same atomic batch as the likes (and unlikes) it counts; ``plays`` in
the analytics bucket, in the batch of the plays. Each keeps its counts by UTC
hour too (``hours``, window_counts), for the day, week and month lists.

Held here as stored (the writer moves it only after a batch landed), with a
leaderboard of ``likes_received`` for the all-time list; curators are few
(the people who queue), so plain dicts do.

Which curator a like credited is remembered for a day (``recent``), for an
unlike to take the credit back in the same batch: an unlike is allowed only
within ``[likes] unlike_window_seconds`` of its like.
"""

from __future__ import annotations

from ..contract import TOP_LIMIT_MAX
from ..store.values import StoredEntry
from .leaderboard import Leaderboard
from .window_counts import WindowCounts, hours_field, parse_hours

KEEP_CREDITS = 86400.0  # how long a like's curator is remembered (for an unlike)
FIELDS = {"likes": "likes_received", "analytics": "plays"}


class CuratorTotals:
    def __init__(self) -> None:
        self.names: dict[str, str] = {}  # folded -> as first seen
        self.counts: dict[str, dict[str, tuple[int, int]]] = {"likes": {}, "analytics": {}}  # (count, revision)
        self.windows = {"likes": WindowCounts(TOP_LIMIT_MAX), "analytics": WindowCounts(TOP_LIMIT_MAX)}
        received = self.counts["likes"]
        self.board = Leaderboard(TOP_LIMIT_MAX, lambda: ((u, n) for u, (n, _) in received.items()))
        self.recent: dict[tuple[str, str], tuple[float, str]] = {}  # (video_id, user) -> (liked at, curator)

    # --- what is stored ------------------------------------------------------------------

    def of(self, bucket: str, user: str) -> tuple[int, int]:
        """``(count, revision)`` of the curator's document in ``bucket``; (0, 0) when none."""
        return self.counts[bucket].get(user, (0, 0))

    def entry(self, bucket: str, user: str) -> StoredEntry | None:
        """The curator's document in ``bucket`` as stored (None: never written)."""
        if user not in self.counts[bucket]:
            return None
        count, revision = self.counts[bucket][user]
        return StoredEntry(revision, {"user": user, "username": self.names.get(user, user), FIELDS[bucket]: count,
                                      "hours": hours_field(self.windows[bucket].hours_of(user)),
                                      "schema_version": 1})

    def name_of(self, user: str) -> str | None:
        return self.names.get(user)

    def set(self, bucket: str, user: str, name: str, count: int, revision: int, hours: dict[int, int]) -> None:
        self.names.setdefault(user, name or user)
        old = self.counts[bucket].get(user, (0, 0))[0]
        self.counts[bucket][user] = (count, revision)
        if bucket == "likes":
            self.board.update(user, old, count)
        self.windows[bucket].replace(user, hours)

    def take(self, bucket: str, user: str, entry: StoredEntry | None) -> None:
        """A document read back (the start-up scan, a conflict)."""
        v = entry.value if entry is not None and entry.value else {}
        n = v.get(FIELDS[bucket])
        self.set(bucket, user, str(v.get("username") or user), n if type(n) is int and n > 0 else 0,
                 entry.revision if entry is not None else 0, parse_hours(v.get("hours")))

    # --- which curator a like credited ----------------------------------------------------------

    def credited(self, video_id: str, user: str, liked_at: float, curator: str) -> None:
        self.recent[(video_id, user)] = (liked_at, curator)
        if len(self.recent) > 1024 and len(self.recent) & (len(self.recent) - 1) == 0:
            self.forget_credits_before(max(t for t, _ in self.recent.values()) - KEEP_CREDITS)

    def credit_of(self, video_id: str, user: str) -> str | None:
        hit = self.recent.get((video_id, user))
        return hit[1] if hit is not None else None

    def withdrawn(self, video_id: str, user: str) -> None:
        self.recent.pop((video_id, user), None)

    def forget_credits_before(self, t: float) -> None:
        self.recent = {k: v for k, v in self.recent.items() if v[0] >= t}

    # --- reading ----------------------------------------------------------------------------------

    def top(self, window: str, limit: int, now: float) -> list[dict]:
        """Highest ``likes_received`` first, ties by folded name (the contract)."""
        if window == "all":
            ranked = self.board.top(limit)
            plays = lambda u: self.of("analytics", u)[0]  # noqa: E731
        else:
            for w in self.windows.values():
                w.advance(now)
            ranked = self.windows["likes"].top(window, limit)
            plays = lambda u: self.windows["analytics"].count(window, u)  # noqa: E731
        return [{"username": self.names.get(u, u), "likes_received": -neg, "plays": plays(u)} for neg, u in ranked]
