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
tells it what landed, conflicted or was fenced; the storing half (which
staged likes, and what a group's outcome means to them) is
staged_storing.py's. Like the committer, it is pure: no I/O, no clock.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable

from .. import wire
from ..effects import Commit, PurgeJournal
from ..messages import ClaimsSettled, LikeReserved
from ..store.keys import record_key
from ..store.values import Landed
from .groups import GroupsInFlight, JournalGroup, LikeGroup, StagedLike
from .like_journal import draft_journal, journal_event, journalable, mark_of, staged_in_memory
from .like_writes import Item, liker, request_key_of
from .read_model import ReadModel
from .request_memory import RequestKey, RequestMemory
from .staged_queue import StagedQueue
from .staged_storing import StagedStoring

STAGED_MAX = 8192  # staged likes at most: beyond, likes wait for groups to store them (the likes bucket is slow)
ENTRY_MAX = 200  # likes in one journal entry (a group stores an entry whole: up to 4 writes a like)


class JournalCommitter(StagedStoring):
    def __init__(self, read: ReadModel, flying: GroupsInFlight, new_id: Callable[[], str],
                 requests: RequestMemory, *, max_batch: int, journal_max: int = 0, home: str = "",
                 identity: str | None = None) -> None:
        self.read = read
        self.flying = flying  # shared with the other committers
        self.new_id = new_id
        self.requests = requests  # the likes committer's
        # The outcomes of staged likes sent with a ``correlation_id`` (and when
        # their window ends): their request keys are stored with them, and until
        # then a retry is answered from here (memory may forget an outcome for
        # room; this never does).
        self.staged_requests: dict[RequestKey, tuple[float, dict]] = {}
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
            for s in self.staged:
                rk = request_key_of(s.like)
                if rk is not None:
                    outcome = {"video_id": s.like.media.video_id, "like_count": s.count}
                    self.staged_requests[rk] = (s.at + requests.window, outcome)
                    requests.recall(rk, s.at + requests.window, outcome)
            self.journal_seen = max([self.journal_seen, *(s.revision for s in self.staged)])
            book.staged_records = []

    def staged_outcome(self, rk: RequestKey, now: float) -> dict | None:
        """The answer a retry of a staged like hears (None: no such like, or
        its window has passed: a retry is a new like then)."""
        hit = self.staged_requests.get(rk)
        return hit[1] if hit is not None and hit[0] > now else None

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
        budget = self.max_batch - 1  # its group must fit it whole, with the mark
        cost = 0
        retries_known = self.requests.whole
        likes: list[LikeReserved] = []
        counts: list[int] = []
        ahead: Counter[Item] = Counter()
        first: dict[Item, int] = {}  # each item's next count (journaling moves only once the entry is sent)
        for like in pending:
            item = (like.namespace, like.media.video_id)
            user = (like.namespace, liker(like))
            # At most: its claim, record, request key, item's document and curator's totals.
            extra = 4 + (like.reply.correlation_id is not None)
            if (len(likes) >= ENTRY_MAX or cost + extra > budget or item in held_back or user in users
                    or correction_waiting(*item) or not journalable(like, busy, self.read, now, retries_known)):
                kept.append(like)
                held_back.add(item)
                continue
            cost += extra
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
        """What a landed entry answers: each like and the retries that waited
        for it, and the ledger its claims. Of the entry alone: the counter
        writer may send them before ``count`` (``CounterWriter.answers_first``)."""
        out: list = []
        for like, count in zip(g.likes, g.counts):
            out.append(wire.ok(like.reply, video_id=like.media.video_id, like_count=count))
            rk = request_key_of(like)
            if rk is not None:
                outcome = {"video_id": like.media.video_id, "like_count": count}
                self.staged_requests[rk] = (g.now + self.requests.window, outcome)
                out += self.requests.retries_answered(rk, outcome, g.now)
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

