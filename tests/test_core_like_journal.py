"""The lone-like path (actors/like_journal.py) as a state machine, with
``kill -9`` at any step.

The writer (journal on), the real dedupe ledger and a fake KV per bucket
(``support.counter_writer_rig.FakeKV``). Likes come with dedupe on (through
the ledger) or off, alone or many; unlikes come too; commits land in any
order; events are published whenever. A crash may come between any two
steps: each write in flight lands or is lost (drawn), nobody hears of it,
and a new writer and ledger are built from what KV holds, exactly as a
start builds them (``startup.SnapshotBuilder``). A write that reaches the
server only after that is refused: a new process moves every bucket's fence
before it reads KV, and so does a restarted writer
(``lease_keeper.move_fence_again``; tests/test_supervisor.py shows it on a
real server). Here it is lost, like the others.

The model counts what must be stored: every like answered ``ok``, plus each
like whose write landed at a crash unanswered (its fate was unknown to its
sender), minus every unlike answered ``ok``. Once everything lands, each
item's document holds exactly that, no record is left ``staged``, each
user's totals are their counted likes, and with dedupe on no user is
counted twice for one item.

Some likes carry a ``correlation_id`` and are sent again with it (a client
that timed out): a request counts once however often it is sent, and every
``ok`` it hears names the same count (from memory, from the staged likes,
from the journal after a start, or from its stored request key).
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import event, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from kryten_likes.actors.counter_writer import CounterWriter
from kryten_likes.actors.dedupe_ledger import DedupeLedger
from kryten_likes.actors.staged_storing import STAGED_BATCH
from kryten_likes.actors.groups import JournalGroup, LikeGroup, UnlikeGroup
from kryten_likes.effects import Commit, PublishEvents, PurgeJournal, PutDocument, Reply
from kryten_likes.messages import (
    CommitFinished, EventsPublished, LikeForItem, LikeReserved, ReplyTo, Tick, UnlikeForItem, UserLikesAsked,
)
from kryten_likes.startup import SnapshotBuilder
from kryten_likes.store import Landed, likes_key
from kryten_likes.store.keys import journal_mark_key
from kryten_likes.store.values import MAX_GROUP_WRITES
from support.counter_writer_rig import NS, T0, V1, V2, WINDOW, FakeKV, to
from support.effect_router import EffectRouter

ITEMS = [V1, V2]
CLAIMED = ["ann", "bo", "cy"]  # dedupe on: through the ledger
UNCLAIMED = ["zed", "yu"]  # dedupe off: no claim


class LikeJournalMachine(RuleBasedStateMachine):
    @initialize(journal_max=st.integers(1, 4))
    def setup(self, journal_max: int) -> None:
        self.journal_max = journal_max
        self.kv = {"likes": FakeKV(), "analytics": FakeKV(), "journal": FakeKV()}
        self.now = T0
        self.life = 0
        self.n = 0
        self.in_flight: dict[str, Commit] = {}
        self.unpublished: list[str] = []
        self.requests: dict[str, tuple[str, str, str]] = {}  # subject -> (kind, video_id, user)
        self.answered: set[str] = set()
        self.counted: Counter = Counter()  # (video_id, user) -> likes counted minus unlikes
        self.journalled = 0
        self.event_ids_sent: set[str] = set()
        self.cid_of: dict[str, tuple[str, str]] = {}  # subject -> (user, correlation_id)
        self.media_of: dict[tuple[str, str], object] = {}  # (user, correlation_id) -> what it likes
        self.outcome_of: dict[tuple[str, str], int] = {}  # (user, correlation_id) -> the count it counted at
        self._start(None, None)

    def _start(self, books, claims) -> None:
        self.life += 1
        # (Retries stay within their window: a request's outcome never expires here.)
        self.w = CounterWriter(books or {}, NS, group_prefix=f"g{self.life}-", publish_events=True,
                               journal_max=self.journal_max, unlike_window=WINDOW, retry_window=1e9)
        self.ledger = DedupeLedger(WINDOW, claims=claims)

    # --- routing -----------------------------------------------------------------------------------

    def route(self, effects: list) -> None:
        EffectRouter(
            {"dedupe_ledger": lambda m: self.ledger.step(m, self.now), "counter_writer": self.step},
            {Reply: self.reply, Commit: self.sent, PutDocument: lambda e: None, PurgeJournal: self.purge,
             PublishEvents: self.events_out},
        ).route(effects)

    def events_out(self, p: PublishEvents) -> None:
        # Fresh events may go as a chain with one ack (event_out.py): sound only
        # if no event of it was ever published before, in any life.
        ids = {e["event_id"] for e in p.events}
        if p.fresh:
            assert not ids & self.event_ids_sent, f"a fresh publish repeats {sorted(ids & self.event_ids_sent)}"
        self.event_ids_sent |= ids
        self.unpublished.append(p.group_id)

    def purge(self, p: PurgeJournal) -> None:
        kv = self.kv["journal"]
        for key in [k for k, e in kv.entries.items()
                    if k.startswith(f"ns/{p.namespace}/journal/") and e.revision <= p.revision]:
            del kv.entries[key]

    def step(self, msg) -> list:
        return self.w.step(msg, self.now)

    def sent(self, c: Commit) -> None:
        assert c.group_id not in self.in_flight
        if isinstance(self.w.flying.get(c.group_id), JournalGroup):
            assert len(c.writes) == 1 and c.writes[0].expected_revision is None, "a journal write is one plain write"
            self.journalled += 1
            event(f"journal entry of {min(len(self.w.flying.get(c.group_id).likes), 3)}+ likes")
        self.in_flight[c.group_id] = c

    def reply(self, r: Reply) -> None:
        subject = r.to.subject
        assert subject in self.requests, f"a reply to nobody: {r}"
        assert subject not in self.answered, f"answered twice: {subject}"
        self.answered.add(subject)
        kind, vid, user = self.requests[subject]
        body = r.body
        if body["status"] != "ok":
            assert body["status"] == "duplicate" or body.get("error") == "not_liked", body
            return
        request = self.cid_of.get(subject)
        if request is not None:
            if request in self.outcome_of:
                assert body["like_count"] == self.outcome_of[request], f"a retry of {request} heard another count"
                event("a retry hears its original's count")
                return
            self.outcome_of[request] = body["like_count"]
        self.counted[(vid, user)] += 1 if kind == "like" else -1

    def _landed_at_crash(self, like, count: int) -> None:
        """A like whose write landed while nobody heard: counted (once a request)."""
        request = (like.user, like.reply.correlation_id)
        if like.reply.correlation_id is not None:
            if request in self.outcome_of:
                return
            self.outcome_of[request] = count
        self.counted[(like.media.video_id, like.user)] += 1

    # --- rules ---------------------------------------------------------------------------------------

    def _ask(self, kind: str, vid: str, user: str) -> str:
        self.n += 1
        subject = f"inbox.{self.n}"
        self.requests[subject] = (kind, vid, user)
        return subject

    @rule(media=st.sampled_from(ITEMS), user=st.sampled_from(CLAIMED + UNCLAIMED), flush=st.booleans())
    def like(self, media, user: str, flush: bool) -> None:
        self._send_like(ReplyTo(self._ask("like", media.video_id, user)), media, user, flush)

    @rule(media=st.sampled_from(ITEMS), user=st.sampled_from(CLAIMED + UNCLAIMED),
          cid=st.sampled_from(["c1", "c2"]), flush=st.booleans())
    def like_with_correlation_id(self, media, user: str, cid: str, flush: bool) -> None:
        """A like sent with a correlation_id; the same again is a retry of it."""
        request = (user, cid)
        media = self.media_of.setdefault(request, media)  # (a retry asks for what the original did)
        subject = self._ask("like", media.video_id, user)
        self.cid_of[subject] = request
        self._send_like(ReplyTo(subject, cid), media, user, flush)

    def _send_like(self, reply: ReplyTo, media, user: str, flush: bool) -> None:
        """Dedupe on: through the ledger; off: reserved as the ledger would."""
        if user in CLAIMED:
            self.route([LikeForItem(reply, NS, user, media, username=user.title())])
        else:
            self.route([LikeReserved(reply, NS, media, None, user=user, username=user.title())])
        if flush:
            self.flush()

    @rule(media=st.sampled_from(ITEMS), user=st.sampled_from(CLAIMED + UNCLAIMED))
    def unlike(self, media, user: str) -> None:
        reply = ReplyTo(self._ask("unlike", media.video_id, user))
        self.route([UnlikeForItem(reply, NS, user, media, username=user.title())])

    @rule()
    def flush(self) -> None:
        self.route(self.w.flush(self.now))

    @precondition(lambda self: self.in_flight)
    @rule(data=st.data(), answers_first=st.booleans())
    def finish(self, data, answers_first: bool) -> None:
        """A write's outcome. ``answers_first``: as the writer's shell takes
        it, the answers of a lone entry first, then its counting; a crash may
        come between the two."""
        gid = data.draw(st.sampled_from(sorted(self.in_flight)))
        commit = self.in_flight.pop(gid)
        # (A conflict: an unliked claim the fake KV keeps, where the server removes it after 1 s.)
        outcome = self.kv[commit.bucket].apply(commit)
        if answers_first:
            answers = self.w.answers_first(CommitFinished(gid, outcome), self.now)
            if answers is not None:
                event("a lone entry answered before it is counted")
                assert self.w.flying.get(gid) is None, "answered: no longer held for the supervisor to answer"
                # The replies go out; the ledger takes its ClaimsSettled meanwhile, and
                # what it sends the writer waits in the writer's mailbox until it has counted.
                self.route([e for e in answers if isinstance(e, Reply)])
                from_ledger = [m for e in answers if not isinstance(e, Reply) for m in self.ledger.step(e, self.now)]
                if data.draw(st.booleans(), label="crash between the answers and the counting"):
                    self._crash(lambda gid: data.draw(st.sampled_from(["landed", "lost"]), label=f"{gid}"))
                    return
                self._counted(lambda: self.w.count_answered())
                self.route(from_ledger)
                return
        self._counted(lambda: self.step(CommitFinished(gid, outcome)))

    def _counted(self, outcome_applied) -> None:
        # (No write of a dead writer lands after the next one read KV: the mark
        # moves under nobody, and ``JournalMarkMoved`` would fail the test.)
        self.route(outcome_applied())

    @precondition(lambda self: self.unpublished)
    @rule(data=st.data())
    def publish(self, data) -> None:
        gid = data.draw(st.sampled_from(self.unpublished))
        self.unpublished.remove(gid)
        self.route(self.step(EventsPublished(gid)))

    @rule(seconds=st.sampled_from([1.0, 60.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds
        self.route(self.step(Tick()))

    @rule(data=st.data())
    def crash(self, data) -> None:
        """kill -9 (or the writer's own crash): each write in flight landed or
        not; nobody hears; a new life starts from KV."""
        self._crash(lambda gid: data.draw(st.sampled_from(["landed", "lost"]), label=f"{gid}"))

    def _crash(self, fate_of) -> None:
        for gid in sorted(self.in_flight):
            commit = self.in_flight[gid]
            fate = fate_of(gid)
            g = self.w.flying.get(gid)
            if fate == "landed" and isinstance(self.kv[commit.bucket].apply(commit), Landed):
                if isinstance(g, (JournalGroup, LikeGroup)):
                    for like, count in zip(g.likes, g.counts):  # (a group's staged likes were counted when answered)
                        self._landed_at_crash(like, count)
                elif isinstance(g, UnlikeGroup):
                    self.counted[(g.unlike.media.video_id, g.unlike.user)] -= 1
        self.in_flight.clear()
        self.unpublished.clear()
        for subject in self.requests:  # their senders time out: no answer will come
            self.answered.add(subject)
        builder = SnapshotBuilder(self.now)
        for bucket in ("analytics", "likes", "journal"):
            for key, entry in self.kv[bucket].entries.items():
                builder.take(key, entry)
        snap = builder.done()
        self._start(snap.books, snap.claims)

    # --- invariants ------------------------------------------------------------------------------------

    @invariant()
    def never_counted_twice_with_dedupe_on(self) -> None:
        for (vid, user), n in self.counted.items():
            if user in CLAIMED:
                assert n <= 1, f"{user} counted {n} times for {vid} within the window"

    @invariant()
    def answers_count_every_answered_like(self) -> None:
        book = self.w.read.peek(NS)
        for m in ITEMS:
            stored = (self.kv["likes"].value(likes_key(NS, m.video_id)) or {}).get("like_count", 0)
            # Stored: never more than counted; answered: at least what is stored.
            assert stored <= self._expected(m.video_id), (m.video_id, stored, self._expected(m.video_id))
            assert book.like_count(m.video_id) >= stored
            if book.like_count(m.video_id):
                assert book.title(m.video_id) == m.title, "an item liked is named from its first answer"
        assert set(book.staged.titles) <= set(book.staged.items), "a title held only while likes are staged"

    @invariant()
    def the_liked_ranking_is_the_counts_answered(self) -> None:
        """Staged likes rank from their answer on, and a group that stores
        them moves no ranking (counter_book's ``unstaged``): the leaderboard
        is never behind or ahead of the counts."""
        book = self.w.read.peek(NS)
        counts = {m.video_id: book.like_count(m.video_id) for m in ITEMS}
        assert [(-e["count"], e["video_id"]) for e in book.top("liked", len(ITEMS))] == \
            sorted((-n, v) for v, n in counts.items() if n > 0)

    def _expected(self, vid: str) -> int:
        return sum(n for (v, _), n in self.counted.items() if v == vid)

    # --- the end: everything lands --------------------------------------------------------------------------

    def teardown(self) -> None:
        if not hasattr(self, "w"):
            return
        for _ in range(200):
            self.route(self.step(Tick()))  # (staged likes wait for a tick, or for company)
            self.route(self.w.flush(self.now))
            for gid in list(self.unpublished):
                self.unpublished.remove(gid)
                self.route(self.step(EventsPublished(gid)))
            if not self.in_flight and not self.unpublished:
                break
            for gid in sorted(self.in_flight, key=lambda g: int(g.rpartition("-")[2])):
                if gid not in self.in_flight:
                    continue  # (the writer crashed meanwhile)
                commit = self.in_flight.pop(gid)
                outcome = self.kv[commit.bucket].apply(commit)
                self._counted(lambda: self.step(CommitFinished(gid, outcome)))
        assert not self.in_flight and not self.w.likes.journal.staged and not self.w.likes.journal.journaling
        assert set(self.requests) == self.answered, f"never answered: {set(self.requests) - self.answered}"
        kv = self.kv["likes"]
        book = self.w.read.peek(NS)
        for m in ITEMS:
            stored = (kv.value(likes_key(NS, m.video_id)) or {}).get("like_count", 0)
            vid = m.video_id
            assert stored == self._expected(vid), (m.video_id, stored, dict(self.counted))
            assert book.like_count(m.video_id) == stored and not book.staged_likes
        mark = (kv.value(journal_mark_key(NS)) or {}).get("revision", 0)
        above = [k for k, e in self.kv["journal"].entries.items() if e.revision > mark]
        assert not above, f"journal entries never stored: {above}"
        for user in CLAIMED + UNCLAIMED:
            counted = sum(n for (_, u), n in self.counted.items() if u == user)
            assert kv.likes_given(NS, user) == counted, (user, kv.likes_given(NS, user), counted)


LikeJournalMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=60, deadline=None)
TestLikeJournalAgainstModel = LikeJournalMachine.TestCase


def test_a_lone_like_is_one_plain_write_to_the_journal_answered_before_its_document() -> None:
    """Without the journal a lone like waits for a batch; with it, one write."""
    w = CounterWriter({}, NS, group_prefix="g-", publish_events=False, journal_max=4)
    kv = {"likes": FakeKV(), "journal": FakeKV()}
    ledger = DedupeLedger(WINDOW)
    effects = ledger.step(LikeForItem(to(1), NS, "ann", V1, username="Ann"), T0)
    assert w.step(effects[0], T0) == []
    (commit,) = w.flush(T0)
    assert commit.bucket == "journal" and len(commit.writes) == 1 and commit.writes[0].expected_revision is None
    out = w.step(CommitFinished(commit.group_id, kv["journal"].apply(commit)), T0)
    (ok,) = [e for e in out if isinstance(e, Reply)]
    assert ok.body["status"] == "ok" and ok.body["like_count"] == 1
    assert kv["likes"].value(likes_key(NS, "v1")) is None, "answered before its document is stored"
    assert w.read.peek(NS).like_count("v1") == 1  # yet every answer counts it
    assert not [e for e in out if isinstance(e, Commit)], "a lone staged like waits for company or a tick"
    assert not [e for e in w.step(Tick(), T0) if isinstance(e, Commit)] and w.read.peek(NS).like_count("v1") == 1
    (group,) = w.flush(T0)
    assert group.bucket == "likes" and len(group.writes) > 1  # claim, document, record, mark: one batch
    w.step(CommitFinished(group.group_id, kv["likes"].apply(group)), T0)
    assert kv["likes"].value(likes_key(NS, "v1"))["like_count"] == 1
    assert kv["likes"].value(journal_mark_key(NS))["revision"] == 1
    assert w.step(Tick(), T0 + 1)[-1] == PurgeJournal(NS, 1)


def test_a_landing_found_without_its_document_still_ranks_what_the_answers_count() -> None:
    """A group storing staged likes moves no ranking when it lands: its
    items' counts do not change. A landing found by reading back names only
    the keys still holding its writes: if another writer has overwritten the
    item's document since, the book keeps the document it knew and the
    staged likes leave its count, and the ranking must follow the count."""
    w = CounterWriter({}, NS, group_prefix="g-", publish_events=False, journal_max=2)
    kv = {"likes": FakeKV(), "journal": FakeKV()}
    _reserve(w, DedupeLedger(WINDOW), ["ann", "bo"])
    (entry,) = w.flush(T0)
    w.step(CommitFinished(entry.group_id, kv["journal"].apply(entry)), T0)
    book = w.read.peek(NS)
    assert book.top("liked", 5)[0]["count"] == 2
    w.step(Tick(), T0)
    (group,) = [c for c in w.flush(T0) if c.bucket == "likes"]
    landed = kv["likes"].apply(group)
    found = Landed(group.group_id, {k: r for k, r in landed.revisions.items() if k != likes_key(NS, "v1")})
    w.step(CommitFinished(group.group_id, found), T0)
    assert not w.likes.journal.staged
    n = book.like_count("v1")
    assert n < 2, "left the count: the document the book holds says nothing of them"
    assert [(e["video_id"], e["count"]) for e in book.top("liked", 5)] == ([("v1", n)] if n else []), \
        "ranked as counted"


def _reserve(w: CounterWriter, ledger: DedupeLedger, users: list[str]) -> None:
    for i, user in enumerate(users):
        (reserved,) = ledger.step(LikeForItem(to(i), NS, user, V1, username=user.title()), T0)
        assert w.step(reserved, T0) == []


def test_likes_that_wait_together_go_as_one_journal_entry() -> None:
    """Five likes waiting are one plain write, answered together."""
    w = CounterWriter({}, NS, group_prefix="g-", publish_events=False, journal_max=2)
    kv = {"likes": FakeKV(), "journal": FakeKV()}
    _reserve(w, DedupeLedger(WINDOW), ["ann", "bo", "cy", "di", "ed"])
    (entry,) = w.flush(T0)
    assert entry.bucket == "journal" and len(entry.writes) == 1, "five likes, one write"
    out = w.step(CommitFinished(entry.group_id, kv["journal"].apply(entry)), T0)
    assert sorted(e.body["like_count"] for e in out if isinstance(e, Reply)) == [1, 2, 3, 4, 5]
    assert len(w.likes.journal.staged) == 5 and w.read.peek(NS).like_count("v1") == 5


def test_a_group_stores_whole_journal_entries_and_the_mark_never_splits_one() -> None:
    """A batch of at most 9 writes: entries of two likes (a claim and a record
    each, the document, the mark: 6 writes); two entries do not fit one group."""
    w = CounterWriter({}, NS, group_prefix="g-", publish_events=False, journal_max=2, max_batch=9)
    kv = {"likes": FakeKV(), "journal": FakeKV()}
    _reserve(w, DedupeLedger(WINDOW), ["ann", "bo", "cy", "di"])
    entries = w.flush(T0)
    assert [len(w.flying.get(e.group_id).likes) for e in entries] == [2, 2]
    for entry in entries:
        w.step(CommitFinished(entry.group_id, kv["journal"].apply(entry)), T0)
    w.step(Tick(), T0)
    groups = [c for c in w.flush(T0) if c.bucket == "likes"]
    assert len(groups) == 1
    (second,) = [c for c in w.step(CommitFinished(groups[0].group_id, kv["likes"].apply(groups[0])), T0)
                 if isinstance(c, Commit)]
    assert kv["likes"].value(likes_key(NS, "v1"))["like_count"] == 2, "the first entry, whole"
    assert kv["likes"].value(journal_mark_key(NS))["revision"] == 1
    assert w.read.peek(NS).like_count("v1") == 4
    w.step(CommitFinished(second.group_id, kv["likes"].apply(second)), T0)
    assert kv["likes"].value(likes_key(NS, "v1"))["like_count"] == 4
    assert kv["likes"].value(journal_mark_key(NS))["revision"] == 2 and not w.likes.journal.staged


def test_a_tick_stores_the_likes_staged_before_it_and_later_ones_wait_for_company() -> None:
    """A tick asks for the likes staged when it came, however few; likes
    staged after it wait for 300 or the next tick. (They did not: a tick
    asked for "every staged like until none is left", and with likes
    flowing one is always left, so every flush after a tick stored a group
    of a few dozen.)"""
    w = CounterWriter({}, NS, group_prefix="g-", publish_events=False, journal_max=2)
    kv = {"likes": FakeKV(), "journal": FakeKV()}
    ledger = DedupeLedger(WINDOW)
    n = iter(range(100))

    def like(user: str) -> None:
        (reserved,) = ledger.step(LikeForItem(to(next(n)), NS, user, V1, username=user.title()), T0)
        assert w.step(reserved, T0) == []

    def land(c: Commit) -> list:
        return w.step(CommitFinished(c.group_id, kv[c.bucket].apply(c)), T0)

    def sent(before: list = ()) -> dict[str, list[Commit]]:
        """What the flush sends (and ``before``: the step's own effects)."""
        out: dict[str, list[Commit]] = {"journal": [], "likes": []}
        for c in [*before, *w.flush(T0)]:
            if isinstance(c, Commit):
                out[c.bucket].append(c)
        return out

    def users(c: Commit) -> list[str]:
        return [s.like.user for s in w.flying.get(c.group_id).staged]

    like("ann")
    (ann,) = sent()["journal"]
    like("bo")
    (bo,) = sent()["journal"]  # (two entries fly)
    land(ann)
    w.step(Tick(), T0)  # ann is staged: the tick asks for her
    like("cy")
    out = sent()
    (cy,) = out["journal"]
    assert out["likes"] == [], "bo's entry still flies (it may land below ann's): nothing may be stored"
    land(bo)
    (group,) = sent()["likes"]
    assert users(group) == ["ann"], "bo's entry lies above the floor of cy's, in flight"
    assert sent(land(cy))["likes"] == []
    assert sent(land(group))["likes"] == [], "bo and cy came after the tick: they wait for company or the next tick"
    w.step(Tick(), T0)
    (later,) = sent()["likes"]
    assert users(later) == ["bo", "cy"]


def test_staged_likes_of_one_item_wait_for_a_full_group_of_the_servers_batch() -> None:
    """With no tick, staged likes go once ``STAGED_BATCH`` wait, all in one
    group of nearly ``MAX_GROUP_WRITES``: nats-server stages each atomic
    batch in a store made for it, so fewer, fuller batches cost it less a
    like. (Groups were of 300 likes, 602 writes, under a cap of 900.)"""
    w = CounterWriter({}, NS, group_prefix="g-", publish_events=False, journal_max=2)
    kv = {"likes": FakeKV(), "journal": FakeKV()}
    ledger = DedupeLedger(WINDOW)
    groups: list[Commit] = []

    def settle() -> None:
        out = w.flush(T0)
        while out:
            c = out.pop(0)
            if isinstance(c, Commit) and c.bucket == "journal":
                out += [e for e in w.step(CommitFinished(c.group_id, kv["journal"].apply(c)), T0)
                        if isinstance(e, Commit)] + w.flush(T0)
            elif isinstance(c, Commit):
                groups.append(c)

    for i in range(STAGED_BATCH):
        (reserved,) = ledger.step(LikeForItem(to(i), NS, f"u{i}", V1), T0)
        w.step(reserved, T0)
        settle()
        if i < STAGED_BATCH - 1:
            assert groups == [], f"{i + 1} staged likes wait for company"
    (group,) = groups
    assert len(w.flying.get(group.group_id).staged) == STAGED_BATCH
    assert MAX_GROUP_WRITES - 10 <= len(group.writes) <= MAX_GROUP_WRITES
    w.step(CommitFinished(group.group_id, kv["likes"].apply(group)), T0)
    assert kv["likes"].value(likes_key(NS, "v1"))["like_count"] == STAGED_BATCH and not w.likes.journal.staged


def test_the_events_of_entries_landing_while_a_publish_flies_go_together_once_it_is_out() -> None:
    """One publish of journal events flies at a time: the entries that land
    meanwhile are published together, as one, when it is out."""
    w = CounterWriter({}, NS, group_prefix="g-", publish_events=True, journal_max=2)
    kv = {"likes": FakeKV(), "journal": FakeKV()}
    ledger = DedupeLedger(WINDOW)
    _reserve(w, ledger, ["ann"])
    (first,) = w.flush(T0)
    w.step(CommitFinished(first.group_id, kv["journal"].apply(first)), T0)
    (published,) = [e for e in w.flush(T0) if isinstance(e, PublishEvents)]
    assert [e["username"] for e in published.events] == ["Ann"] and published.fresh
    for user in ["bo", "cy"]:
        _reserve(w, ledger, [user])
        (entry,) = w.flush(T0)
        w.step(CommitFinished(entry.group_id, kv["journal"].apply(entry)), T0)
        assert not [e for e in w.flush(T0) if isinstance(e, PublishEvents)], "held while a publish flies"
    (together,) = [e for e in w.step(EventsPublished(published.group_id), T0) if isinstance(e, PublishEvents)]
    assert [e["username"] for e in together.events] == ["Bo", "Cy"]


def test_an_entry_landing_answers_its_likes_before_any_group_is_drafted() -> None:
    """Storing staged likes takes the writer milliseconds (hundreds of them):
    an entry's likes are answered in the step its write lands, and the group
    is drafted by the flush after it."""
    w = CounterWriter({}, NS, group_prefix="g-", publish_events=False, journal_max=2)
    kv = {"likes": FakeKV(), "journal": FakeKV()}
    ledger = DedupeLedger(WINDOW)
    _reserve(w, ledger, ["ann", "bo"])
    (first,) = w.flush(T0)
    w.step(CommitFinished(first.group_id, kv["journal"].apply(first)), T0)
    (cy,) = ledger.step(LikeForItem(to(9), NS, "cy", V1, username="Cy"), T0)
    assert w.step(cy, T0) == []
    (second,) = w.flush(T0)
    w.step(Tick(), T0)  # the staged likes are due now
    out = w.step(CommitFinished(second.group_id, kv["journal"].apply(second)), T0)
    assert [e.body["like_count"] for e in out if isinstance(e, Reply)] == [3]
    assert not [e for e in out if isinstance(e, Commit)], "no group drafted before the answers"
    (group,) = w.flush(T0)
    assert group.bucket == "likes" and len(w.flying.get(group.group_id).staged) == 3


def test_an_answer_names_the_item_of_a_journalled_like_before_its_documents_are_stored() -> None:
    """A like answered through the journal is in no document for a few ms;
    what a user liked names its title from the first answer, as the
    documents do once a group stores them. (It did not: ``kryten-likes
    likes`` run right after a like printed the item without its title.)"""
    w = CounterWriter({}, NS, group_prefix="g-", publish_events=False, journal_max=2)
    kv = {"likes": FakeKV(), "journal": FakeKV()}
    _reserve(w, DedupeLedger(WINDOW), ["ann"])
    (entry,) = w.flush(T0)
    w.step(CommitFinished(entry.group_id, kv["journal"].apply(entry)), T0)

    def items_of_ann() -> list[dict]:
        (r,) = w.step(UserLikesAsked(to("q"), NS, "ann", 10), T0)
        return [{k: i[k] for k in ("video_id", "title")} for i in r.body["items"]]

    assert kv["likes"].value(likes_key(NS, "v1")) is None, "staged: no document yet"
    assert items_of_ann() == [{"video_id": "v1", "title": "One"}]
    w.step(Tick(), T0)
    (group,) = w.flush(T0)
    w.step(CommitFinished(group.group_id, kv["likes"].apply(group)), T0)
    assert kv["likes"].value(likes_key(NS, "v1"))["title"] == "One"
    assert items_of_ann() == [{"video_id": "v1", "title": "One"}]
    assert w.read.peek(NS).staged.titles == {}, "stored: the document names it, the view lets go"


def test_a_lone_entry_is_answered_first_and_counted_next_and_a_waiting_like_keeps_it_whole() -> None:
    """``answers_first``: the answers of an entry that landed while no like
    waits (the shell sends them, then ``count_answered`` counts the entry).
    With a like waiting, the landing is one step: the next entry goes first."""
    w = CounterWriter({}, NS, group_prefix="g-", publish_events=False, journal_max=2)
    kv = {"likes": FakeKV(), "journal": FakeKV()}
    ledger = DedupeLedger(WINDOW)
    _reserve(w, ledger, ["ann"])
    (entry,) = w.flush(T0)
    landed = CommitFinished(entry.group_id, kv["journal"].apply(entry))
    answers = w.answers_first(landed, T0)
    assert [e.body["like_count"] for e in answers if isinstance(e, Reply)] == [1]
    assert w.held_requests() == [], "answered: the supervisor must not answer it again"
    with pytest.raises(RuntimeError, match="count_answered"):
        w.step(Tick(), T0)
    assert w.count_answered() == []
    assert w.read.peek(NS).like_count("v1") == 1 and len(w.likes.journal.staged) == 1

    (bo,) = ledger.step(LikeForItem(to(8), NS, "bo", V1, username="Bo"), T0)
    w.step(bo, T0)
    (second,) = w.flush(T0)
    (cy,) = ledger.step(LikeForItem(to(9), NS, "cy", V1, username="Cy"), T0)
    w.step(cy, T0)  # waits for bo's entry to land
    landed = CommitFinished(second.group_id, kv["journal"].apply(second))
    assert w.answers_first(landed, T0) is None, "a like waits: the landing is stepped whole"
    out = w.step(landed, T0)
    assert isinstance(out[0], Commit) and out[0].bucket == "journal", "cy's entry goes before bo's answer"
    assert [e.body["like_count"] for e in out if isinstance(e, Reply)] == [2]


def _with_cid(n: int | str, user: str, cid: str, media=V1) -> LikeReserved:
    """A like with dedupe off (no claim): only its correlation_id tells a retry."""
    return LikeReserved(ReplyTo(f"inbox.{n}", cid), NS, media, None, user=user, username=user.title())


def test_a_like_with_a_correlation_id_is_journalled_and_every_retry_hears_its_answer() -> None:
    """``kryten-likes like`` sends a correlation_id: its lone like is one
    journal write too (it waited for a batch). A retry while it flies waits
    for it, one after it hears it from memory; the group that stores it
    writes its request key, for what is left of the retry window."""
    w = CounterWriter({}, NS, group_prefix="g-", publish_events=False, journal_max=2, retry_window=600.0)
    kv = {"likes": FakeKV(), "journal": FakeKV()}
    assert w.step(_with_cid(1, "zed", "c-1"), T0) == []
    (entry,) = w.flush(T0)
    assert entry.bucket == "journal" and len(entry.writes) == 1
    assert kv["journal"].apply(entry) and kv["journal"].value(entry.writes[0].key)["likes"][0]["correlation_id"] == "c-1"
    assert w.step(_with_cid(2, "zed", "c-1"), T0) == [], "the original flies: the retry waits for its answer"
    out = w.step(CommitFinished(entry.group_id, Landed(entry.group_id, {entry.writes[0].key: 1})), T0)
    assert sorted((r.to.subject, r.body["status"], r.body["like_count"]) for r in out if isinstance(r, Reply)) == [
        ("inbox.1", "ok", 1), ("inbox.2", "ok", 1)]
    (r,) = [e for e in w.step(_with_cid(3, "zed", "c-1"), T0 + 5) if isinstance(e, Reply)]
    assert (r.body["status"], r.body["like_count"]) == ("ok", 1)
    w.step(Tick(), T0 + 10)
    (group,) = w.flush(T0 + 10)
    (key,) = [x for x in group.writes if "/requests/" in x.key]
    assert key.expected_revision is None and key.ttl_seconds == 590.0, "its window counts from its answer"
    w.step(CommitFinished(group.group_id, kv["likes"].apply(group)), T0 + 10)
    stored = kv["likes"].value(key.key)
    assert (stored["like_count"], stored["correlation_id"], stored["user"]) == (1, "c-1", "zed")
    assert kv["likes"].value(likes_key(NS, "v1"))["like_count"] == 1
    assert w.likes.journal.staged_requests == {}, "stored: its key (and memory) answer from now on"


def test_a_start_hears_a_journalled_request_from_its_entry_and_stores_its_key() -> None:
    """A crash after the entry landed and before a group stored it: the
    next life reads the request's outcome back from the journal, answers a
    retry with it (with dedupe off nothing else would stop a second count)
    and stores the request key with the entry's likes."""
    w = CounterWriter({}, NS, group_prefix="g1-", publish_events=False, journal_max=2)
    kv = {"likes": FakeKV(), "journal": FakeKV(), "analytics": FakeKV()}
    media = V1
    w.step(LikeReserved(ReplyTo("inbox.1", "c-9"), NS, media, None, user="zed", username="Zed"), T0)
    (entry,) = w.flush(T0)
    kv["journal"].apply(entry)  # landed; the daemon died before hearing so
    builder = SnapshotBuilder(T0 + 1)
    for bucket in ("analytics", "likes", "journal"):
        for k, e in kv[bucket].entries.items():
            builder.take(k, e)
    snap = builder.done()
    w2 = CounterWriter(snap.books, NS, group_prefix="g2-", publish_events=False, journal_max=2)
    out = w2.step(LikeReserved(ReplyTo("inbox.2", "c-9"), NS, media, None, user="zed", username="Zed"), T0 + 1)
    (r,) = [e for e in out if isinstance(e, Reply)]
    assert (r.body["status"], r.body["like_count"]) == ("ok", 1) and not [e for e in out if isinstance(e, Commit)]
    w2.step(Tick(), T0 + 1)  # (staged likes wait for company or a tick)
    (group,) = [c for c in w2.flush(T0 + 1) if c.bucket == "likes"]
    w2.step(CommitFinished(group.group_id, kv["likes"].apply(group)), T0 + 1)
    assert kv["likes"].value(likes_key(NS, "v1"))["like_count"] == 1, "counted once"
    assert [kv["likes"].value(k)["like_count"] for k in kv["likes"].entries if "/requests/" in k] == [1]


def test_once_memory_forgets_a_request_likes_with_a_correlation_id_go_in_groups() -> None:
    """Memory holds ``max_remembered_requests`` outcomes; past that it
    forgets the oldest, and only a create-if-absent of the key can tell a
    retry of a forgotten request: such likes go in groups again. A staged
    like's outcome is not forgotten until its key is stored."""
    w = CounterWriter({}, NS, group_prefix="g-", publish_events=False, journal_max=2, max_remembered_requests=1,
                      retry_window=10.0)
    kv = {"likes": FakeKV(), "journal": FakeKV()}
    for i, user in enumerate(["yu", "zed"]):
        w.step(LikeReserved(ReplyTo(f"inbox.{i}", f"c-{i}"), NS, V1, None, user=user, username=user), T0)
        (entry,) = w.flush(T0)
        assert entry.bucket == "journal"
        w.step(CommitFinished(entry.group_id, kv["journal"].apply(entry)), T0)
    assert w.likes.requests.forgotten == 1, "yu's outcome made room for zed's"
    out = w.step(LikeReserved(ReplyTo("inbox.9", "c-0"), NS, V1, None, user="yu", username="yu"), T0)
    assert [(r.body["status"], r.body["like_count"]) for r in out if isinstance(r, Reply)] == [("ok", 1)], \
        "yu's retry: from the staged likes"
    later = w.step(LikeReserved(ReplyTo("inbox.11", "c-0"), NS, V1, None, user="yu", username="yu"), T0 + 10)
    assert not [r for r in later if isinstance(r, Reply)], "past its window a retry is a new like (it waits to go)"
    assert w.likes.journal.staged_requests != {}, "(still staged: no tick has come)"
    w.step(LikeReserved(ReplyTo("inbox.10", "c-5"), NS, V2, None, user="xi", username="xi"), T0)
    assert [c.bucket for c in w.flush(T0) if isinstance(c, Commit)] == ["likes"], "xi's like goes in a group"
