"""One activation: what the *active* daemon of a namespace runs while it holds
the lease (``lease_keeper``): the actors under their supervisor, the event
feed, the ticker and the command subscriptions.

A daemon that steps down first stops taking requests, lets what it holds be
answered (a batch behind the moved fence is ``Fenced``: ``unavailable``, true
since nothing of it was stored), then cancels all of this. Becoming active
again starts it anew, as a restart does: counts from KV, the event feed from
the first unstored event, claims and rate buckets rebuilt.
"""

from __future__ import annotations

import gc
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import anyio
import attrs
from anyio.abc import ObjectSendStream

from . import wire
from .actors.apply import Applies
from .actors.apply_shell import ApplyShell
from .actors.counter_writer import CounterWriter
from .actors.counter_writer_shell import CounterWriterShell
from .actors.dedupe_ledger import DedupeLedger
from .actors.gateway import COMMANDS, Gateway
from .actors.playback import NowPlaying, Playback
from .actors.rate_buckets import RateBuckets, RatePolicy
from .actors.shell import ActorShell, Bus, FaultHook, MailboxFull, Router
from .clock import Clock
from .config import Config, event_channel_token
from .events import EVENT_WINDOW, EventFeed, open_event_source
from .messages import EnqueuesInFlight, Inbound, ReplyTo
from .startup import Snapshot, bound_to_stream, bridge_now_playing, first_unstored, give_back_free_memory, load_snapshot
from .store import AtomicBucket
from .store.documents import media_of_now_playing
from .supervisor import ActorSpec, RestartPolicy, Supervisor

log = logging.getLogger(__name__)

ACTORS = ("gateway", "rate_buckets", "playback", "dedupe_ledger", "counter_writer", "apply")

# Places in each mailbox for the actors' own messages: a Tick (at most one
# waits in a mailbox: Router.tick), what a crash makes the supervisor and
# after_crash send (a rewind, EnqueuesInFlight, WriterRestarted, a released
# ClaimsSettled), commits finishing (CommitFinished: at most MAX_LIKE_GROUPS = 3
# likes batches and one analytics batch in flight), and the apply actor's
# traffic (one enqueue in flight per apply, at most 4 applies: EnqueueAnswered,
# EnqueueStarted, QueueConfirmed, ApplyProgress, EnqueuesInFlight of 1 + 4).
INTERNAL_ROOM = 64


def mailbox_reserve(max_in_flight: int) -> int:
    """The part of each mailbox kept for requests and the actors' own messages.

    - Requests: admission (``Bus.admit``) lets at most ``max_in_flight`` in,
      each one message in one mailbox at a time (a like travels gateway →
      rate_buckets → playback → dedupe_ledger → counter_writer; the gateway's
      mailbox holds nothing else).
    - What outlives a request's reply: the counter writer answers a batch's
      requests and tells the ledger (``ClaimsSettled``, one per batch of at
      least one request): up to ``max_in_flight`` more while the ledger catches up.
    - ``INTERNAL_ROOM`` for the rest (above).
    """
    return 2 * max_in_flight + INTERNAL_ROOM


def mailbox_capacity(max_in_flight: int) -> int:
    """Each mailbox's bound: the reserve, plus ``EVENT_WINDOW`` for the bridge's
    events (JetStream hands out at most that many unacknowledged, in fetches of
    at most 256). The event feed waits for room beyond the reserve
    (``Router.send_with_room``), so events of a voided reading still waiting
    in a mailbox never crowd out requests. With the default ``max_in_flight``
    of 20 000: 2 × 20 000 + 64 + 2 000 = 42 064 places, none allocated until used.

    A send that would still overflow raises ``MailboxFull`` in the sender: in
    an actor, that incarnation ends and the supervisor restarts it (its
    requests are answered ``internal_error``); a request that finds the
    gateway's mailbox full is answered ``unavailable``; a tick is skipped.
    """
    return mailbox_reserve(max_in_flight) + EVENT_WINDOW


