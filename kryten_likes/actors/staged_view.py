"""What the answers add for journalled likes not yet in their documents.

A like answered through the journal (like_journal.py) is in no item
document, window hour or curator total until a batch stores it, a few ms
later; every answer counts it from the start. The book's documents and
windows stay exactly what is stored (the next batch is drafted from them),
and this view holds the difference: per item and per curator, the staged
likes by hour. Queries add it when they answer: a windowed ranking reads a
few more leaders than asked (a staged like can lift only its own item) and
ranks again. Staged likes are few (at most the journal's backlog), so this
costs a handful of dict reads per query.
"""

from __future__ import annotations

from .window_counts import SPANS, WindowCounts, hour_of


class StagedView:
    def __init__(self) -> None:
        self.items: dict[str, dict[int, int]] = {}  # video_id -> hour -> staged likes
        self.curators: dict[str, dict[int, int]] = {}  # folded curator -> hour -> staged credits
        self.given: dict[str, int] = {}  # folded user -> staged likes (a dict: a Counter costs more to make, and every namespace has one)
        # The title a staged like was given, of items whose documents may not
        # hold it yet: an answer names the item from its first like.
        self.titles: dict[str, str] = {}

    def move(self, video_id: str, user: str, curator: str | None, at: float, n: int, title: str | None) -> None:
        h = hour_of(at)
        _add(self.items, video_id, h, n)
        if video_id not in self.items:
            self.titles.pop(video_id, None)
        elif title and n > 0:
            self.titles[video_id] = title
        if curator:
            _add(self.curators, curator, h, n)
        left = self.given.get(user, 0) + n
        if left:
            self.given[user] = left
        else:
            del self.given[user]

    def item_total(self, video_id: str) -> int:
        c = self.items.get(video_id)
        return sum(c.values()) if c else 0

    def credit_total(self, curator: str) -> int:
        c = self.curators.get(curator)
        return sum(c.values()) if c else 0

    def at_hour(self, h: int) -> int:
        return sum(c.get(h, 0) for c in self.items.values())

    def ranked(self, windows: WindowCounts, window: str, limit: int,
               of: dict[str, dict[int, int]]) -> list[tuple[int, str]]:
        """``windows``' top ``limit`` of a rolling ``window`` with the staged
        likes in ``of`` added, as ``(-count, key)``."""
        if not of:
            return windows.top(window, limit)
        counts = {key: -neg for neg, key in windows.top(window, limit + len(of))}
        now_hour = windows.now_hour
        for key, hours in of.items():
            counts[key] = counts.get(key, windows.count(window, key)) + sum(
                n for h, n in hours.items() if now_hour is None or h > now_hour - SPANS[window])
        return sorted((-n, key) for key, n in counts.items() if n > 0)[:limit]


def _add(table: dict[str, dict[int, int]], key: str, h: int, n: int) -> None:
    c = table.get(key)
    if c is None:  # (a plain dict: a Counter made for each new key cost more than the rest of a like's staging)
        if n:
            table[key] = {h: n}
        return
    left = c.get(h, 0) + n
    if left:
        c[h] = left
    else:
        del c[h]
        if not c:
            del table[key]
