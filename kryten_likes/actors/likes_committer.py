"""The likes committer: claims, like counts and request keys, stored in groups.

One of the counter writer's three parts (counter_writer.py tells the whole
story). It owns the likes waiting to be stored, the memory of requests sent
with a ``correlation_id`` (``RequestMemory``) and what a conflict taught it
about claim and request keys' revisions. A group is every waiting like that
fits in one batch (what it writes: like_writes.py). A like waits for a
later group while a group in flight writes its item's counter document, its
user's or its curator's totals, while its record's last event is not
published (outbox.py), or when this group already holds that record.
With the journal on, the likes that may go through it do, and groups store
them later; that side (entries, staged likes, the mark) is
journal_committer.py's. What becomes of a group once sent (landed,
refused, fenced) is like_outcomes.py's.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from .. import wire
from ..messages import LikeDuplicate, LikeReserved
from ..effects import Commit
from ..store.keys import curator_key, likes_key, record_key, user_key
from .groups import GroupsInFlight, JournalGroup, LikeGroup, StagedLike
from .journal_committer import JournalCommitter
from .like_outcomes import LikeOutcomes
from .like_journal import journalable
from .read_model import ReadModel
from .like_writes import Item, claim_key_of, curator_of, draft_group, liker, request_key_of
from .request_memory import RequestMemory, replay

MAX_LIKE_GROUPS = 3  # likes batches in flight at once (nats-server allows 50 per stream)
PIPELINE_MIN = 32  # likes waiting before a group is sent while another is in flight


class LikesCommitter(LikeOutcomes):
    def __init__(self, read: ReadModel, flying: GroupsInFlight, new_id: Callable[[], str], requests: RequestMemory,
                 *, max_batch: int, max_groups: int = MAX_LIKE_GROUPS, pipeline_min: int = PIPELINE_MIN,
                 journal_max: int = 0, home: str = "", journal_identity: str | None = None) -> None:
        self.read = read
        self.flying = flying  # shared with the other committers
        self.new_id = new_id
        self.requests = requests
        self.max_batch = max_batch
        self.max_groups = max_groups
        self.pipeline_min = pipeline_min
        self.pending: deque[LikeReserved] = deque()
        # The journal's side (journal_committer.py; journal_max 0: every like goes in a group).
        self.journal = JournalCommitter(read, flying, new_id, requests, max_batch=max_batch, journal_max=journal_max,
                                        home=home, identity=journal_identity)
        # Does a correction of the item's count wait? Its likes then go in groups after it. Set by the writer.
        self.correction_waiting: Callable[[str, str], bool] = lambda ns, vid: False
        self.others_wait: Callable[[], bool] = lambda: False  # unlikes or corrections waiting (set by the writer)
        self.claim_revisions: dict[str, int] = {}  # claim and request keys' revisions, learnt from a conflict
        self.conflicts_in_row = 0

    # --- arriving ---------------------------------------------------------------------

    def take(self, msg: LikeReserved | LikeDuplicate, now: float) -> list:
        rk = request_key_of(msg)
        if rk is not None:
            hit = self.requests.known(rk, now) or self.journal.staged_outcome(rk, now)
            if hit is not None:
                return replay(msg, hit)  # a retry: the original outcome
            if (rk in self.requests.owner or isinstance(msg, LikeReserved)) and not self.requests.arrive(rk, msg):
                return []  # the original is being stored; answer with it
        if isinstance(msg, LikeReserved):
            self.pending.append(msg)
            return []
        count = self.read.peek(msg.namespace).like_count(msg.media.video_id)
        return [wire.duplicate(msg.reply, video_id=msg.media.video_id, like_count=count)]

    def waiting(self, pair: tuple[str, str, str]) -> bool:
        """Is a like of (namespace, video_id, user) taken and not stored yet
        (its record not final: journalled likes too)?"""
        return pair in self.journal.staged.pairs or any((l.namespace, l.media.video_id, liker(l)) == pair
                                                for l in self.held())

    def held(self) -> list[LikeReserved]:
        """The likes taken and not answered yet."""
        return (list(self.pending) + [l for g in self.flying.of_kind(LikeGroup) for l in g.likes]
                + [l for g in self.flying.of_kind(JournalGroup) for l in g.likes])

    def item_unstored(self, ns: str, video_id: str) -> bool:
        return self.journal.item_unstored((ns, video_id))

    def held_waiters(self) -> list:
        return [w for ws in self.requests.waiters.values() for w in ws]

    # --- sending ----------------------------------------------------------------------

    def entries(self, now: float) -> list[Commit]:
        """With the journal on, every like that may go through it does: one
        plain write carries all that wait, and groups store them later, off
        the likes' way (like_journal.py)."""
        out: list[Commit] = []
        journal = self.journal
        while journal.on and self.pending:
            entry, self.pending = journal.entry(self.pending, now, self.correction_waiting, self._next_count)
            if entry is None:
                break
            out.append(entry)
        return out

    def groups(self, now: float) -> list[Commit]:
        """The journal's entries, then groups: of the likes that may not use
        the journal, and of staged likes to store."""
        out = self.entries(now)
        journal = self.journal
        if not self.pending and not (journal.staged and journal.store_now(self.others_wait())):
            return out  # (most flushes: staged likes wait for company, and no like waits)
        while (self.pending or journal.staged) and not self.flying.outbox.full("likes"):
            flying = sum(1 for g in self.flying.in_bucket("likes") if type(g) is not JournalGroup)
            if flying and (flying >= self.max_groups or len(self.pending) + len(journal.staged) < self.pipeline_min):
                break  # small groups cost the server more than waiting for the one in flight
            wanted = journal.staged_wanted
            commit = self._group(now)
            if commit is None:
                if journal.staged_wanted and not wanted:
                    continue  # (found waiting just now: the staged likes go first)
                break
            out.append(commit)
        return out

    def _next_count(self, item: Item) -> int:
        """The count a like of ``item`` sent now is answered with: every like
        answered so far, and those in flight before it."""
        ns, vid = item
        ahead = self.journal.journaling[item] + sum(1 for g in self.flying.of_kind(LikeGroup) for l in g.likes
                                                    if (l.namespace, l.media.video_id) == item)
        return self.read.book(ns).like_count(vid) + ahead + 1

    def _choose(self, now: float) -> tuple[list[LikeReserved], dict[Item, int], list[StagedLike]]:
        """The waiting likes that fit one batch, in order; the rest keep theirs.
        Journalled likes first: theirs are the counts answered already."""
        likes: list[LikeReserved] = []
        per_item: dict[Item, int] = {}
        cost = 0
        claims: set[str] = set()
        records: set[tuple[Item, str]] = set()
        later: list[LikeReserved] = []
        busy = self.flying.keys_written("likes")
        curators: set[tuple[str, str]] = set()
        journal = self.journal

        def take(like: LikeReserved) -> None:
            """The like's keys are this group's now (a batch writes a key once)."""
            item = (like.namespace, like.media.video_id)
            records.add((item, liker(like)))
            if like.claim is not None:
                claims.add(claim_key_of(like))
            curator = curator_of(like)
            if curator:
                curators.add((like.namespace, curator))
            per_item[item] = per_item.get(item, 0) + 1

        # Journalled likes first, as whole entries (journal_committer.py).
        staged, cost = journal.choose(busy, records, claims, curators, per_item, take, self.others_wait())
        # A new like of an item with journalled likes not in this group waits:
        # its count comes after theirs.
        held: set[Item] = set()  # (and items with an earlier like left waiting in this call)
        # A like the journal will take once a write in flight lands waits for it (sooner answered than by a group).
        journal_soon = journal.on and journal.writing()
        while self.pending:
            like = self.pending[0]
            item = (like.namespace, like.media.video_id)
            user, curator = liker(like), curator_of(like)
            # Its writes: a claim, the item's document once, its record (with its user's totals), its
            # curator's once, a request key.
            extra = ((like.claim is not None) + (item not in per_item) + bool(user)
                     + (like.reply.correlation_id is not None)
                     + (bool(curator) and (like.namespace, curator) not in curators))
            if cost + extra > self.max_batch:
                break
            self.pending.popleft()
            if journal_soon and journalable(like, busy, self.read, now, self.requests.whole):
                held.add(item)
                later.append(like)
                continue
            if item in journal.staged.items or item in journal.journaling or item in held:
                journal.staged_wanted = journal.staged_wanted or item in journal.staged.items
                held.add(item)
                later.append(like)
                continue
            if (busy and (likes_key(*item) in busy or (user and user_key(like.namespace, user) in busy)
                          or (curator and curator_key(like.namespace, curator) in busy))
                    or (user and self.flying.outbox.is_busy(record_key(like.namespace, item[1], user)))):
                # Its documents' next revisions are not known until that group
                # lands: the like waits for the next group, keeping its order.
                later.append(like)
                continue
            if user and (item, user) in records:
                later.append(like)  # a batch writes a key once: this user's record of it goes next time
                continue
            if like.claim is not None and claim_key_of(like) in claims:
                # Two reservations of one claim (a ledger restarted meanwhile):
                # a batch may write a key once, so this one waits for the next
                # batch, where the stored claim makes it a duplicate.
                later.append(like)
                continue
            take(like)
            cost += extra
            likes.append(like)
        self.pending.extendleft(reversed(later))
        return likes, per_item, staged

    def _group(self, now: float) -> Commit | None:
        likes, per_item, staged = self._choose(now)
        if not likes and not staged:
            return None
        group = draft_group(self.new_id(), likes, per_item, self.read, self.claim_revisions, self.requests.window,
                            now, staged, self.journal.mark(staged, now))
        self.flying.add(group)
        marker = next((w.key for w in group.writes if w.key not in group.values), next(iter(group.values)))
        return Commit("likes", group.group_id, group.writes, marker_key=marker)