@attrs.define
class Surroundings:
    """What an activation is given by the daemon that runs it."""

    nc: Any
    kryten: Any
    config: Config
    clock: Clock
    fault: FaultHook | None
    tick_seconds: float
    analytics: AtomicBucket
    likes: AtomicBucket
    bus_watchers: list[Callable]  # metrics, the chat voice


@attrs.define
class Activation:
    """A running activation, as the daemon (health, metrics, chat) sees it."""

    supervisor: Supervisor
    bus: Bus
    router: Router
    inboxes: dict
    subs: list = attrs.Factory(list)

    def global_counters(self, ns: str) -> dict:
        writer = self.supervisor.incarnations.get("counter_writer")
        return writer.core.book(ns).global_value() if writer is not None else {}

    def mailbox_depths(self) -> dict:
        return {n: self.inboxes[n].statistics().current_buffer_used for n in ACTORS}

    async def stop_taking_requests(self) -> None:
        subs, self.subs = self.subs, []
        for sub in subs:
            try:
                await sub.unsubscribe()
            except Exception:  # the connection may be gone: so is the subscription
                pass


async def serve_active(s: Surroundings, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
    config, clock, nc = s.config, s.clock, s.nc
    ns = config.analytics.namespace
    pfx = config.nats.subject_prefix
    js = nc.jetstream()
    analytics, likes = s.analytics, s.likes
    source = await open_event_source(js, event_channel_token(config.cytube.channel), ns, config.storage.replicas)

    sends: dict[str, ObjectSendStream] = {}
    inboxes = {}
    capacity = mailbox_capacity(config.limits.max_in_flight)
    for name in ACTORS:
        sends[name], inboxes[name] = anyio.create_memory_object_stream(capacity)
    router = Router(sends, reserve=mailbox_reserve(config.limits.max_in_flight))
    bus = Bus(nc, config.limits.max_in_flight, watchers=list(s.bus_watchers))
    first = bound_to_stream(await load_snapshot(analytics, likes, clock.now()), ns, source.identity)
    # The start-up state is long-lived: keep it out of every later collection
    # (100 000 items are many objects; scanning them costs pauses).
    gc.collect()
    gc.freeze()
    give_back_free_memory()

    def stored_up_to() -> int:
        writer = supervisor.incarnations.get("counter_writer")
        return first_unstored(writer.core.book(ns) if writer is not None else first.books.get(ns))

    feed = EventFeed(js, source, router, config.storage.replicas, stored_up_to)
    feed.rewind(first_unstored(first.books.get(ns)))
    first_users = {"playback", "dedupe_ledger", "counter_writer"}

    async def snapshot_for(name: str) -> Snapshot:
        # The first incarnations share the start-up scan; a restart reads KV again.
        if name in first_users:
            first_users.discard(name)
            return first
        return bound_to_stream(await load_snapshot(analytics, likes, clock.now()), ns, source.identity)

    def shell(name: str, core: Any, cls: type = ActorShell, **kw: Any) -> ActorShell:
        return cls(name, core, router, bus, clock, s.fault, **kw)

    async def start_gateway() -> ActorShell:
        return shell("gateway", Gateway(ns))

    async def start_rate_buckets() -> ActorShell:
        lim = config.limits
        return shell("rate_buckets", RateBuckets(RatePolicy(
            config.likes.rate_per_minute, config.likes.rate_burst,
            lim.global_likes_per_second, lim.global_likes_burst)))

    async def start_playback() -> ActorShell:
        book = (await snapshot_for("playback")).books.get(ns)
        stored = media_of_now_playing(book.now_playing.value) if book and book.now_playing else None
        current = None
        if stored is not None:
            current = NowPlaying(*stored)
        else:
            media = await bridge_now_playing(nc, config.cytube.channel)
            if media is not None:
                current = NowPlaying(media, clock.now())
        last_seq = int(book.global_value().get("last_event_seq", 0)) if book else 0
        return shell("playback", Playback(ns, current, last_seq, epoch=feed.epoch))

    async def start_ledger() -> ActorShell:
        snap = await snapshot_for("dedupe_ledger")
        return shell("dedupe_ledger", DedupeLedger(config.likes.dedupe_window_seconds,
                                                   config.likes.dedupe_enabled, snap.claims))

    async def start_writer() -> ActorShell:
        first_life = "counter_writer" in first_users
        snap = await snapshot_for("counter_writer")
        # Only at the activation's start is what a previous life left half-done
        # truly dead. A restarted writer learns from the apply actor what is in flight.
        core = CounterWriter(snap.books, ns, group_prefix=f"{uuid.uuid4().hex[:12]}-", recover=first_life,
                             retry_window=config.likes.retry_window_seconds, epoch=feed.epoch,
                             max_remembered_requests=config.likes.max_remembered_requests,
                             await_applies=not first_life)
        return shell("counter_writer", core, CounterWriterShell,
                     buckets={"analytics": analytics, "likes": likes})

    async def start_apply() -> ActorShell:
        return shell("apply", Applies(id_prefix=f"{uuid.uuid4().hex[:12]}-"), ApplyShell,
                     kryten=s.kryten, channel=config.cytube.channel, timeout=config.cytube.bridge_timeout_seconds)

    specs = [ActorSpec("apply", start_apply), ActorSpec("gateway", start_gateway),
             ActorSpec("rate_buckets", start_rate_buckets), ActorSpec("playback", start_playback),
             ActorSpec("dedupe_ledger", start_ledger), ActorSpec("counter_writer", start_writer)]
    sv = config.supervisor
    policy = RestartPolicy(sv.max_restarts, sv.period_seconds, sv.backoff_initial_seconds, sv.backoff_max_seconds)

    def after_crash(dead: ActorShell) -> None:
        # Events held by a dead playback or counter writer are read again from
        # the stream, from the first one not stored (see EventFeed).
        if dead.name == "apply":
            # Its enqueues died with it: nothing of it is in flight any more.
            router.send(EnqueuesInFlight(()))
            return
        if dead.name not in ("playback", "counter_writer"):
            return
        # (The dead writer is still the incarnation on record: its book is what is stored.)
        epoch = feed.rewind(stored_up_to())
        if dead.name == "counter_writer":
            router.send(attrs.evolve(dead.core.playback_restart(), epoch=epoch))

    supervisor = Supervisor(specs, inboxes, router, bus, clock, policy, after_crash)
    activation = Activation(supervisor, bus, router, inboxes)

    async def on_request(msg: Any) -> None:
        command = msg.subject.rsplit(".", 1)[-1]
        if not bus.admit():
            cid = wire.correlation_id_of(msg.data)
            if msg.reply:
                await bus.send(msg.reply, wire.error(ReplyTo(msg.reply, cid, command), "unavailable",
                                                     "the daemon is at capacity; retry").body)
            return
        inbound = Inbound.of(command, msg.data, msg.reply or None, time.monotonic())
        try:
            router.send(inbound)
        except MailboxFull as exc:  # not with admission as it is (see mailbox_capacity); answered all the same
            log.error("%s", exc)
            await bus.reply(wire.error(attrs.evolve(inbound.reply, correlation_id=wire.correlation_id_of(msg.data)),
                                       "unavailable", "the daemon is at capacity; retry"))

    async def ticker() -> None:
        while True:
            await anyio.sleep(s.tick_seconds)  # a periodic timer, not synchronisation
            for name in ("rate_buckets", "dedupe_ledger", "counter_writer"):
                router.tick(name)  # skipped while a tick still waits there

    async with anyio.create_task_group() as tg:
        await tg.start(supervisor.run)
        # Where kryten-playlist owns applies ([queue] apply_enabled = false) we
        # do not answer queue_apply at all: NATS would hand each request to both.
        served = [c for c in COMMANDS if c != "queue_apply" or config.queue.apply_enabled]
        # A queue group: should a stale active daemon (paused past its lease)
        # still be subscribed, each request goes to one of the two, never both.
        group = f"kryten-likes.{ns}"
        activation.subs = [await nc.subscribe(f"{pfx}.playlist.cmd.{c}", queue=group, cb=on_request)
                           for c in served]
        await nc.flush()  # the server knows our subscriptions before we say we serve
        tg.start_soon(feed.run)
        tg.start_soon(ticker)
        task_status.started(activation)
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await activation.stop_taking_requests()
