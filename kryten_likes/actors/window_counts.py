"""Counts by hour, and the rankings of the rolling windows (day, week, month).

Theory of operation
-------------------
A window count is the number of likes (or plays) whose time falls in the
last 24 hours, 7 days or 30 days (docs/contract-social-web.md). The contract
allows hour granularity, so each counted thing belongs to the UTC hour it
happened in: a document keeps its counts by hour (``hours``: ``{"2026-12-02T21":
3}``, the last 30 days), and the window *day* at hour H is the hours
H-23..H.

Kept here per key (an item, or a curator): its hours, as the documents last
stored say (``replace`` — the writer moves this only after a batch landed,
as the rest of the book). Beside them, each window's running total per key
and a ``Leaderboard`` of it, so a windowed top list is read, not computed:

- a stored document replaces its key's hours: each window's total moves by
  the difference;
- when the clock passes an hour (``advance``, called with the ``now`` of
  every step that reads or writes), the hour that leaves each window is
  subtracted from the keys that had counts in it (``touched`` finds them),
  and the leaderboards of those windows are chosen again (counts fell);
  hours older than the month are dropped.

Before the first ``advance`` there are no totals: the book loads documents
at start without a clock, and the first ``advance`` builds them.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Iterable, Mapping
from functools import lru_cache

from .leaderboard import Entry, Leaderboard

HOUR = 3600
SPANS = {"day": 24, "week": 24 * 7, "month": 24 * 30}
WINDOWS = ("all", *SPANS)
KEPT = SPANS["month"]  # hours a document keeps


def hour_of(t: float) -> int:
    return int(t // HOUR)


@lru_cache(maxsize=2048)
def hour_label(h: int) -> str:
    return time.strftime("%Y-%m-%dT%H", time.gmtime(h * HOUR))


def parse_label(label: str) -> int:
    """``2026-12-02T21`` → hours since the epoch; ValueError if it is not one."""
    if len(label) != 13 or label[4] != "-" or label[7] != "-" or label[10] != "T":
        raise ValueError(label)
    y, m, d, h = int(label[:4]), int(label[5:7]), int(label[8:10]), int(label[11:13])
    if not (1 <= m <= 12 and 1 <= d <= 31 and 0 <= h <= 23):
        raise ValueError(label)
    return calendar.timegm((y, m, d, h, 0, 0)) // HOUR


def parse_hours(raw: object) -> dict[int, int]:
    """A document's ``hours`` field; anything unreadable in it is left out."""
    out: dict[int, int] = {}
    if not isinstance(raw, dict):
        return out
    for label, n in raw.items():
        if type(n) is not int or n <= 0 or not isinstance(label, str):
            continue
        try:
            out[parse_label(label)] = n
        except ValueError:
            continue
    return out


def hours_field(hours: Mapping[int, int]) -> dict[str, int]:
    return {hour_label(h): n for h, n in sorted(hours.items()) if n > 0}


ONE = 1 << 24  # a key with counts in one hour only: ``hour * ONE + count`` (below ONE), not a dict


