"""The journal's side of the likes committer: entries, staged likes, the mark.

like_journal.py tells why likes go through a journal and what its keys
hold; this class keeps the state that story needs while the daemon runs,
so that likes_committer.py can read as the story of groups:

- the journal writes in flight (``journaling``, by item) and the highest
  journal revision seen (a write in flight lands above it: its *floor*);
- the staged likes (answered, not in their documents), in journal order;
- the mark (``journal_stored``: entries up to it are stored) and its
  document's revision, which a group that stores staged likes expects;
- the events of landed entries, published once per mailbox batch.

The likes committer asks it which waiting likes make the next entry
(``entry``), which staged likes the next group stores (``choose``) and
tells it what landed, conflicted or was fenced. Like the committer, it is
pure: no I/O, no clock.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable

from .. import wire
from ..clock import iso
from ..effects import Commit, PurgeJournal
from ..messages import ClaimsSettled, LikeReserved
from ..store import documents as docs
from ..store.keys import curator_key, journal_mark_key, likes_key, record_key, user_key
from ..store.values import Conflict, Landed
from .groups import GroupsInFlight, JournalGroup, LikeGroup, StagedLike
from .like_journal import (
    draft_journal, journal_event, journalable, mark_of, mark_of_entry, stage_rows, staged_in_memory,
)
from .like_writes import Item, claim_key_of, curator_of, liker
from .read_model import ReadModel
from .staged_queue import StagedQueue

STAGED_BATCH = 300  # staged likes stored together without waiting for a tick (about a full group: a claim and a record each)
STAGED_MAX = 8192  # staged likes at most: beyond, likes wait for groups to store them (the likes bucket is slow)
ENTRY_MAX = 200  # likes in one journal entry (a group stores an entry whole: up to 4 writes a like)


class JournalMarkMoved(RuntimeError):
    """Another life of the writer stored journalled likes this one holds."""


class JournalCommitter:
    def __init__(self, read: ReadModel, flying: GroupsInFlight, new_id: Callable[[], str], *, max_batch: int,
                 journal_max: int = 0, home: str = "", identity: str | None = None) -> None:
        self.read = read
        self.flying = flying  # shared with the other committers
        self.new_id = new_id
        self.max_batch = max_batch
        self.journal_max = journal_max  # journal writes in flight at most (0: the journal is off)
        self.home = home  # the daemon's namespace: its journal and the journal's mark
        self.identity = identity  # the journal stream's (its marks name it)
        self.journaling: Counter[Item] = Counter()  # likes in journal writes in flight, by item
        self.staged = StagedQueue()  # journalled, answered, not yet stored; in journal order
        book = read.books.get(home)
        # The mark: entries up to ``journal_stored`` are stored; its document's revision.
        self.journal_stored, self.mark_revision = mark_of(book, identity)
        self.journal_seen = self.journal_stored  # the journal's highest revision seen
        # Set by a tick: the likes staged up to this journal revision are stored however few.
        self.store_through = 0
        self.staged_wanted = False  # a like that goes in a group waits for its item's staged likes
        self.events: list[tuple[str, dict]] = []  # (record key, event) of journal writes landed, to publish
        self.event_keys: set[str] = set()  # (their record keys)
        self.events_publishing = ""  # the group id of their publish in flight, if one flies
        self.purged = 0  # entries up to here are removed from the journal
        if book is not None:  # what a previous life journalled and did not store (like_journal.recover)
            self.staged.add(s for _, s in book.staged_records)
            self.journal_seen = max([self.journal_seen, *(s.revision for s in self.staged)])
            book.staged_records = []

    @property
    def on(self) -> bool:
        return self.journal_max > 0

    def item_unstored(self, item: Item) -> bool:
        return item in self.journaling or item in self.staged.items

    def unstored(self) -> int:
        """Journalled likes not yet in their documents: staged, in a group in
        flight that stores them, or in a journal write in flight."""
        return (len(self.staged) + sum(len(g.staged) for g in self.flying.of_kind(LikeGroup))
                + sum(self.journaling.values()))

    def writing(self) -> bool:
        """Does a journal write fly (its landing lets the next entry go)?"""
        return bool(self.flying.of_kind(JournalGroup))

    # --- an entry -----------------------------------------------------------------------------

    def entry(self, pending: deque[LikeReserved], now: float, correction_waiting: Callable[[str, str], bool],
              next_count: Callable[[Item], int]) -> tuple[Commit | None, deque[LikeReserved]]:
        """The waiting likes that may go through the journal, as one entry,
        and those left waiting, in their order."""
        if (len(self.flying.of_kind(JournalGroup)) >= self.journal_max
                or self.flying.outbox.full("likes", len(self.events))
                or len(self.staged) >= STAGED_MAX):
            return None, pending
        busy = self.flying.keys_written("likes")
        kept: deque[LikeReserved] = deque()
        held_back: set[Item] = set()  # items with an earlier like left waiting: theirs keep their order
        users: set[tuple[str, str]] = set()
        limit = min(ENTRY_MAX, (self.max_batch - 1) // 4)  # (its group must fit it whole)
        likes: list[LikeReserved] = []
        counts: list[int] = []
        ahead: Counter[Item] = Counter()
        first: dict[Item, int] = {}  # each item's next count (journaling moves only once the entry is sent)
        for like in pending:
            item = (like.namespace, like.media.video_id)
            user = (like.namespace, liker(like))
            if (len(likes) >= limit or item in held_back or user in users
                    or correction_waiting(*item) or not journalable(like, busy, self.read, now)):
                kept.append(like)
                held_back.add(item)
                continue
            users.add(user)
            ahead[item] += 1
            likes.append(like)
            if item not in first:
                first[item] = next_count(item)
            counts.append(first[item] + ahead[item] - 1)
        if not likes:
            return None, pending
        group = draft_journal(self.new_id(), self.home, likes, counts, self.journal_seen, now)
        self.flying.add(group)
        self.journaling.update(ahead)
        return Commit("journal", group.group_id, group.writes, marker_key=group.writes[0].key), kept

    def landed(self, g: JournalGroup, landed: Landed) -> list:
        """The likes are counted: their journal entry holds them. Answered now;
        a group stores their documents, claims, curators and records next (``staged``)."""
        self.count(g, landed)
        return self.answers(g)

    def answers(self, g: JournalGroup) -> list:
        """What a landed entry answers: each like, and the ledger its claims.
        Of the entry alone: the counter writer may send them before ``count``
        (``CounterWriter.answers_first``)."""
        out: list = [wire.ok(like.reply, video_id=like.media.video_id, like_count=count)
                     for like, count in zip(g.likes, g.counts)]
        claims = tuple(like.claim for like in g.likes if like.claim is not None)
        if claims:
            out.append(ClaimsSettled(confirmed=claims))
        return out

    def count(self, g: JournalGroup, landed: Landed) -> None:
        """A landed entry's likes, counted by every answer from now on and
        staged for a group to store; their events wait for the next flush."""
        rev = landed.revisions[g.writes[0].key]
        self.journal_seen = max(self.journal_seen, rev)
        self.not_journaling(g)
        new = [StagedLike(like, count, f"{g.group_id}.{i}", g.now, rev)
               for i, (like, count) in enumerate(zip(g.likes, g.counts))]
        self.staged.add(new)
        publish = self.flying.outbox.enabled
        by_namespace: dict[str, list[StagedLike]] = {}
        for s in new:
            by_namespace.setdefault(s.like.namespace, []).append(s)
        for ns, staged in by_namespace.items():
            book = self.read.book(ns)
            staged_in_memory(book, staged)
            self.read.ranking_moved(ns, "liked")
            for s in staged:
                like = s.like
                vid, user = like.media.video_id, liker(like)
                book.records.liked(vid, user, like.username or user, g.now)
                if publish:  # its event goes out with the others landed in this mailbox batch (``events_out``)
                    key = record_key(ns, vid, user)
                    self.events.append((key, journal_event(s, book)))
                    self.event_keys.add(key)

    def not_journaling(self, g: JournalGroup) -> None:
        """Its write landed or was fenced."""
        for like in g.likes:
            item = (like.namespace, like.media.video_id)
            self.journaling[item] -= 1
            if not self.journaling[item]:
                del self.journaling[item]

    # --- storing staged likes -------------------------------------------------------------------

    def store_now(self, others_wait: bool) -> bool:
        """Staged likes wait to be stored together (a batch costs the server
        the same for one like as for thirty): until ``STAGED_BATCH`` of them,
        the next tick, or anything waits for them (a like that goes in a
        group, an unlike, a correction of their items). A tick asks for those
        staged before it, not for all that come after: with likes flowing,
        staged likes are never gone, and a tick that asked for "every staged
        like until none is left" made every flush after it store a group of
        a few dozen (at 16 in flight, groups of 16 to 96 likes, not 300)."""
        return (self.staged_wanted or len(self.staged) >= STAGED_BATCH or others_wait
                or (bool(self.staged) and self.staged.first_revision() <= self.store_through))

    def choose(self, busy: set[str], records: set, claims: set[str], curators: set[tuple[str, str]],
               per_item: dict[Item, int], take: Callable[[LikeReserved], None], others_wait: bool) -> tuple[list[StagedLike], int]:
        """The staged likes the next group stores, and the writes they cost:
        a prefix of the journal, whole entries only (the mark says "entries
        up to N"), below every journal write in flight (it lands above its
        floor). ``take`` notes a like's keys as the group's."""
        if not self.staged or journal_mark_key(self.home) in busy or not self.store_now(others_wait):
            return [], 0
        floor = min((g.floor for g in self.flying.of_kind(JournalGroup)), default=None)
        cost = 1  # the mark
        staged: list[StagedLike] = []
        i = 0
        while i < len(self.staged):
            entry = self.staged.entry_at(i)
            extra = _entry_cost(entry, per_item, curators)
            if (floor is not None and entry[0].revision > floor) or cost + extra > self.max_batch or any(
                    self._waits(s, busy, records, claims) for s in entry):
                break
            for s in entry:
                take(s.like)
            cost += extra
            staged += entry
            i += len(entry)
        self.staged.take_front(len(staged))
        if not staged:
            return [], 0
        self.staged_wanted = False
        return staged, cost

    def _waits(self, s: StagedLike, busy: set[str], records: set, claims: set[str]) -> bool:
        """Must this staged like wait for a later group (a key of it is
        written by a group in flight or this one, or its event is not out)?"""
        like = s.like
        ns, vid, user, curator = like.namespace, like.media.video_id, liker(like), curator_of(like)
        rk = record_key(ns, vid, user)
        return (likes_key(ns, vid) in busy or user_key(ns, user) in busy or self.flying.outbox.is_busy(rk)
                or rk in self.event_keys or (curator is not None and curator_key(ns, curator) in busy)
                or ((ns, vid), user) in records or (like.claim is not None and claim_key_of(like) in claims))

    def mark(self, staged: list[StagedLike], now: float) -> tuple[str, dict, int] | None:
        """The mark a group storing ``staged`` writes: (key, value, expected revision)."""
        if not staged:
            return None
        return (journal_mark_key(self.home), {"revision": staged[-1].revision, "journal": self.identity,
                                              "updated_at": iso(now), "schema_version": docs.SCHEMA},
                self.mark_revision)

    def stored(self, g: LikeGroup, landed: Landed) -> None:
        """A group that stored staged likes landed: they are in their item's
        document and their user's totals now, and the mark moved."""
        by_namespace: dict[str, list[StagedLike]] = {}
        for s in g.staged:
            by_namespace.setdefault(s.like.namespace, []).append(s)
        for ns, staged in by_namespace.items():
            self.read.book(ns).stage(stage_rows(staged), -1)
        if g.staged:
            mark = journal_mark_key(self.home)
            self.journal_stored = max(self.journal_stored, g.values[mark]["revision"])
            self.mark_revision = max(self.mark_revision, landed.revisions.get(mark, 0))

    def refused(self, g: LikeGroup, conflict: Conflict, give_up: bool, claim_revisions: dict[str, int]) -> None:
        """A group that stored staged likes conflicted: they are staged again,
        first (counted and answered: only KV's revisions are news)."""
        if not g.staged:
            return
        for s in g.staged:
            if s.like.claim is not None:
                entry = conflict.current.get(claim_key_of(s.like))
                claim_revisions[claim_key_of(s.like)] = entry.revision if entry is not None else 0
        self.staged.put_back(g.staged)
        entry = conflict.current.get(journal_mark_key(self.home))
        self.mark_revision = entry.revision if entry is not None else 0
        stored, _ = mark_of_entry(entry, self.identity)
        if stored > self.journal_stored:
            # A group of an earlier life of this writer landed after this one
            # read KV (the old life's batch was still in flight when it died):
            # what it stored, and the records and totals it wrote, are all in KV.
            # Start again from there (the supervisor restarts the writer).
            raise JournalMarkMoved(f"the journal's mark moved to {stored} under group {g.group_id}")
        if give_up and any(s in self.staged for s in g.staged):
            # Someone else keeps writing keys of likes we counted: start again from KV.
            raise RuntimeError(f"likes group {g.group_id}: its journalled likes' keys keep changing under us")

    # --- events and the purge ---------------------------------------------------------------------

    def events_out(self) -> list:
        """The events of the journal writes landed since last asked, as one
        publish: their records wait for it, and the likes bucket's mark stays
        below what they will land at. One such publish flies at a time; what
        lands meanwhile goes in the next, once it is out: a publish costs the
        daemon a few hundred µs however few its events, and at 16 likes in
        flight each write of the journal carried only a handful."""
        outbox = self.flying.outbox
        if not self.events or self.events_publishing in outbox.waiting:
            return []
        keys, events = zip(*self.events)
        self.events = []
        self.event_keys = set()
        self.events_publishing = f"{self.new_id()}-events"
        return outbox.stored(self.events_publishing, "likes", outbox.last_landed["likes"] + 1, keys, events,
                             fresh=True)

    def staged_events(self) -> list:
        """At a start: the events of the journal's entries not stored (a crash
        may have left them unpublished; published twice, an event is dropped)."""
        outbox = self.flying.outbox
        if not outbox.enabled or not self.staged:
            return []
        ss = list(self.staged)
        keys = tuple(record_key(s.like.namespace, s.like.media.video_id, liker(s.like)) for s in ss)
        return outbox.stored(f"{self.new_id()}-journal", "likes", outbox.last_landed["likes"] + 1, keys,
                             tuple(journal_event(s, self.read.book(s.like.namespace)) for s in ss))

    def tick(self) -> list:
        """Each tick: the likes staged now are stored by the next flush however
        few, and the entries up to the mark leave the journal."""
        if self.staged:
            self.store_through = max(self.store_through, self.staged.last_revision())
        return self.purge()

    def purge(self) -> list:
        """Entries up to the mark are stored: out of the journal."""
        if self.journal_stored <= self.purged:
            return []
        self.purged = self.journal_stored
        return [PurgeJournal(self.home, self.purged)]


def _entry_cost(entry: list[StagedLike], per_item: dict[Item, int], curators: set[tuple[str, str]]) -> int:
    """The writes storing a journal entry adds to a group: a record each,
    a claim each, each item's document and curator's totals once."""
    items = {(s.like.namespace, s.like.media.video_id) for s in entry} - per_item.keys()
    curs = {(s.like.namespace, c) for s in entry if (c := curator_of(s.like))} - curators
    return len(entry) + sum(s.like.claim is not None for s in entry) + len(items) + len(curs)
