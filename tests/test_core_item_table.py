"""The book's compact item table and its leaderboards, against plain dicts.

The table stores documents column by column and builds them again on
demand; what comes back must be what went in (less the ``batch`` marker),
whatever the fields. The leaderboards hold only the first 100 of each
ranking; they must always equal a full sort of every count.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from kryten_likes.actors.counter_book import RANKED, CounterBook
from kryten_likes.actors.item_table import ItemTable
from kryten_likes.store import StoredEntry
from kryten_likes.actors.window_counts import hours_field

TS = "2025-12-18T12:34:56Z"
IDS = [f"v{i}" for i in range(6)] + ["ünï", "a" * 40]

counts = st.integers(0, 2**40)
stamps = st.one_of(st.none(), st.just(TS), st.just("2026-01-02T03:04:05Z"), st.just("yesterday"),
                   st.just("2025-12-18 12:34:56Z"), st.integers())
titles = st.one_of(st.none(), st.text(max_size=30), st.just("😀 and \ud800 lone"), st.integers())
extras = st.dictionaries(st.sampled_from(["media_type", "note", "schema_version"]),
                         st.one_of(st.integers(), st.text(max_size=5), st.none()), max_size=2)


@st.composite
def item_docs(draw, vid: str) -> dict:
    v = {"video_id": vid, "play_count": draw(st.one_of(counts, st.just(-1), st.just("7"))),
         "queue_count": draw(counts), "last_played_at": draw(stamps), "last_queued_at": draw(stamps),
         "duration_seconds": draw(st.one_of(st.none(), st.integers(0, 10**6), st.just(2.5))), "schema_version": 1}
    if draw(st.booleans()):
        v["title"] = draw(titles)
    v.update(draw(extras))
    return v


@st.composite
def likes_docs(draw, vid: str) -> dict:
    v = {"video_id": vid, "like_count": draw(counts), "updated_at": draw(stamps), "schema_version": 1}
    if draw(st.booleans()):
        v["title"] = draw(titles)
    v.update(draw(extras))
    if draw(st.booleans()):
        v["batch"] = "g-1"
    return v


def expected(doc: dict, shape: dict) -> dict:
    """What a reader gets back: every field as stored, the layout's fields
    always present (null when absent), no batch marker, no null title."""
    out = dict(shape)
    out.update({k: v for k, v in doc.items() if k != "batch"})
    if out.get("title", 0) is None:
        del out["title"]
    return out


ITEM_SHAPE = {"video_id": None, "play_count": 0, "queue_count": 0, "last_played_at": None, "last_queued_at": None,
              "duration_seconds": None, "schema_version": 1}
LIKES_SHAPE = {"video_id": None, "like_count": 0, "updated_at": None, "schema_version": 1}


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_documents_come_back_as_stored(data):
    table = ItemTable()
    model: dict[tuple[str, str], StoredEntry | None] = {}
    for step in range(data.draw(st.integers(1, 25))):
        vid = data.draw(st.sampled_from(IDS))
        kind = data.draw(st.sampled_from(["item", "likes"]))
        choice = data.draw(st.integers(0, 5))
        if choice == 0:
            entry = StoredEntry(step + 1, None)  # a delete marker
        else:
            doc = data.draw(item_docs(vid) if kind == "item" else likes_docs(vid))
            entry = StoredEntry(step + 1, doc)
        (table.set_item if kind == "item" else table.set_likes)(vid, entry)
        model[(vid, kind)] = entry
    for (vid, kind), entry in model.items():
        got = table.item(vid) if kind == "item" else table.likes(vid)
        assert got is not None and got.revision == entry.revision
        if entry.value is None:
            assert got.value is None
            continue
        want = expected(entry.value, {**(ITEM_SHAPE if kind == "item" else LIKES_SHAPE), "video_id": vid})
        assert got.value == want, (got.value, entry.value)
    for vid in IDS:
        if (vid, "item") not in model:
            assert table.item(vid) is None
        if (vid, "likes") not in model:
            assert table.likes(vid) is None


def test_titles_are_repacked_when_mostly_garbage():
    table = ItemTable()
    for round_ in range(40):
        for i in range(200):
            table.set_likes(f"v{i}", StoredEntry(round_ + 1, {"video_id": f"v{i}", "like_count": round_,
                                                             "title": f"{round_:03d}" + "x" * 400}))
    # 40 rounds of 200 titles of 403 bytes were written; only the last round is named.
    assert len(table.titles) < 3 * 200 * 403
    assert table.likes("v7").value["title"] == "039" + "x" * 400
    assert table.title("v199") == "039" + "x" * 400


class Rankings(RuleBasedStateMachine):
    """Counts that mostly grow (and sometimes fall, as another writer could make
    them) against a full sort, ties by video_id."""

    def __init__(self) -> None:
        super().__init__()
        self.book = CounterBook("ns")
        self.likes: dict[str, int] = {}
        self.plays: dict[str, int] = {}
        self.rev = 0

    def _set(self, ranking: str, vid: str, n: int) -> None:
        self.rev += 1
        if ranking == "liked":
            self.book.set_likes(vid, StoredEntry(self.rev, {"video_id": vid, "like_count": n}))
            self.likes[vid] = n
        else:
            self.book.set_item(vid, StoredEntry(self.rev, {"video_id": vid, "play_count": n}))
            self.plays[vid] = n

    @rule(ranking=st.sampled_from(["liked", "played"]), i=st.integers(0, 104), by=st.integers(1, 3))
    def grow(self, ranking: str, i: int, by: int) -> None:
        vid = f"v{i:03d}"
        table = self.likes if ranking == "liked" else self.plays
        self._set(ranking, vid, table.get(vid, 0) + by)

    @rule(ranking=st.sampled_from(["liked", "played"]), i=st.integers(0, 104), to=st.integers(0, 3))
    def fall(self, ranking: str, i: int, to: int) -> None:
        vid = f"v{i:03d}"
        table = self.likes if ranking == "liked" else self.plays
        if vid in table:
            self._set(ranking, vid, min(to, table[vid]))

    @rule(i=st.integers(0, 104))
    def delete(self, i: int) -> None:
        vid = f"v{i:03d}"
        if vid in self.likes:
            self.rev += 1
            self.book.set_likes(vid, StoredEntry(self.rev, None))
            self.likes[vid] = 0

    @invariant()
    def leaders_are_the_full_sort(self) -> None:
        for ranking, table in (("liked", self.likes), ("played", self.plays)):
            want = sorted((-n, vid) for vid, n in table.items() if n > 0)
            for limit in (1, 10, RANKED):
                got = [(-e["count"], e["video_id"]) for e in self.book.top(ranking, limit)]
                assert got == want[:limit], (ranking, limit)


Rankings.TestCase.settings = settings(max_examples=60, stateful_step_count=500, deadline=None,
                                    suppress_health_check=[HealthCheck.large_base_example, HealthCheck.too_slow])
TestRankings = Rankings.TestCase


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), st.integers(0, 6)), max_size=60))
def test_a_small_leaderboard_is_the_full_sort(changes):
    from kryten_likes.actors.leaderboard import Leaderboard

    counts: dict[str, int] = {}
    board = Leaderboard(3, lambda: counts.items())
    for i, n in changes:
        vid = f"v{i}"
        old = counts.get(vid, 0)
        counts[vid] = n
        board.update(vid, old, n)
        assert board.top(3) == sorted((-c, v) for v, c in counts.items() if c > 0)[:3]


@settings(max_examples=200, deadline=None)
@given(before=st.none() | st.builds(dict, like_count=counts, title=titles), count=counts,
       now=st.floats(1.6e9, 2.0e9), title=st.none() | st.text(max_size=20), rev=st.integers(1, 2**40),
       hours=st.dictionaries(st.integers(444_444, 555_555), st.integers(1, 10**6), max_size=4))
def test_a_likes_document_the_writer_stored_reads_back_as_if_scanned(before, count, now, title, rev, hours):
    """The like path's fast ``set_likes_written`` leaves the row exactly as
    reading the same document back (``set_likes``) would."""
    from kryten_likes.store import documents as docs

    fast, slow = CounterBook("ns"), CounterBook("ns")
    if before is not None:
        for b in (fast, slow):
            b.set_likes("v1", StoredEntry(1, {"video_id": "v1", **before}))
    doc = docs.likes_value("v1", count, now, title, "g-1", hours_field(hours))
    fast.set_likes_written("v1", rev, count, now, title, hours)
    slow.set_likes("v1", StoredEntry(rev, doc))
    assert fast.table.likes("v1") == slow.table.likes("v1")
    assert fast.likes_entry("v1") == slow.likes_entry("v1")
    assert fast.like_windows.all_hours() == slow.like_windows.all_hours() == ({"v1": hours} if hours else {})
    assert fast.top("liked", 5) == slow.top("liked", 5)
    assert fast.title("v1") == slow.title("v1")


def test_a_kept_answer_is_never_stale():
    book = CounterBook("ns")
    book.set_likes("a", StoredEntry(1, {"video_id": "a", "like_count": 2, "title": "A"}))
    book.set_likes("b", StoredEntry(2, {"video_id": "b", "like_count": 1}))
    first = book.top("liked", 10)
    assert book.top("liked", 10) is first  # kept while nothing changes
    book.set_item("b", StoredEntry(3, {"video_id": "b", "play_count": 1, "title": "Bee"}))  # a title only
    assert book.top("liked", 10) == [{"video_id": "a", "title": "A", "count": 2},
                                     {"video_id": "b", "title": "Bee", "count": 1}]
    book.set_likes_written("b", 4, 5, 1.7e9, "Bee", {})
    assert [(i["video_id"], i["count"]) for i in book.top("liked", 10)] == [("b", 5), ("a", 2)]
    assert [(i["video_id"], i["count"]) for i in book.top("liked", 1)] == [("b", 5)]
