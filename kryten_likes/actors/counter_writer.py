"""counter_writer: every counter document, stored exactly once; the rankings.

Theory of operation
-------------------
The counter writer is one actor made of explicit parts:

=======================  ============================================  ==========
part                     owns                                          bucket
=======================  ============================================  ==========
``LikesCommitter``       likes waiting, request memory, claim          likes
                         revisions learnt from conflicts
``AnalyticsCommitter``   plays, queue events, applies waiting;         analytics
                         enqueues in flight
``Corrections``          operators' corrections waiting                either
``ReadModel``            every namespace's book (counts, rankings,     -
                         revisions), ranking snapshots
``GroupsInFlight``       the groups sent and not finished              -
=======================  ============================================  ==========

Group commit. Work waits in each committer; whenever ``flush`` runs, each
turns what waits into *groups*, one atomic KV batch each, which the shell
stores and reports back as ``CommitFinished``. The outcome goes to the
committer whose group it was (``Landed``: the read model takes the new
documents and the requests are answered; ``Conflict``: nothing was stored,
the read model takes what KV really holds, the work waits again; ``Fenced``:
another daemon is active, the requests hear ``unavailable``).

While a group is in flight new work for its documents only waits, so under
load each batch carries everything that arrived during the previous one: the
cost of a KV round trip is shared by all likes waiting, which is how the
daemon keeps up with the bus. Likes of *other* items need not wait: up to
``MAX_LIKE_GROUPS`` likes groups fly at once when their documents are
disjoint (a document a group in flight writes has no known next revision).
A group that lands sends the next one before its replies go out, so the bus
stores the next batch while the daemon answers the last.

Why one actor and not three: a like group's expected revisions are read from
the read model, which only a landed group moves, and a correction must wait
for the likes or analytics group writing its document. As one actor these
are plain reads of its own state; as three, each like would cost messages
between them and the "is anyone writing this document" question would become
a protocol. The parts keep their own state, so each is tested on its own.

Why not chain groups of one hot item (expect the revision the group in
flight will get)? Revisions are stream sequences, and a write by anyone else
can take exactly the sequence predicted; the later group would then land on
a count the earlier one never stored. nats-server refuses
``Nats-Expected-Last-Msg-Id`` inside an atomic batch (err_code 10177, 2.15.1).
"""

from __future__ import annotations

from collections.abc import Callable

from ..messages import (
    AdjustRequested, ApplyFinished, CommitFinished, EnqueueRefused, EnqueueStarted, EnqueuesInFlight, EventPassed,
    LikeDuplicate, LikeReserved, LikersOfItem, PlayStarted, QueueConfirmed, QueueObserved, ReplyTo, Rewind,
    ActivityAsked, StatsAsked, Tick, TopAsked, UnlikeForItem, UserLikesAsked,
)
from ..clock import iso
from ..domain import Claim
from ..effects import Commit, PutDocument
from ..messages import EventsPublished
from ..store import documents as docs
from ..store.keys import events_mark_key
from ..store.values import MAX_GROUP_WRITES, Fenced, Landed
from .adjustments import Corrections
from .analytics_committer import AnalyticsCommitter
from .counter_book import CounterBook
from .groups import (
    MAX_CONFLICTS, AnalyticsGroup, CorrectionGroup, Group, GroupsInFlight, JournalGroup, LikeGroup, UnlikeGroup,
)
from .likes_committer import MAX_LIKE_GROUPS, PIPELINE_MIN, LikesCommitter
from .read_model import ReadModel
from .request_memory import RequestMemory
from .unlikes import Unlikes
from .event_bodies import republish
from .outbox import Outbox


