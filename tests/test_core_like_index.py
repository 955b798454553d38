"""The like index (``actors.like_index.LikeIndex``) against a plain model:
a dict of (item, user) → liked_at. Records are read at start (``load``, the
last word on a pair wins, a forget included), then frozen into the base;
likes, re-likes and unlikes after that go to the recent layer and mark base
entries dead. Every page, followed by its cursors to the end, must list the
model's records newest first, each once."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kryten_likes.actors.like_index import LikeIndex
from kryten_likes.clock import iso

ITEMS = ("a", "b", "c", "d")
USERS = ("u1", "u2", "u3", "u4", "u5")
T0 = 1_764_000_000
times = st.integers(T0, T0 + 50)  # few seconds: equal times, ties broken by id


class LikeIndexMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.index = LikeIndex("ns")
        self.model: dict[tuple[str, str], int] = {}
        self.frozen = False
        # Ties in time go by id: the order the index first heard of a user or an item.
        self.order: dict[str, int] = {}

    def _heard(self, item, user):
        for name in (item, user):
            self.order.setdefault(name, len(self.order))

    @precondition(lambda self: not self.frozen)
    @rule(item=st.sampled_from(ITEMS), user=st.sampled_from(USERS), t=st.none() | times)
    def read_at_start(self, item, user, t):
        """A record as the start-up scan reads it (None: unliked, or deleted meanwhile)."""
        self.index.load(item, user, user.upper(), t)
        if t is not None:
            self._heard(item, user)
        if t is None:
            self.model.pop((item, user), None)
        else:
            self.model[(item, user)] = t

    @rule(user=st.sampled_from(USERS + ("u6",)), given=st.integers(0, 9), revision=st.integers(1, 50))
    def totals_heard(self, user, given, revision):
        """A user's totals read (an older store's users/ document, or a record):
        their id exists, with or without records of theirs."""
        before = self.index.totals(user)
        self.index.offer_totals(user, user.upper(), given, revision)
        self.order.setdefault(user, len(self.order))
        want = (given, revision) if revision > before[1] else before
        assert self.index.totals(user) == want

    @rule()
    def freeze(self):
        self.index.freeze()
        self.frozen = True

    @rule(item=st.sampled_from(ITEMS), user=st.sampled_from(USERS), t=times)
    def like(self, item, user, t):
        self.index.liked(item, user, user.upper(), t)
        self._heard(item, user)
        self.frozen = True
        self.model[(item, user)] = t

    @rule(item=st.sampled_from(ITEMS), user=st.sampled_from(USERS))
    def unlike(self, item, user):
        self.index.forget(item, user)
        self.model.pop((item, user), None)

    def _all_pages(self, listing, subject, limit):
        out, cursor, pages = [], None, 0
        while True:
            page, cursor = listing(subject, limit, cursor)
            out += page
            pages += 1
            assert len(page) <= limit
            if cursor is None:
                return out
            assert len(page) == limit and pages < 100

    @precondition(lambda self: self.frozen)
    @invariant()
    def pages_list_the_model_newest_first(self):
        for limit in (1, 2, 100):
            for item in ITEMS:
                want = sorted(((t, self.order[user], user) for (i, user), t in self.model.items() if i == item),
                              reverse=True)
                got = self._all_pages(self.index.likers, item, limit)
                assert [(g["username"], g["liked_at"]) for g in got] == [(u.upper(), iso(t)) for t, _, u in want]
            for user in USERS + ("u6",):
                mine = sorted(((t, self.order[i], i) for (i, u), t in self.model.items() if u == user), reverse=True)
                got = self._all_pages(self.index.user_likes, user, limit)
                assert got == [(i, iso(t)) for t, _, i in mine]

    @precondition(lambda self: self.frozen)
    @invariant()
    def each_pair_and_the_count_read_as_the_model(self):
        assert len(self.index) == len(self.model)
        for item in ITEMS:
            for user in USERS:
                assert self.index.liked_at(item, user) == self.model.get((item, user))


LikeIndexMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
TestLikeIndex = LikeIndexMachine.TestCase


def test_a_cursor_of_another_listing_is_refused():
    import pytest
    from kryten_likes.actors.like_index import BadCursor

    index = LikeIndex("ns")
    for n, user in enumerate(USERS):
        index.liked("a", user, user, T0 + n)
        index.liked("b", user, user, T0 + n)
    _, cursor = index.likers("a", 1, None)
    for listing, subject in ((index.likers, "b"), (index.user_likes, "u1")):
        with pytest.raises(BadCursor):
            listing(subject, 1, cursor)
    with pytest.raises(BadCursor):
        LikeIndex("other").likers("a", 1, cursor)


def test_users_who_liked_once_since_start_cost_a_column_entry_not_an_array():
    """100 000 users liking once after start were 16 MB of per-user arrays
    (232 bytes a user here, measured); in the column about 100."""
    import tracemalloc

    n = 5000
    users = [f"user-{i}" for i in range(n)]
    index = LikeIndex("ns")
    index.liked("a", "warm", "warm", T0)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for k, user in enumerate(users):
            index.liked("a", user, user, T0 + k)
        per_user = (tracemalloc.get_traced_memory()[0] - before) / n
    finally:
        tracemalloc.stop()
    assert per_user < 150, per_user
    assert index.user_likes("user-7", 10, None) == ([("a", iso(T0 + 7))], None)
