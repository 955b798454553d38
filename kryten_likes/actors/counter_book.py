"""What the counter writer knows of one namespace: every counter document as
last stored (value and revision) and the rankings kept beside them.

Only durable facts enter a book: the writer applies a change after its batch
has landed, so queries answered from here never show a count that a crash
could take back.
"""

from __future__ import annotations

from functools import cached_property
from collections.abc import Iterable

from ..store.values import StoredEntry
from ..contract import TOP_LIMIT_MAX
from ..store.documents import zero_global
from .book_loading import load_key
from .item_table import ItemTable
from .like_index import LikeIndex
from .leaderboard import Leaderboard
from .curator_totals import CuratorTotals
from .staged_view import StagedView
from .window_counts import HOUR, WindowCounts, hour_label, hour_of, hours_field, parse_hours

RANKED = TOP_LIMIT_MAX  # a leaderboard holds what the largest query may ask for


class CounterBook:
    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.table = ItemTable()  # every item's item and likes documents
        self.playlists: dict[str, StoredEntry] = {}
        self.global_doc: StoredEntry | None = None
        self.now_playing: StoredEntry | None = None
        self.expectations: StoredEntry | None = None  # queue events we expect (analytics_changes)
        self.records = LikeIndex(namespace)  # who liked what (like records) and each user's totals
        self._changes = 0  # moves with every document the book takes (titles included)
        self._answers: dict[tuple[str, int], tuple[int, list[dict]]] = {}
        t = self.table
        # Likes journalled (their records stored, ``staged``) and not yet in
        # their item's document: counted in every answer, not in the document.
        self.staged_likes: dict[str, int] = {}
        self.staged = StagedView()  # the same likes by hour, item and curator, and users' (staged_view.py)
        # This namespace's daemon's journal as the start-up scan found it: the
        # mark up to which its entries are stored (actors/like_journal.py); the
        # entries, and the unstored ones for the writer, are below.
        self.journal_mark: StoredEntry | None = None
        self.top_liked = Leaderboard(RANKED, lambda: ((vid, n + self.staged_likes.get(vid, 0))
                                                      for vid, n in t.every(t.like_count)))
        # Counts by hour of the last 30 days, from the documents' ``hours``
        # (window_counts): the day, week and month rankings.
        self.like_windows = WindowCounts(RANKED)
        # Read at start for the writer's republish (actors/outbox.py), then dropped.
        self.event_marks: dict[str, int] = {}
        self.recent_n = 0  # records the scan offered to ``recent_records`` (book_loading.py)
        # The rest (plays, curators, what start-up found) is made when first
        # needed, below.

    # --- made when first needed ----------------------------------------------------
    # A namespace that is only ever liked (a side room; the bench's likes
    # spread over 10 000 namespaces) never makes these: each is ~10 µs to
    # make and objects the collector walks for as long as the book lives.

    @cached_property
    def top_played(self) -> Leaderboard:
        t = self.table
        board = Leaderboard(RANKED, lambda: t.every(t.play_count))
        board.rebuild()  # (what it would hold had it been kept from the start)
        return board

    @cached_property
    def play_windows(self) -> WindowCounts:
        return self._on_the_clock(WindowCounts(RANKED))

    @cached_property
    def curators(self) -> CuratorTotals:
        made = CuratorTotals()  # likes received and plays of whoever queued what played
        for w in made.windows.values():
            self._on_the_clock(w)
        return made

    def _on_the_clock(self, windows: WindowCounts) -> WindowCounts:
        """Windows made once the book's clock runs move with it from the
        start, so the documents a start-up scan loads next keep their totals
        as they come. Left for their first advance, they were built from
        every item's hours after the start-up heap had been frozen and
        trimmed: 14 MB more at a million like records (stop 31)."""
        hour = self.like_windows.now_hour  # (the book's clock: ``advance`` moves these first)
        if hour is not None:
            windows.advance(hour * HOUR)
        return windows

    @cached_property
    def requests(self) -> list[StoredEntry]:
        return []  # request keys found at start, handed to the writer's RequestMemory

    @cached_property
    def journal_entries(self) -> list[tuple[int, dict]]:
        return []  # (revision, value) of each journal entry found at start

    @cached_property
    def staged_records(self) -> list[tuple[int, dict]]:
        return []  # those not stored yet, for the writer

    @cached_property
    def recent_records(self) -> list[tuple[int, int, dict]]:
        return []  # a heap: (revision, n, record), the newest records the scan found

    # --- loading -------------------------------------------------------------

    def load(self, parts: tuple[str, ...], entry: StoredEntry | None) -> None:
        """Take one scanned key (split by ``store.split_key``) of this namespace;
        ``entry`` None: the key was deleted while the scan ran (book_loading.py)."""
        load_key(self, parts, entry)

    # --- reading ---------------------------------------------------------------

    def like_count(self, video_id: str) -> int:
        """Every like answered ``ok`` (staged ones included)."""
        return self.table.likes_of(video_id) + self.staged_likes.get(video_id, 0)

    def likes_given(self, user: str) -> int:
        """The user's counted likes minus unlikes (staged ones included)."""
        return self.records.totals(user)[0] + self.staged.given.get(user, 0)

    def likes_received(self, user: str) -> int:
        return self.curators.of("likes", user)[0] + self.staged.credit_total(user)

    def stage(self, likes: Iterable[tuple[str, str, str | None, float, str | None]], n: int,
              *, ranked: bool = True) -> dict[str, int]:
        """Journalled likes ``(video_id, user, curator, at, title)`` counted (``n`` 1),
        or now stored in the documents (-1). An item's count moves once for
        all its likes (a hot item's entry holds hundreds: one leaderboard move).
        ``ranked`` False: the leaderboard is left as it was, for the landing
        that stores them to move once (``set_likes_written``'s ``unstaged``,
        else ``rank_unstaged``). Returns each item's change."""
        per_item: dict[str, int] = {}
        for video_id, user, curator, at, title in likes:
            per_item[video_id] = per_item.get(video_id, 0) + n
            self.staged.move(video_id, user, curator, at, n, title)
        for video_id, k in per_item.items():
            self.stage_likes(video_id, k, ranked)
        return per_item

    def top_curators(self, window: str, limit: int, now: float) -> list[dict]:
        c = self.curators
        if not self.staged.curators:
            return c.top(window, limit, now)
        if window == "all":
            counts = {u: -neg for neg, u in c.board.top(limit + len(self.staged.curators))}
            for u in self.staged.curators:
                counts[u] = counts.get(u, c.of("likes", u)[0]) + self.staged.credit_total(u)
            ranked = sorted((-n, u) for u, n in counts.items() if n > 0)[:limit]
            plays = lambda u: c.of("analytics", u)[0]  # noqa: E731
        else:
            for w in c.windows.values():
                w.advance(now)
            ranked = self.staged.ranked(c.windows["likes"], window, limit, self.staged.curators)
            plays = lambda u: c.windows["analytics"].count(window, u)  # noqa: E731
        return [{"username": c.names.get(u, u), "likes_received": -neg, "plays": plays(u)} for neg, u in ranked]

    def stored_like_count(self, video_id: str) -> int:
        """The item's likes document's count: what a compare-and-set of it builds on."""
        return self.table.likes_of(video_id)

    def stage_likes(self, video_id: str, n: int, ranked: bool = True) -> None:
        """``n`` journalled likes of the item counted (or, negative, now in its document)."""
        staged = self.staged_likes.get(video_id, 0)
        old = self.table.likes_of(video_id) + staged
        if staged + n:
            self.staged_likes[video_id] = staged + n
        elif staged:
            del self.staged_likes[video_id]
        self._changes += 1
        if ranked:
            self.top_liked.update(video_id, old, old + n)

    def rank_unstaged(self, video_id: str, unstaged: int) -> None:
        """The leaderboard learns of ``unstaged`` likes left staged by
        ``stage(..., ranked=False)`` whose document this book did not take."""
        now = self.like_count(video_id)
        self.top_liked.update(video_id, now + unstaged, now)

    def play_count(self, video_id: str) -> int:
        return self.table.plays_of(video_id)

    def title(self, video_id: str) -> str | None:
        return self.table.title(video_id) or self.staged.titles.get(video_id)

    def global_value(self) -> dict:
        g = self.global_doc
        return dict(g.value) if g is not None and g.value else zero_global()

    def advance(self, now: float) -> None:
        """The windows follow the clock: hours leave them as it passes."""
        self.like_windows.advance(now)
        made = self.__dict__  # (a part not made yet has nothing to move: its first advance builds it)
        if "play_windows" in made:
            self.play_windows.advance(now)
        if "curators" in made:
            for w in self.curators.windows.values():
                w.advance(now)

    def top_in(self, ranking: str, window: str, limit: int, now: float) -> list[dict]:
        """The first ``limit`` of a ranking over a rolling window (``day``,
        ``week``, ``month``; ``all`` is ``top``)."""
        if window == "all":
            return self.top(ranking, limit)
        self.advance(now)
        if ranking == "liked":
            ranked = self.staged.ranked(self.like_windows, window, limit, self.staged.items)
        else:
            ranked = self.play_windows.top(window, limit)
        return [{"video_id": vid, "title": self.title(vid), "count": -neg} for neg, vid in ranked]

    def activity(self, hours: int, now: float) -> list[dict]:
        """Likes and plays of the whole channel in each of the last ``hours``
        UTC hours, oldest first, the hour of ``now`` last."""
        self.advance(now)
        last = hour_of(now)
        return [{"hour": hour_label(h), "likes": self.like_windows.sum_at(h) + self.staged.at_hour(h),
                 "plays": self.play_windows.sum_at(h)}
                for h in range(last - hours + 1, last + 1)]

    def likes_entry(self, video_id: str) -> StoredEntry | None:
        """An item's likes document as stored, ``hours`` included."""
        return self._with_hours(self.table.likes(video_id), self.like_windows, video_id)

    def item_entry(self, video_id: str) -> StoredEntry | None:
        """An item's document as stored, ``hours`` (of plays) included."""
        return self._with_hours(self.table.item(video_id), self.play_windows, video_id)

    @staticmethod
    def _with_hours(entry: StoredEntry | None, windows: WindowCounts, key: str) -> StoredEntry | None:
        hours = windows.hours_of(key)
        if entry is None or entry.value is None or not hours:
            return entry
        return StoredEntry(entry.revision, {**entry.value, "hours": hours_field(hours)})

    def top(self, ranking: str, limit: int) -> list[dict]:
        """The first ``limit`` of a ranking. The answer is kept until the book
        changes: between two likes a channel's bots may ask many times. The
        list is shared: callers must not change it."""
        key = (ranking, limit)
        hit = self._answers.get(key)
        if hit is not None and hit[0] == self._changes:
            return hit[1]
        ranked = self.top_liked if ranking == "liked" else self.top_played
        items = [{"video_id": vid, "title": self.title(vid), "count": -neg} for neg, vid in ranked.top(limit)]
        if len(self._answers) >= 16:
            self._answers.clear()
        self._answers[key] = (self._changes, items)
        return items

    def item_stats(self, video_id: str) -> dict:
        item = self.table.item(video_id)
        v = item.value if item is not None and item.value else {}
        return {
            "video_id": video_id,
            "title": self.title(video_id),
            "play_count": int(v.get("play_count", 0)),
            "queue_count": int(v.get("queue_count", 0)),
            "like_count": self.like_count(video_id),
            "last_played_at": v.get("last_played_at"),
            "last_queued_at": v.get("last_queued_at"),
            "duration_seconds": v.get("duration_seconds"),
        }

    # --- applying durable changes ------------------------------------------------

    def set_likes(self, video_id: str, entry: StoredEntry | None) -> None:
        self._changes += 1
        old = self.like_count(video_id)
        self.table.set_likes(video_id, entry)
        self.top_liked.update(video_id, old, self.like_count(video_id))
        self.like_windows.replace(video_id, parse_hours(entry.value.get("hours")) if entry and entry.value else {})

    def set_likes_written(self, video_id: str, revision: int, like_count: int, updated_at: float,
                          title: str | None, hours: dict[int, int], unstaged: int = 0) -> None:
        """A likes document the writer itself just stored (the like path's fast way).
        ``unstaged``: its staged likes, just taken out unranked (``stage``):
        they were in the count the leaderboard holds, and are in the
        document's now, so a group of staged likes alone moves no ranking."""
        self._changes += 1
        staged = self.staged_likes.get(video_id, 0)
        old = self.table.likes_of(video_id) + staged + unstaged
        self.table.set_likes_written(video_id, revision, like_count, updated_at, title)
        self.top_liked.update(video_id, old, like_count + staged)
        self.like_windows.replace(video_id, hours)

    def set_item(self, video_id: str, entry: StoredEntry | None) -> None:
        self._changes += 1
        old = self.play_count(video_id)
        self.table.set_item(video_id, entry)
        self.top_played.update(video_id, old, self.play_count(video_id))
        self.play_windows.replace(video_id, parse_hours(entry.value.get("hours")) if entry and entry.value else {})