class WindowCounts:
    def __init__(self, size: int) -> None:
        # Most keys (an item liked or played in one hour of the month) have one
        # hour: those are one int, not a dict (about 200 bytes less a key).
        self.hours: dict[str, int | dict[int, int]] = {}
        self.touched: dict[int, set[str]] = {}
        # Every key's count of an hour, summed: the dashboard's chart of the
        # channel by hour, read without walking the keys.
        self.sums: dict[int, int] = {}
        self.now_hour: int | None = None
        self.totals: dict[str, dict[str, int]] = {w: {} for w in SPANS}
        # Made when first needed: a namespace's book holds four of these, and
        # most namespaces of a busy channel never rank anything (with likes
        # spread over 10 000 namespaces, the leaderboards were most of what a
        # new namespace cost).
        self.size = size
        self._boards: dict[str, Leaderboard] | None = None

    @property
    def boards(self) -> dict[str, Leaderboard]:
        if self._boards is None:
            self._boards = {w: Leaderboard(self.size, self._every(w)) for w in SPANS}
            for board in self._boards.values():
                board.rebuild()  # (from the totals: what they would hold had they been kept from the start)
        return self._boards

    def hours_of(self, key: str) -> dict[int, int]:
        h = self.hours.get(key)
        if h is None:
            return {}
        if type(h) is int:
            return {h // ONE: h % ONE}
        return h

    def _put(self, key: str, hours: Mapping[int, int]) -> None:
        if not hours:
            self.hours.pop(key, None)
        elif len(hours) == 1 and next(iter(hours.values())) < ONE:
            (h, n), = hours.items()
            self.hours[key] = h * ONE + n
        else:
            self.hours[key] = dict(hours)

    def all_hours(self) -> dict[str, dict[int, int]]:
        return {key: self.hours_of(key) for key in self.hours}

    def _every(self, window: str):
        return lambda: self.totals[window].items()

    def _in(self, window: str, h: int) -> bool:
        assert self.now_hour is not None
        return h > self.now_hour - SPANS[window]

    # --- what is stored ------------------------------------------------------------

    def replace(self, key: str, hours: Mapping[int, int]) -> None:
        """The key's document as stored now says these hours."""
        if len(hours) == 1 and self._replace_one_hour(key, hours):
            return
        if self.now_hour is not None:
            oldest = self.now_hour - KEPT
            if any(h <= oldest for h in hours):
                hours = {h: n for h, n in hours.items() if h > oldest}
        old = self.hours_of(key)
        if old == hours:
            return
        if self.now_hour is not None:
            day = self.now_hour - SPANS["day"]
            if all(h > day for h in hours) and all(h > day for h in old):
                # (the usual case: every hour is in the shortest window, so in all three)
                delta = sum(hours.values()) - sum(old.values())
                if delta:
                    for w in SPANS:
                        self._move(w, key, delta)
            else:
                for w in SPANS:
                    delta = sum(n for h, n in hours.items() if self._in(w, h)) - \
                        sum(n for h, n in old.items() if self._in(w, h))
                    if delta:
                        self._move(w, key, delta)
        for h in old:
            if h not in hours:
                self._untouch(key, h)
        for h in hours:
            self.touched.setdefault(h, set()).add(key)
        for h in old.keys() | hours.keys():
            self._add_to_sum(h, hours.get(h, 0) - old.get(h, 0))
        self._put(key, hours)

    def _replace_one_hour(self, key: str, hours: Mapping[int, int]) -> bool:
        """``replace`` of the usual case, the like path's: the key had at most
        one hour, gets one, and both are in the day (so in every window).
        False: not that case, nothing done (a full ``replace`` then)."""
        (h, n), = hours.items()
        old = self.hours.get(key)
        if self.now_hour is None or type(old) is dict or not 0 < n < ONE or h <= self.now_hour - SPANS["day"]:
            return False
        oh, on = (old // ONE, old % ONE) if old is not None else (h, 0)
        if oh <= self.now_hour - SPANS["day"]:
            return False
        delta = n - on
        if oh == h:
            if not delta:
                return True
            self._add_to_sum(h, delta)
        else:
            self._untouch(key, oh)
            self._add_to_sum(oh, -on)
            self._add_to_sum(h, n)
        if old is None or oh != h:
            self.touched.setdefault(h, set()).add(key)
        if delta:
            for w in SPANS:
                self._move(w, key, delta)
        self.hours[key] = h * ONE + n
        return True

    def _untouch(self, key: str, h: int) -> None:
        """The key no longer counts in hour ``h``."""
        keys = self.touched.get(h)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self.touched[h]

    def _add_to_sum(self, h: int, n: int) -> None:
        left = self.sums.get(h, 0) + n
        if left:
            self.sums[h] = left
        else:
            self.sums.pop(h, None)

    def after(self, key: str, at: float, n: int) -> dict[int, int]:
        """The key's hours with ``n`` more at ``at`` (less when negative),
        without the hours the month has left: what its next document holds."""
        hours = dict(self.hours_of(key))
        h = hour_of(at)
        hours[h] = hours.get(h, 0) + n
        if hours[h] <= 0:
            del hours[h]
        if self.now_hour is not None:
            oldest = self.now_hour - KEPT
            hours = {x: c for x, c in hours.items() if x > oldest}
        return hours

    def _move(self, window: str, key: str, delta: int) -> None:
        totals = self.totals[window]
        old = totals.get(key, 0)
        new = old + delta
        if new > 0:
            totals[key] = new
        else:
            totals.pop(key, None)
        if self._boards is not None:  # (else made from the totals when first read)
            self._boards[window].update(key, old, max(new, 0))

    # --- the clock --------------------------------------------------------------------

    def advance(self, now: float) -> None:
        h = hour_of(now)
        if self.now_hour is None:
            self.now_hour = h
            self._build()
        elif h > self.now_hour:
            old, self.now_hour = self.now_hour, h
            for w, span in SPANS.items():
                left = [x for x in self.touched if old - span < x <= h - span]
                for x in left:
                    for key in self.touched[x]:
                        n = self.hours_of(key)[x]
                        totals = self.totals[w]
                        if totals.get(key, 0) > n:
                            totals[key] -= n
                        else:
                            totals.pop(key, None)
                if left and self._boards is not None:
                    self._boards[w].rebuild()
            self._forget_before(h - KEPT)

    def _forget_before(self, oldest: int) -> None:
        for x in [x for x in self.sums if x <= oldest]:
            del self.sums[x]
        for x in [x for x in self.touched if x <= oldest]:
            for key in self.touched.pop(x):
                hours = dict(self.hours_of(key))
                del hours[x]
                self._put(key, hours)

    def _build(self) -> None:
        self._forget_before(self.now_hour - KEPT)
        for w in SPANS:
            totals = self.totals[w] = {}
            for key in self.hours:
                hours = self.hours_of(key)
                n = sum(c for h, c in hours.items() if self._in(w, h))
                if n > 0:
                    totals[key] = n
            if self._boards is not None:
                self._boards[w].rebuild()

    # --- reading ------------------------------------------------------------------------

    def top(self, window: str, limit: int) -> list[Entry]:
        return self.boards[window].top(limit)

    def sum_at(self, hour: int) -> int:
        """All keys' count of one hour (hours since the epoch)."""
        return self.sums.get(hour, 0)

    def count(self, window: str, key: str) -> int:
        return self.totals[window].get(key, 0)

    def keys(self) -> Iterable[str]:
        return self.hours.keys()
