"""The likes committer: claims, like counts and request keys, stored in groups.

One of the counter writer's three parts (counter_writer.py tells the whole
story). It owns the likes waiting to be stored, the memory of requests sent
with a ``correlation_id`` (``RequestMemory``) and what a conflict taught it
about claim and request keys' revisions. A group is every waiting like that
fits in one batch (what it writes: like_writes.py). A like waits for a
later group while a group in flight writes its item's counter document, its
user's or its curator's totals, while its record's last event is not
published (outbox.py), or when this group already holds that record.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable

import attrs

from .. import wire
from ..clock import iso, parse_iso
from ..messages import ClaimsSettled, LikeDuplicate, LikeReserved
from ..effects import Commit, PurgeJournal
from ..store import documents as docs
from ..store.keys import curator_key, journal_mark_key, likes_key, record_key, user_key
from ..store.values import Conflict, Landed, StoredEntry
from .event_bodies import like_events
from .groups import FENCED, MAX_CONFLICTS, GroupsInFlight, JournalGroup, LikeGroup, StagedLike
from .like_journal import draft_journal, journal_event, journalable, mark_of, mark_of_entry, staged_in_memory
from .read_model import ReadModel
from .like_writes import (
    Item, claim_key_of, curator_of, draft_group, liker, request_key_of, take_totals_of_records,
)
from .request_memory import RequestMemory, request_key
from .staged_queue import StagedQueue

class JournalMarkMoved(RuntimeError):
    """Another life of the writer stored journalled likes this one holds."""


STAGED_BATCH = 300  # staged likes stored together without waiting for a tick (about a full group: a claim and a record each)
STAGED_MAX = 8192  # staged likes at most: beyond, likes wait for groups to store them (the likes bucket is slow)
ENTRY_MAX = 200  # likes in one journal entry (a group stores an entry whole: up to 4 writes a like)
MAX_LIKE_GROUPS = 3  # likes batches in flight at once (nats-server allows 50 per stream)
PIPELINE_MIN = 32  # likes waiting before a group is sent while another is in flight

class LikesCommitter:
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
        # The lone-like path (like_journal.py): at most ``journal_max`` journal
        # writes in flight (0: every like goes in a group).
        self.journal_max = journal_max
        self.home = home  # the daemon's namespace: its journal and the journal's mark
        self.journal_identity = journal_identity  # the journal stream's (its marks name it)
        self.journaling: Counter[Item] = Counter()  # journal writes in flight, by item
        self.staged = StagedQueue()  # journalled, answered, not yet stored; in journal order
        book = read.books.get(home)
        # The mark: entries up to ``journal_stored`` are stored; its document's revision.
        self.journal_stored, self.mark_revision = mark_of(book, journal_identity)
        self.journal_seen = self.journal_stored  # the journal's highest revision seen
        self.store_staged = False  # set by a tick: staged likes are stored however few
        self.staged_wanted = False  # a like that goes in a group waits for its item's staged likes
        self.events: list[tuple[str, dict]] = []  # (record key, event) of journal writes landed, to publish
        self.event_keys: set[str] = set()  # (their record keys)
        # Does a correction of the item's count wait? Its likes then go in groups after it. Set by the writer.
        self.correction_waiting: Callable[[str, str], bool] = lambda ns, vid: False
        self.others_wait: Callable[[], bool] = lambda: False  # unlikes or corrections waiting (set by the writer)
        self.purged = 0  # entries up to here are removed from the journal
        if book is not None:  # what a previous life journalled and did not store (like_journal.recover)
            self.staged.add(s for _, s in book.staged_records)
            self.journal_seen = max([self.journal_seen, *(s.revision for s in self.staged)])
            book.staged_records = []
        self.claim_revisions: dict[str, int] = {}  # claim and request keys' revisions, learnt from a conflict
        self.conflicts_in_row = 0

    # --- arriving ---------------------------------------------------------------------

    def take(self, msg: LikeReserved | LikeDuplicate, now: float) -> list:
        rk = request_key_of(msg)
        if rk is not None:
            hit = self.requests.known(rk, now)
            if hit is not None:
                return self._replay(msg, hit)  # a retry: the original outcome
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
        return pair in self.staged.pairs or any((l.namespace, l.media.video_id, liker(l)) == pair
                                                for l in self.held())

    def held(self) -> list[LikeReserved]:
        """The likes taken and not answered yet."""
        return (list(self.pending) + [l for g in self.flying.of_kind(LikeGroup) for l in g.likes]
                + [l for g in self.flying.of_kind(JournalGroup) for l in g.likes])

    def item_unstored(self, ns: str, video_id: str) -> bool:
        return (ns, video_id) in self.journaling or (ns, video_id) in self.staged.items

    def unstored(self) -> int:
        """Journalled likes not yet in their documents: staged, in a group in
        flight that stores them, or in a journal write in flight."""
        return (len(self.staged) + sum(len(g.staged) for g in self.flying.of_kind(LikeGroup))
                + sum(self.journaling.values()))

    def held_waiters(self) -> list:
        return [w for ws in self.requests.waiters.values() for w in ws]

    # --- sending ----------------------------------------------------------------------

    def groups(self, now: float) -> list[Commit]:
        # With the journal on, every like that may go through it does: one
        # plain write carries all that wait, and groups store them later, off
        # the likes' way (like_journal.py). The others go in groups.
        out: list[Commit] = []
        while self.journal_max and self.pending:
            entry = self._journal(now)
            if not entry:
                break
            out += entry
        while (self.pending or self.staged) and not self.flying.outbox.full("likes"):
            flying = sum(1 for g in self.flying.in_bucket("likes") if type(g) is not JournalGroup)
            if flying and (flying >= self.max_groups or len(self.pending) + len(self.staged) < self.pipeline_min):
                break  # small groups cost the server more than waiting for the one in flight
            wanted = self.staged_wanted
            commit = self._group(now)
            if commit is None:
                if self.staged_wanted and not wanted:
                    continue  # (found waiting just now: the staged likes go first)
                break
            out.append(commit)
        return out

    def _journal(self, now: float) -> list[Commit]:
        """The waiting likes that may go through the journal, as one entry
        (like_journal.py); the rest keep their order."""
        if (len(self.flying.of_kind(JournalGroup)) >= self.journal_max or self.flying.outbox.full("likes")
                or len(self.staged) >= STAGED_MAX):
            return []
        busy = self.flying.keys_written("likes")
        kept: deque[LikeReserved] = deque()
        held_back: set[Item] = set()  # items with an earlier like left waiting: theirs keep their order
        users: set[tuple[str, str]] = set()
        limit = min(ENTRY_MAX, (self.max_batch - 1) // 4)  # (its group must fit it whole)
        likes: list[LikeReserved] = []
        counts: list[int] = []
        ahead: Counter[Item] = Counter()
        for like in self.pending:
            item = (like.namespace, like.media.video_id)
            user = (like.namespace, liker(like))
            if (len(likes) >= limit or item in held_back or user in users
                    or self.correction_waiting(*item) or not journalable(like, busy, self.read, now)):
                kept.append(like)
                held_back.add(item)
                continue
            users.add(user)
            ahead[item] += 1
            likes.append(like)
            counts.append(self._next_count(item) + ahead[item] - 1)
        if not likes:
            return []
        self.pending = kept
        group = draft_journal(self.new_id(), self.home, likes, counts, self.journal_seen, now)
        self.flying.add(group)
        self.journaling.update(ahead)
        return [Commit("journal", group.group_id, group.writes, marker_key=group.writes[0].key)]

    def _store_staged_now(self) -> bool:
        """Staged likes wait to be stored together (a batch costs the server
        the same for one like as for thirty): until ``STAGED_BATCH`` of them,
        the next tick, or anything waits for them (a like, an unlike, a
        correction of their items)."""
        return self.store_staged or self.staged_wanted or len(self.staged) >= STAGED_BATCH or self.others_wait()

    def _next_count(self, item: Item) -> int:
        """The count a like of ``item`` sent now is answered with: every like
        answered so far, and those in flight before it."""
        ns, vid = item
        ahead = self.journaling[item] + sum(1 for g in self.flying.of_kind(LikeGroup) for l in g.likes
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
        staged: list[StagedLike] = []

        def take(like: LikeReserved, item: Item, user: str, curator: str | None) -> None:
            """The like's keys are this group's now (a batch writes a key once)."""
            records.add((item, user))
            if like.claim is not None:
                claims.add(claim_key_of(like))
            if curator:
                curators.add((like.namespace, curator))
            per_item[item] = per_item.get(item, 0) + 1

        # Journalled likes go as a prefix of the journal (the mark says "up to
        # N"), below every journal write in flight (it lands above its floor).
        floor = min((g.floor for g in self.flying.of_kind(JournalGroup)), default=None)
        if self.staged and journal_mark_key(self.home) not in busy and self._store_staged_now():
            cost = 1  # the mark
            i = 0
            while i < len(self.staged):
                # An entry's likes are stored together: the mark says "entries up to N".
                entry = self.staged.entry_at(i)
                rev = entry[0].revision
                extra = self._entry_cost(entry, per_item, curators)
                if (floor is not None and rev > floor) or cost + extra > self.max_batch or any(
                        self._staged_waits(s, busy, records, claims) for s in entry):
                    break
                for s in entry:
                    like = s.like
                    take(like, (like.namespace, like.media.video_id), liker(like), curator_of(like))
                cost += extra
                staged += entry
                i += len(entry)
            self.staged.take_front(len(staged))
            if staged:
                self.store_staged = bool(self.staged)  # (what a tick asked for, all of it)
                self.staged_wanted = False
            cost = cost if staged else 0
        # A new like of an item with journalled likes not in this group waits:
        # its count comes after theirs.
        held: set[Item] = set()  # (and items with an earlier like left waiting in this call)
        # A like the journal will take once a write in flight lands waits for it (sooner answered than by a group).
        journal_soon = bool(self.journal_max and self.flying.of_kind(JournalGroup))
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
            if journal_soon and journalable(like, busy, self.read, now):
                held.add(item)
                later.append(like)
                continue
            if item in self.staged.items or item in self.journaling or item in held:
                self.staged_wanted = self.staged_wanted or item in self.staged.items
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
            take(like, item, user, curator)
            cost += extra
            likes.append(like)
        self.pending.extendleft(reversed(later))
        return likes, per_item, staged

    @staticmethod
    def _entry_cost(entry: list[StagedLike], per_item: dict[Item, int], curators: set[tuple[str, str]]) -> int:
        """The writes storing a journal entry adds to a group: a record each,
        a claim each, each item's document and curator's totals once."""
        items = {(s.like.namespace, s.like.media.video_id) for s in entry} - per_item.keys()
        curs = {(s.like.namespace, c) for s in entry if (c := curator_of(s.like))} - curators
        return len(entry) + sum(s.like.claim is not None for s in entry) + len(items) + len(curs)

    def _staged_waits(self, s: StagedLike, busy: set[str], records: set, claims: set[str]) -> bool:
        """Must this staged like wait for a later group (a key of it is written by a group in flight or this one)?"""
        like = s.like
        ns, vid, user, curator = like.namespace, like.media.video_id, liker(like), curator_of(like)
        rk = record_key(ns, vid, user)
        return (likes_key(ns, vid) in busy or user_key(ns, user) in busy or self.flying.outbox.is_busy(rk)
                or rk in self.event_keys or (curator is not None and curator_key(ns, curator) in busy)
                or ((ns, vid), user) in records or (like.claim is not None and claim_key_of(like) in claims))

    def _group(self, now: float) -> Commit | None:
        likes, per_item, staged = self._choose(now)
        if not likes and not staged:
            return None
        mark = None
        if staged:
            mark = (journal_mark_key(self.home), {"revision": staged[-1].revision, "journal": self.journal_identity,
                                                  "updated_at": iso(now), "schema_version": docs.SCHEMA},
                    self.mark_revision)
        group = draft_group(self.new_id(), likes, per_item, self.read, self.claim_revisions, self.requests.window,
                            now, staged, mark)
        self.flying.add(group)
        marker = next((w.key for w in group.writes if w.key not in group.values), next(iter(group.values)))
        return Commit("likes", group.group_id, group.writes, marker_key=marker)

    # --- outcomes -----------------------------------------------------------------------

    def landed(self, g: LikeGroup | JournalGroup, landed: Landed, now: float) -> list:
        if isinstance(g, JournalGroup):
            return self._journal_landed(g, landed)
        for s in g.staged:  # in their item's document and their user's totals now
            book = self.read.book(s.like.namespace)
            book.stage(s.like.media.video_id, liker(s.like), curator_of(s.like), s.at, -1)
        if g.staged:
            mark = journal_mark_key(self.home)
            self.journal_stored = max(self.journal_stored, g.values[mark]["revision"])
            self.mark_revision = max(self.mark_revision, landed.revisions.get(mark, 0))
        for (ns, vid) in g.before:
            key = likes_key(ns, vid)
            rev = landed.revisions.get(key)
            book = self.read.book(ns)
            # A landing found by reading back names only keys still holding this
            # group's writes; the book never goes back to an older revision.
            if rev is not None and rev > book.table.likes_revision(vid):
                v = g.values[key]
                book.set_likes_written(vid, rev, v["like_count"], g.now, v["title"], g.hours[key])
            self.read.ranking_moved(ns, "liked")
        self._records_landed(g, landed)
        out: list = []
        claims = []
        for like, count in zip(g.likes, g.counts):
            out.append(wire.ok(like.reply, video_id=like.media.video_id, like_count=count))
            rk = request_key_of(like)
            if rk is not None:
                outcome = {"video_id": like.media.video_id, "like_count": count}
                for waiter in self.requests.settled(rk, outcome, g.now):
                    out += self._replay(waiter, outcome)
            if like.claim is not None:
                claims.append(like.claim)
                if self.claim_revisions:  # only after a conflict
                    self.claim_revisions.pop(claim_key_of(like), None)
        if claims:
            out.append(ClaimsSettled(confirmed=tuple(claims)))
        self.conflicts_in_row = 0
        # The bus event of each like (its ``event_id`` is in its record).
        outbox = self.flying.outbox
        keys, events = like_events(g, self.read.book) if outbox.enabled else ((), ())
        return out + outbox.stored(g.group_id, "likes", min(landed.revisions.values(), default=0), keys, events)

    def _journal_landed(self, g: JournalGroup, landed: Landed) -> list:
        """The likes are counted: their journal entry holds them. Answered now;
        a group stores their documents, claims, curators and records next (``staged``)."""
        rev = landed.revisions[g.writes[0].key]
        self.journal_seen = max(self.journal_seen, rev)
        self._not_journaling(g)
        new = [StagedLike(like, count, f"{g.group_id}.{i}", g.now, rev)
               for i, (like, count) in enumerate(zip(g.likes, g.counts))]
        self.staged.add(new)
        out: list = []
        claims = []
        publish = self.flying.outbox.enabled
        for s in new:
            like = s.like
            ns, vid, user = like.namespace, like.media.video_id, liker(like)
            book = self.read.book(ns)
            book.records.liked(vid, user, like.username or user, g.now)
            staged_in_memory(book, s)
            self.read.ranking_moved(ns, "liked")
            out.append(wire.ok(like.reply, video_id=vid, like_count=s.count))
            if like.claim is not None:
                claims.append(like.claim)
            if publish:  # its event goes out with the others landed in this mailbox batch (``events_out``)
                self.events.append((record_key(ns, vid, user), journal_event(s, book)))
                self.event_keys.add(self.events[-1][0])
        if claims:
            out.append(ClaimsSettled(confirmed=tuple(claims)))
        return out

    def _not_journaling(self, g: JournalGroup) -> None:
        for like in g.likes:
            item = (like.namespace, like.media.video_id)
            self.journaling[item] -= 1
            if not self.journaling[item]:
                del self.journaling[item]

    def events_out(self) -> list:
        """The events of the journal writes landed since last asked, as one
        publish: their records wait for it, and the likes bucket's mark stays
        below what they will land at."""
        if not self.events:
            return []
        keys, events = zip(*self.events)
        self.events = []
        self.event_keys = set()
        outbox = self.flying.outbox
        return outbox.stored(f"{self.new_id()}-events", "likes", outbox.last_landed["likes"] + 1, keys, events)

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

    def purge(self) -> list:
        """Entries up to the mark are stored: out of the journal."""
        if self.journal_stored <= self.purged:
            return []
        self.purged = self.journal_stored
        return [PurgeJournal(self.home, self.purged)]

    def _records_landed(self, g: LikeGroup, landed: Landed) -> None:
        newest: dict[tuple[str, str], int] = {}  # the revision of each user's newest record of the group
        for like in g.likes:
            user = liker(like)
            if user:
                book = self.read.book(like.namespace)
                book.records.liked(like.media.video_id, user, like.username or user, g.now)
                if like.curator:
                    book.curators.credited(like.media.video_id, user, g.now, like.curator)
        for like in [*g.likes, *(s.like for s in g.staged)]:
            user = liker(like)
            if user:
                rev = landed.revisions.get(record_key(like.namespace, like.media.video_id, user), 0)
                if rev > newest.get((like.namespace, user), 0):
                    newest[(like.namespace, user)] = rev
        for key, v in g.values.items():
            if "likes_given" in v:  # the totals its records carry (a found landing lists only what still holds them)
                ns = key.split("/")[1]
                rev = newest.get((ns, v["user"]), 0)
                if rev:
                    self.read.book(ns).records.offer_totals(v["user"], v["username"], v["likes_given"], rev)
            elif "likes_received" in v:
                curators = self.read.book(key.split("/")[1]).curators
                rev = landed.revisions.get(key)
                if rev is not None and rev > curators.of("likes", v["user"])[1]:
                    curators.set("likes", v["user"], v["username"], v["likes_received"], rev, g.hours[key])


    def conflicted(self, g: LikeGroup, conflict: Conflict, now: float) -> list:
        assert isinstance(g, LikeGroup), "a journal write expects nothing but the fence"
        take_totals_of_records(self.read, conflict)
        for key, v in g.values.items():
            if "likes_received" in v:
                self.read.book(key.split("/")[1]).curators.take("likes", v["user"], conflict.current.get(key))
        for (ns, vid) in g.before:
            entry = conflict.current.get(likes_key(ns, vid))
            self.read.book(ns).set_likes(vid, entry if entry is not None else StoredEntry(0, None))
        out: list = []
        retry: list[LikeReserved] = []
        confirmed, released = [], []
        give_up = self.conflicts_in_row + 1 >= MAX_CONFLICTS
        for like in g.likes:
            settled = self._settled_by_kv(like, conflict, now, confirmed)
            if settled is not None:
                out += settled
            elif give_up:
                rk = request_key_of(like)
                for f in [like] + (self.requests.settled(rk, None, now) if rk is not None else []):
                    out.append(wire.error(f.reply, "internal_error", "the like's keys keep changing under us"))
                    if getattr(f, "claim", None) is not None:
                        released.append(f.claim)
            else:
                retry.append(like)
        self.pending.extendleft(reversed(retry))
        for s in g.staged:  # counted and answered: only KV's revisions are news
            if s.like.claim is not None:
                entry = conflict.current.get(claim_key_of(s.like))
                self.claim_revisions[claim_key_of(s.like)] = entry.revision if entry is not None else 0
        if g.staged:
            self.staged.put_back(g.staged)
            entry = conflict.current.get(journal_mark_key(self.home))
            self.mark_revision = entry.revision if entry is not None else 0
            stored, _ = mark_of_entry(entry, self.journal_identity)
            if stored > self.journal_stored:
                # A group of an earlier life of this writer landed after this one
                # read KV (the old life's batch was still in flight when it died):
                # what it stored, and the records and totals it wrote, are all in KV.
                # Start again from there (the supervisor restarts the writer).
                raise JournalMarkMoved(f"the journal's mark moved to {stored} under group {g.group_id}")
            if give_up and any(s in self.staged for s in g.staged):
                # Someone else keeps writing keys of likes we counted: start again from KV.
                raise RuntimeError(f"likes group {g.group_id}: its journalled likes' keys keep changing under us")
        self.conflicts_in_row = 0 if give_up else self.conflicts_in_row + 1
        if confirmed or released:
            out.append(ClaimsSettled(tuple(confirmed), tuple(released)))
        return out

    def _settled_by_kv(self, like: LikeReserved, conflict: Conflict, now: float, confirmed: list) -> list | None:
        """What KV holds may answer a like whose batch conflicted: a live request
        key (an earlier life stored it) or a live claim (a duplicate). None: it
        must be tried again, at the revisions KV holds now."""
        rk = request_key_of(like)
        if rk is not None:
            entry = conflict.current.get(request_key(rk))
            if entry is not None and entry.value is not None and parse_iso(entry.value["expires_at"]) > now:
                outcome = {"video_id": entry.value["video_id"], "like_count": entry.value["like_count"]}
                out = self._replay(like, outcome)
                for waiter in self.requests.settled(rk, outcome, now):
                    out += self._replay(waiter, outcome)
                return out
            self.claim_revisions[request_key(rk)] = entry.revision if entry is not None else 0
        c = like.claim
        if c is None:
            return None
        key = claim_key_of(like)
        entry = conflict.current.get(key)
        if entry is not None and entry.value is not None and parse_iso(entry.value["expires_at"]) > now:
            count = self.read.book(c.namespace).like_count(c.video_id)
            confirmed.append(attrs.evolve(c, expires_at=parse_iso(entry.value["expires_at"])))
            self.claim_revisions.pop(key, None)
            return [wire.duplicate(d.reply, video_id=c.video_id, like_count=count)
                    for d in [like] + (self.requests.settled(rk, None, now) if rk is not None else [])]
        self.claim_revisions[key] = entry.revision if entry is not None else 0
        return None

    def fenced(self, g: LikeGroup | JournalGroup, now: float) -> list:
        """Nothing of the group was stored and nothing more will be: another
        daemon is active. Each like hears so, truly. (Journalled likes it
        held stay staged in KV: the active daemon stores them.)"""
        out: list = []
        released = []
        if isinstance(g, JournalGroup):
            self._not_journaling(g)
        for like in g.likes:
            rk = request_key_of(like)
            for r in [like] + (self.requests.settled(rk, None, now) if rk is not None else []):
                out.append(wire.error(r.reply, "unavailable", FENCED))
                if getattr(r, "claim", None) is not None:
                    released.append(r.claim)
        if released:
            out.append(ClaimsSettled(released=tuple(released)))
        return out

    def _replay(self, msg: LikeReserved | LikeDuplicate, outcome: dict) -> list:
        """Answer a retry with the original outcome; it counts nothing."""
        out: list = [wire.ok(msg.reply, **outcome)]
        if isinstance(msg, LikeReserved) and msg.claim is not None:
            out.append(ClaimsSettled(released=(msg.claim,)))
        return out