class CounterWriter:
    def __init__(self, books: dict[str, CounterBook], namespace: str, *, group_prefix: str,
                 max_batch: int = MAX_GROUP_WRITES, materialise_every: float = 10.0, recover: bool = False,
                 retry_window: float = 600.0, epoch: int = 0, await_applies: bool = False,
                 max_remembered_requests: int = 100_000,
                 max_like_groups: int = MAX_LIKE_GROUPS, pipeline_min: int = PIPELINE_MIN,
                 unlike_window: float = 600.0, publish_events: bool = False, journal_max: int = 0,
                 journal_identity: str | None = None) -> None:
        self.namespace = namespace
        self._prefix = group_prefix
        self._seq = 0
        self._answered: tuple[JournalGroup, CommitFinished, float] | None = None  # (answers_first)
        self.read = ReadModel(books, namespace, materialise_every)
        own = books.get(namespace)
        self.outbox = Outbox(publish_events, own.event_marks if own is not None else None)
        self.flying = GroupsInFlight(self.outbox)
        # What a previous life stored and may not have published: out first.
        self._republish = republish(books, namespace, self.outbox, group_prefix) if publish_events else []
        requests = RequestMemory(retry_window, max_remembered_requests)
        for ns, b in books.items():
            for entry in b.requests:
                requests.load(ns, entry)
            b.requests.clear()
        self.likes = LikesCommitter(self.read, self.flying, self._new_id, requests, max_batch=max_batch,
                                    max_groups=max_like_groups, pipeline_min=pipeline_min, journal_max=journal_max,
                                    home=namespace, journal_identity=journal_identity)
        self._republish += self.likes.journal.staged_events()
        self.analytics = AnalyticsCommitter(self.read, self.flying, self._new_id, max_batch=max_batch, epoch=epoch,
                                            recover=recover, await_applies=await_applies)
        self.corrections = Corrections(self.read, self.flying, self._new_id)
        self.likes.correction_waiting = self.corrections.waiting_for
        self.corrections.likes_unstored = self.likes.item_unstored
        self.unlikes = Unlikes(self.read, self.flying, self._new_id, requests, self.likes.waiting, unlike_window)
        self.likes.others_wait = lambda: bool(self.unlikes.pending or self.corrections.pending)
        a = self.analytics
        self._steps: dict[type, Callable[[object, float], list]] = {
            LikeReserved: self.likes.take, LikeDuplicate: self.likes.take,
            PlayStarted: a.take, QueueObserved: a.take, EnqueueStarted: a.take, QueueConfirmed: a.take,
            EnqueueRefused: a.take, ApplyFinished: a.take, EventPassed: a.event_passed,
            EnqueuesInFlight: a.applies_known,
            AdjustRequested: self.corrections.take,
            TopAsked: self.read.top, StatsAsked: self.read.stats, ActivityAsked: self.read.activity, LikersOfItem: self.read.likers,
            UserLikesAsked: self.read.user_likes, UnlikeForItem: self.unlikes.take,
            CommitFinished: self._finished, Tick: self._tick, EventsPublished: self._published,
        }
        # Whose a finished group is; corrections first in flush: likes must not starve them.
        self._committers = {LikeGroup: self.likes, JournalGroup: self.likes, AnalyticsGroup: self.analytics, CorrectionGroup: self.corrections,
                            UnlikeGroup: self.unlikes}

    def _new_id(self) -> str:
        self._seq += 1
        return f"{self._prefix}{self._seq}"

    # --- what the shell and the supervisor ask --------------------------------------------

    @property
    def books(self) -> dict[str, CounterBook]:
        return self.read.books

    def peek(self, ns: str) -> CounterBook:
        return self.read.peek(ns)

    def book(self, ns: str) -> CounterBook:
        return self.read.book(ns)

    @property
    def last_event_seq(self) -> int:
        """The highest changeMedia event stored (queue events: ``read.last_seq("queue")``)."""
        return self.read.last_seq("play")

    def held(self) -> tuple[list[LikeReserved], list[PlayStarted]]:
        """The likes and plays this writer holds that are not stored yet."""
        return self.likes.held(), [c for c in self.analytics.held() if isinstance(c, PlayStarted)]

    def held_changes(self) -> list:
        return self.analytics.held()

    def held_applies(self) -> list[ApplyFinished]:
        return [c for c in self.analytics.held() if isinstance(c, ApplyFinished)]

    def held_adjusts(self) -> list[AdjustRequested]:
        return self.corrections.held()

    def held_waiters(self) -> list:
        return self.likes.held_waiters()

    def held_requests(self) -> list[ReplyTo]:
        """Every request taken and not answered (the supervisor answers them if the writer dies)."""
        return ([l.reply for l in self.likes.held()] + [f.reply for f in self.held_applies()]
                + [a.reply for a in self.held_adjusts()] + [w.reply for w in self.held_waiters()]
                + [u.reply for u in self.unlikes.held()])

    def held_claims(self) -> list[Claim]:
        """The reserved claims of those requests: the ledger must release them."""
        likes = self.likes.held() + [w for w in self.held_waiters() if isinstance(w, LikeReserved)]
        return [l.claim for l in likes if l.claim is not None]

    def playback_restart(self) -> Rewind:
        """Where playback starts again if this writer dies: what is stored
        (plays not stored come again from the event stream)."""
        np = self.read.book(self.namespace).now_playing
        stored = docs.media_of_now_playing(np.value if np is not None else None)
        media, started = stored if stored is not None else (None, 0.0)
        return Rewind(media, started, self.last_event_seq,
                      curator=docs.curator_of_now_playing(np.value if np is not None else None))

    # --- the step ----------------------------------------------------------------------------

    def step(self, msg: object, now: float) -> list:
        if self._answered is not None:
            raise RuntimeError("counter_writer: count_answered() is due before any other step")
        take = self._steps.get(type(msg))
        if take is None:
            raise TypeError(f"counter_writer cannot take {msg!r}")
        return self._note_sent(take(msg, now))

    def answers_first(self, msg: object, now: float) -> list | None:
        """The answers of a journal entry that landed while no like waits for
        the next: the shell sends them, then calls ``count_answered``, which
        counts the entry (staging, records, events: some 40 µs of the writer a
        lone like no longer waits for). None: ``step`` it whole. The shell
        takes no message between the two calls, so to every other message the
        landing is one step; the group leaves the flight at once (answered:
        if counting raises, nobody answers it again)."""
        if type(msg) is not CommitFinished or not isinstance(msg.outcome, Landed) or self.likes.pending:
            return None
        g = self.flying.get(msg.group_id)
        if type(g) is not JournalGroup:
            return None
        self.flying.remove(msg.group_id)
        self._answered = (g, msg, now)
        return self.likes.journal.answers(g)

    def count_answered(self) -> list:
        assert self._answered is not None, "answers_first first"
        g, msg, now = self._answered
        self._answered = None
        self.likes.journal.count(g, msg.outcome)
        return self._after_outcome(g, msg, now, [])

    def flush(self, now: float) -> list:
        """What is ready to go, after each batch of the mailbox: groups, and
        the events of the journal writes that landed in it (one publish)."""
        return self._send(now) + self.likes.journal.events_out()

    def _send(self, now: float) -> list:
        out, self._republish = self._republish, []
        # Unlikes before likes: a hot item's likes would otherwise always have
        # a group in flight when one lands, and its unlikes would wait forever.
        return out + self._note_sent(self.corrections.groups(now) + self.unlikes.groups(now)
                                     + self.likes.groups(now) + self.analytics.groups(now))

    def _note_sent(self, effects: list) -> list:
        for e in effects:
            if isinstance(e, Commit):
                self.outbox.sent(e.group_id, e.bucket)  # its revisions will come above what is known now
        return effects

    def _published(self, msg: EventsPublished, now: float) -> list:
        self.outbox.published(msg.group_id)
        return self.flush(now)  # likes of those records may go now

    def _finished(self, msg: CommitFinished, now: float) -> list:
        g = self.flying.get(msg.group_id)
        if g is None:
            return []  # a commit of a previous life of this actor
        # The group stays in flight until its outcome is applied: if applying
        # raises, held() still lists it and the supervisor answers for it.
        committer = self._committers[type(g)]
        if isinstance(msg.outcome, Fenced):
            out = committer.fenced(g, now)
        elif isinstance(msg.outcome, Landed):
            out = committer.landed(g, msg.outcome, now)
        else:
            out = committer.conflicted(g, msg.outcome, now)
        self.flying.remove(msg.group_id)
        return self._after_outcome(g, msg, now, out)

    def _after_outcome(self, g: Group, msg: CommitFinished, now: float, out: list) -> list:
        self.outbox.finished(msg.group_id, msg.outcome.revisions if isinstance(msg.outcome, Landed) else None)
        if type(g) is JournalGroup:
            # The next entry goes first (likes wait for it), then the replies;
            # groups are drafted by the flush after this mailbox batch: storing
            # a group of staged likes takes the writer milliseconds, which the
            # entry's likes would otherwise wait for their answers.
            return self._note_sent(self.likes.entries(now)) + out
        # The next group goes first: the bus stores it while the replies go out.
        return self._send(now) + out

    def _tick(self, msg: Tick, now: float) -> list:
        self.likes.requests.evict(now)
        out = self.read.materialise(now) + self.likes.journal.tick()
        marks = self.outbox.marks_to_store()
        if marks is not None:
            out.append(PutDocument("likes", events_mark_key(self.namespace),
                                   {**marks, "updated_at": iso(now), "schema_version": docs.SCHEMA}))
        return out


__all__ = ["MAX_CONFLICTS", "MAX_LIKE_GROUPS", "PIPELINE_MIN", "CounterWriter"]
