"""Which staged likes the next group stores, and what its outcome means to
them: the second half of the journal committer (journal_committer.py:
entries, their landing, events), kept apart so that each reads in a
screen or two.

``StagedStoring`` is ``JournalCommitter``'s base: it uses the committer's
state (annotated below) and adds none of its own.
"""

from __future__ import annotations

from collections.abc import Callable

from ..clock import iso
from ..messages import LikeReserved
from ..store import documents as docs
from ..store.keys import curator_key, journal_mark_key, likes_key, record_key, user_key
from ..store.values import MAX_GROUP_WRITES, Conflict, Landed
from .groups import GroupsInFlight, JournalGroup, LikeGroup, StagedLike
from .like_journal import mark_of_entry, stage_rows
from .like_writes import Item, claim_key_of, curator_of, liker, request_key_of
from .read_model import ReadModel
from .request_memory import RequestKey
from .staged_queue import StagedQueue

# Staged likes stored together without waiting for a tick: about a full
# group of likes of one item (a claim and a record each; the rest of the
# group's writes, its documents and the mark, within the 10 left over).
# Only when a group is drafted: ``choose`` still stops at the writes' cap.
STAGED_BATCH = (MAX_GROUP_WRITES - 10) // 2


class JournalMarkMoved(RuntimeError):
    """Another life of the writer stored journalled likes this one holds."""


class StagedStoring:
    read: ReadModel
    flying: GroupsInFlight
    max_batch: int
    home: str
    identity: str | None
    staged: StagedQueue
    staged_wanted: bool
    store_through: int
    journal_stored: int
    mark_revision: int
    event_keys: set[str]
    staged_requests: dict[RequestKey, tuple[float, dict]]

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

    def stored(self, g: LikeGroup, landed: Landed) -> dict[tuple[str, str], int]:
        """A group that stored staged likes landed: they are in their item's
        document and their user's totals now, and the mark moved. Returns
        how many left each item's staged count, unranked: the landing moves
        each item's ranking once (``CounterBook.set_likes_written``)."""
        unstaged: dict[tuple[str, str], int] = {}
        by_namespace: dict[str, list[StagedLike]] = {}
        for s in g.staged:
            by_namespace.setdefault(s.like.namespace, []).append(s)
            rk = request_key_of(s.like)
            if rk is not None:
                self.staged_requests.pop(rk, None)  # (its key holds it now, and memory)
        for ns, staged in by_namespace.items():
            for vid, n in self.read.book(ns).stage(stage_rows(staged), -1, ranked=False).items():
                unstaged[(ns, vid)] = -n
        if g.staged:
            mark = journal_mark_key(self.home)
            self.journal_stored = max(self.journal_stored, g.values[mark]["revision"])
            self.mark_revision = max(self.mark_revision, landed.revisions.get(mark, 0))
        return unstaged

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


def _entry_cost(entry: list[StagedLike], per_item: dict[Item, int], curators: set[tuple[str, str]]) -> int:
    """The writes storing a journal entry adds to a group: a record each,
    a claim and a request key each that has one (at most), each item's
    document and curator's totals once."""
    items = {(s.like.namespace, s.like.media.video_id) for s in entry} - per_item.keys()
    curs = {(s.like.namespace, c) for s in entry if (c := curator_of(s.like))} - curators
    return (len(entry) + sum((s.like.claim is not None) + (s.like.reply.correlation_id is not None) for s in entry)
            + len(items) + len(curs))
