"""The first ``size`` items of a ranking, kept up to date one change at a time.

A query asks for at most 100 items (docs/contract.md), and counts only grow
(a like or a play adds one; nothing takes one away), so an item outside the
leaders can enter only by growing past the last of them: holding the leaders
alone is exact, and costs nothing per item that is not among them. If a
count ever falls (another writer stored less than we knew), the leaders are
chosen again from every count.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections.abc import Callable, Iterable

Entry = tuple[int, str]  # (-count, video_id): highest first, ties by video_id (docs/contract.md)


class Leaderboard:
    def __init__(self, size: int, every_count: Callable[[], Iterable[tuple[str, int]]]) -> None:
        self.size = size
        self._every_count = every_count
        self.leaders: list[Entry] = []
        self._count: dict[str, int] = {}  # the leaders' counts

    def update(self, video_id: str, old: int, new: int) -> None:
        if old == new:
            return
        held = self._count.get(video_id)
        if held is not None:
            if new < held and len(self.leaders) == self.size:
                self.rebuild()  # someone outside may now rank above it
                return
            del self.leaders[bisect_left(self.leaders, (-held, video_id))]
            del self._count[video_id]
        if new > 0:
            entry = (-new, video_id)
            if len(self.leaders) < self.size or entry < self.leaders[-1]:
                insort(self.leaders, entry)
                self._count[video_id] = new
                if len(self.leaders) > self.size:
                    _, dropped = self.leaders.pop()
                    del self._count[dropped]

    def rebuild(self) -> None:
        self.leaders = heapq.nsmallest(self.size, ((-n, vid) for vid, n in self._every_count() if n > 0))
        self._count = {vid: -neg for neg, vid in self.leaders}

    def top(self, limit: int) -> list[Entry]:
        return self.leaders[:limit]
