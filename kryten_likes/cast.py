"""The daemon's actors as data: one row each, read by the supervisor.

=================  ======================  ==================  =====  ==========================================
actor              core                    shell               ticks  after a crash (beyond answering its requests)
=================  ======================  ==================  =====  ==========================================
``apply``          ``Applies``             ``ApplyShell``      no     the writer hears nothing is in flight
``gateway``        ``Gateway``             ``ActorShell``      no     -
``rate_buckets``   ``RateBuckets``         ``ActorShell``      yes    -
``playback``       ``Playback``            ``ActorShell``      no     events read again from the first unstored
``dedupe_ledger``  ``DedupeLedger``        ``ActorShell``      yes    -
``counter_writer`` ``CounterWriter``       ``CounterWriter-    yes    events read again; playback restarts from
                                           Shell``                    what is stored (``playback_restart``)
=================  ======================  ==================  =====  ==========================================

A core factory builds a new core with its state loaded: the first
incarnations share the activation's start-up scan of KV, a restarted one
reads KV again (what a dead actor knew that was not stored is gone; what was
stored is all that counts).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import attrs

from .actors.apply import Applies
from .actors.apply_shell import ApplyShell
from .actors.counter_writer import CounterWriter
from .actors.like_journal import JOURNAL_MAX
from .actors.counter_writer_shell import CounterWriterShell
from .actors.dedupe_ledger import DedupeLedger
from .actors.gateway import Gateway
from .actors.playback import NowPlaying, Playback
from .actors.rate_buckets import RateBuckets, RatePolicy
from .actors.shell import ActorShell
from .config import Config
from .event_out import OutStream
from .events import EventFeed
from .lease_keeper import move_fence_again
from .mailboxes import Router
from .messages import EnqueuesInFlight
from .actors.playlist_entries import PlaylistEntries
from .startup import Snapshot, bound_to_stream, bridge_now_playing, bridge_playlist, first_unstored, load_snapshot
from .store import AtomicBucket
from .store.documents import curator_of_now_playing, media_of_now_playing
from .supervisor import ActorSpec

ACTORS = ("gateway", "rate_buckets", "playback", "dedupe_ledger", "counter_writer", "apply")


@attrs.define
class Cast:
    """What the core factories are made from: the activation's config,
    buckets, event feed and router, and the start-up scan."""

    config: Config
    nc: Any
    kryten: Any
    clock: Any
    analytics: AtomicBucket
    likes: AtomicBucket
    feed: EventFeed
    router: Router
    first: Snapshot  # the start-up scan, bound to the event stream
    stream_identity: dict
    _first_users: set = attrs.Factory(lambda: {"playback", "dedupe_ledger", "counter_writer"})
    writer: CounterWriter | None = None  # the current incarnation's core: what is stored
    published: Callable[[str, str, bytes], None] | None = None  # each event once the stream took it (the live stream)
    journal: AtomicBucket | None = None  # the lone likes' journal (None: every like goes in a group)

    @property
    def ns(self) -> str:
        return self.config.analytics.namespace

    def rows(self) -> list[ActorSpec]:
        c = self.config
        return [
            ActorSpec("apply", self.applies, partial(ApplyShell, kryten=self.kryten, channel=c.cytube.channel,
                                                     timeout=c.cytube.bridge_timeout_seconds),
                      after_crash=self.apply_died),
            ActorSpec("gateway", self.gateway),
            ActorSpec("rate_buckets", self.rate_buckets, ticks=True),
            ActorSpec("playback", self.playback, after_crash=self.read_events_again),
            ActorSpec("dedupe_ledger", self.dedupe_ledger, ticks=True),
            ActorSpec("counter_writer", self.counter_writer,
                      partial(CounterWriterShell, buckets={"analytics": self.analytics, "likes": self.likes,
                                                           "journal": self.journal},
                              out=OutStream(self.nc.jetstream(), c.nats.subject_prefix, c.cytube.channel,
                                            c.storage.replicas, self.ns, self.nc, self.published)),
                      ticks=True, after_crash=self.writer_died),
        ]

    def stored_up_to(self) -> int:
        """The first event the counter documents do not hold (the feed reads from there)."""
        book = self.writer.book(self.ns) if self.writer is not None else self.first.books.get(self.ns)
        return first_unstored(book)

    async def _snapshot_for(self, name: str) -> Snapshot:
        # The first incarnations share the start-up scan; a restart reads KV again.
        if name in self._first_users:
            self._first_users.discard(name)
            return self.first
        return bound_to_stream(await load_snapshot(self.analytics, self.likes, self.clock.now(), self.journal), self.ns,
                               self.stream_identity)

    # --- core factories ---------------------------------------------------------------

    async def gateway(self) -> Gateway:
        return Gateway(self.ns)

    async def rate_buckets(self) -> RateBuckets:
        lim, likes = self.config.limits, self.config.likes
        return RateBuckets(RatePolicy(likes.rate_per_minute, likes.rate_burst, lim.global_likes_per_second,
                                      lim.global_likes_burst))

    async def playback(self) -> Playback:
        book = (await self._snapshot_for("playback")).books.get(self.ns)
        stored = media_of_now_playing(book.now_playing.value) if book and book.now_playing else None
        current = None
        entries, current_uid = await bridge_playlist(self.nc, self.config.cytube.channel)
        if stored is not None:
            current = NowPlaying(*stored, curator_of_now_playing(book.now_playing.value))
        else:
            media = await bridge_now_playing(self.nc, self.config.cytube.channel)
            if media is not None:
                current = NowPlaying(media, self.clock.now())
        last_seq = int(book.global_value().get("last_event_seq", 0)) if book else 0
        return Playback(self.ns, current, last_seq, epoch=self.feed.epoch,
                        entries=PlaylistEntries(entries, current_uid))

    async def dedupe_ledger(self) -> DedupeLedger:
        snap = await self._snapshot_for("dedupe_ledger")
        likes = self.config.likes
        return DedupeLedger(likes.dedupe_window_seconds, likes.dedupe_enabled, snap.claims)

    async def counter_writer(self) -> CounterWriter:
        first_life = "counter_writer" in self._first_users
        if not first_life:
            # What its predecessor sent and is not stored yet: stored before the read below, or never.
            for bucket in (self.analytics, self.likes, self.journal):
                if bucket is not None:
                    await move_fence_again(bucket)
        snap = await self._snapshot_for("counter_writer")
        likes = self.config.likes
        # Only at the activation's start is what a previous life left half-done
        # truly dead. A restarted writer learns from the apply actor what is in flight.
        self.writer = CounterWriter(snap.books, self.ns, group_prefix=f"{uuid.uuid4().hex[:12]}-",
                                    recover=first_life, retry_window=likes.retry_window_seconds,
                                    epoch=self.feed.epoch, max_remembered_requests=likes.max_remembered_requests,
                                    await_applies=not first_life, unlike_window=likes.unlike_window_seconds,
                                    publish_events=True, journal_max=self._journal_max(),
                                    journal_identity=self.journal.identity if self.journal else None)
        return self.writer

    def _journal_max(self) -> int:
        """Journal writes in flight at once. On a clustered stream nats-server
        refuses a second write expecting the fence while the first is still
        being stored (store/batch.py, ``EXPECTATION_IN_PROCESS``): one at a time."""
        if not self.journal:
            return 0
        return JOURNAL_MAX if self.config.storage.replicas == 1 else 1

    async def applies(self) -> Applies:
        return Applies(id_prefix=f"{uuid.uuid4().hex[:12]}-")

    # --- after a crash ------------------------------------------------------------------

    def apply_died(self, dead: ActorShell) -> None:
        # Its enqueues died with it: nothing of it is in flight any more.
        self.router.send(EnqueuesInFlight(()))

    def read_events_again(self, dead: ActorShell) -> int:
        """Events held by a dead playback or counter writer are read again from
        the stream, from the first one not stored (see EventFeed)."""
        return self.feed.rewind(self.stored_up_to())

    def writer_died(self, dead: ActorShell) -> None:
        # (The dead writer is still the core on record: its book is what is stored.)
        epoch = self.read_events_again(dead)
        self.router.send(attrs.evolve(dead.core.playback_restart(), epoch=epoch))
