"""Window counts (actors/window_counts.py): counts by hour and the day, week
and month rankings, against a plain model; and the counter writer's windowed
top lists with a fake clock (likes, plays, unlikes, hours passing)."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from kryten_likes.actors.window_counts import (
    HOUR, KEPT, SPANS, WindowCounts, hour_label, hour_of, hours_field, parse_hours, parse_label,
)
from kryten_likes.messages import Media, PlayStarted, ReplyTo, TopAsked
from kryten_likes.store import StoredEntry, item_key, likes_key
from support.counter_writer_rig import NS, T0, Rig, reserved

KEYS = ("a", "b", "c", "d")


class WindowMachine(RuleBasedStateMachine):
    """The model: each key's hours as last stored; a window count is the sum
    of the hours inside it, the ranking sorts by (-count, key)."""

    @initialize(start=st.integers(400_000, 500_000), advance_first=st.booleans())
    def start(self, start, advance_first):
        self.w = WindowCounts(size=3)
        self.now = start * HOUR + 1800.0
        self.model: dict[str, dict[int, int]] = {}
        if advance_first:
            self.w.advance(self.now)

    def _hour(self, back: int) -> int:
        return hour_of(self.now) - back

    @rule(key=st.sampled_from(KEYS), back=st.integers(-2, KEPT + 50), n=st.integers(-3, 5))
    def count_at(self, key, back, n):
        """A document written with ``n`` more in an hour ``back`` hours ago."""
        hours = self.w.after(key, (hour_of(self.now) - back) * HOUR, n)
        self.w.replace(key, hours)
        self.model[key] = dict(hours)

    @rule(key=st.sampled_from(KEYS), back=st.integers(-1, 25), n=st.integers(-3, 5))
    def count_today(self, key, back, n):
        """As ``count_at``, in the last day or so: what nearly every like
        stores (``count_at`` alone lands there once in thirty)."""
        self.count_at(key, back, n)

    @rule(key=st.sampled_from(KEYS),
          hours=st.dictionaries(st.integers(-2, KEPT + 50), st.integers(1, 9), max_size=4))
    def stored_elsewhere(self, key, hours):
        """A document read back (a conflict, the start-up scan) with any hours."""
        absolute = {hour_of(self.now) - back: n for back, n in hours.items()}
        self.w.replace(key, absolute)
        self.model[key] = absolute

    @rule(seconds=st.sampled_from([1, 600, HOUR, 5 * HOUR, 24 * HOUR, 7 * 24 * HOUR, 40 * 24 * HOUR]))
    def time_passes(self, seconds):
        self.now += seconds
        self.w.advance(self.now)

    @precondition(lambda self: self.w.now_hour is not None)
    @invariant()
    def windows_match_the_model(self):
        now_hour = hour_of(self.now)
        assert self.w.now_hour == now_hour
        for window, span in SPANS.items():
            want = {k: sum(n for h, n in hours.items() if h > now_hour - span) for k, hours in self.model.items()}
            want = {k: n for k, n in want.items() if n > 0}
            assert {k: self.w.count(window, k) for k in KEYS if self.w.count(window, k)} == want
            ranked = sorted((-n, k) for k, n in want.items())[:3]
            assert self.w.top(window, 3) == ranked

    @precondition(lambda self: self.w.now_hour is not None)
    @invariant()
    def nothing_older_than_the_month_is_kept(self):
        oldest = self.w.now_hour - KEPT
        assert all(h > oldest for hours in self.w.all_hours().values() for h in hours)

    @precondition(lambda self: self.w.now_hour is not None)
    @invariant()
    def the_channel_by_hour_is_the_sum_of_the_keys(self):
        """The dashboard's chart: every key's count of each kept hour, summed."""
        oldest = self.w.now_hour - KEPT
        want: dict[int, int] = {}
        for hours in self.model.values():
            for h, n in hours.items():
                if h > oldest:
                    want[h] = want.get(h, 0) + n
        for h in set(want) | set(range(oldest - 3, self.w.now_hour + 3)):
            assert self.w.sum_at(h) == want.get(h, 0), h


WindowMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestWindowCounts = WindowMachine.TestCase


def test_hour_labels_read_back():
    h = hour_of(T0)
    assert parse_label(hour_label(h)) == h
    assert parse_hours({hour_label(h): 2, "2026-13-01T00": 1, "junk": 3, hour_label(h - 1): "2"}) == {h: 2}
    assert list(hours_field({h: 1, h - 1: 2, h - 2: 0})) == [hour_label(h - 1), hour_label(h)]


def _top(rig: Rig, ranking: str, window: str) -> list[tuple[str, int]]:
    [r] = rig.step(TopAsked(ReplyTo("inbox.t", "k"), NS, ranking, 10, window))
    assert r.body["window"] == window
    return [(i["video_id"], i["count"]) for i in r.body["items"]]


def _like(rig: Rig, n: int, media: Media, user: str) -> None:
    rig.step(reserved(n, media, user, at=rig.now))
    [c] = rig.flush()
    rig.finish(c)


def test_likes_leave_each_window_as_the_hours_pass():
    rig = Rig()
    a, b = Media("a", "yt", "A"), Media("b", "yt", "B")
    _like(rig, 1, a, "u1")
    rig.now += 2 * 24 * HOUR  # two days later
    _like(rig, 2, b, "u1")
    _like(rig, 3, b, "u2")
    assert _top(rig, "liked", "day") == [("b", 2)]
    assert _top(rig, "liked", "week") == [("b", 2), ("a", 1)]
    assert _top(rig, "liked", "all") == [("b", 2), ("a", 1)]
    doc = rig.like_doc("b")
    assert doc["hours"] == {hour_label(hour_of(rig.now)): 2}
    rig.now += 6 * 24 * HOUR  # a's like is 8 days old, b's 6
    assert _top(rig, "liked", "week") == [("b", 2)]
    assert _top(rig, "liked", "month") == [("b", 2), ("a", 1)]
    rig.now += 30 * 24 * HOUR
    assert _top(rig, "liked", "month") == []
    assert _top(rig, "liked", "all") == [("b", 2), ("a", 1)]  # all time is the count, not the hours


def test_plays_count_in_the_windows_and_a_scan_restores_them():
    rig = Rig()
    m = Media("p", "yt", "P")
    for n in range(3):
        rig.step(PlayStarted(NS, m, rig.now))
        [c] = rig.flush()
        rig.finish(c)
        rig.now += 10 * HOUR
    assert _top(rig, "played", "day") == [("p", 2)]
    assert _top(rig, "played", "month") == [("p", 3)]
    stored = rig.kv["analytics"].value(item_key(NS, "p"))
    assert sum(stored["hours"].values()) == 3
    # A daemon started on what KV holds answers the same.
    fresh = Rig()
    fresh.now = rig.now
    fresh.w.book(NS).load(("items", "p"), StoredEntry(1, stored))
    assert _top(fresh, "played", "day") == [("p", 2)]
    likes = {"video_id": "p", "like_count": 1, "hours": {hour_label(hour_of(rig.now) - 30): 1}}
    fresh.w.book(NS).load(("items", "p", "likes"), StoredEntry(2, likes))
    assert _top(fresh, "liked", "day") == []
    assert _top(fresh, "liked", "week") == [("p", 1)]
    assert likes_key(NS, "p").endswith("/likes")


def test_a_key_with_one_hour_is_kept_small_and_reads_back_the_same():
    from kryten_likes.actors.window_counts import ONE

    w = WindowCounts(size=3)
    h = hour_of(T0)
    w.replace("a", {h: 3})
    w.replace("b", {h: ONE + 5})  # too many for the small form
    w.replace("c", {h: 1, h - 1: 2})
    assert isinstance(w.hours["a"], int) and isinstance(w.hours["b"], dict)
    assert w.all_hours() == {"a": {h: 3}, "b": {h: ONE + 5}, "c": {h: 1, h - 1: 2}}
    w.advance(T0)
    assert w.top("day", 3) == [(-(ONE + 5), "b"), (-3, "a"), (-3, "c")]


def test_windows_a_book_makes_while_it_loads_count_each_document_as_it_comes():
    """A start-up scan advances each book's clock before it loads; the play
    and curator windows, made when the first item or curator document comes,
    move with that clock from then on, so their totals are whole once the
    scan ends (built later, at the first advance after start, they grew
    the heap after it was trimmed: 14 MB at a million like records)."""
    from kryten_likes.actors.counter_book import CounterBook

    book = CounterBook(NS)
    book.advance(T0)  # as SnapshotBuilder._new_book does
    h = hour_label(hour_of(T0))
    book.load(("items", "p"), StoredEntry(1, {"video_id": "p", "play_count": 2, "hours": {h: 2}}))
    book.load(("curators", "cu"), StoredEntry(2, {"user": "cu", "username": "Cu", "plays": 3, "hours": {h: 3}}))
    # No further advance: the totals are there already.
    assert book.play_windows.count("day", "p") == 2
    assert book.curators.windows["analytics"].count("week", "cu") == 3
