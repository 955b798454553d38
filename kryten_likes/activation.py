"""One activation: what the *active* daemon of a namespace runs while it holds
the lease (``lease_keeper``): the actors under their supervisor (their rows:
``cast``), the event feed and the command subscriptions (``bus``).

A daemon that steps down first stops taking requests, lets what it holds be
answered (a batch behind the moved fence is ``Fenced``: ``unavailable``, true
since nothing of it was stored), then cancels all of this. Becoming active
again starts it anew, as a restart does: counts from KV, the event feed from
the first unstored event, claims and rate buckets rebuilt.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

import anyio
import attrs

from .actors.gateway import COMMANDS
from .actors.shell import FaultHook
from .bus import Bus, CommandSubscriptions
from .cast import ACTORS, Cast
from .clock import Clock
from .config import Config, event_channel_token
from .events import EventFeed, open_event_source
from .mailboxes import Router, open_mailboxes
from .startup import bound_to_stream, first_unstored, give_back_free_memory, load_snapshot
from .store import AtomicBucket
from .supervisor import RestartPolicy, Supervisor


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
    bus_watchers: list[Callable]  # metrics, the chat voice, HTTP's requests
    published: Callable[[str, str, bytes], None] | None = None  # each event as published (HTTP's live stream)
    journal: AtomicBucket | None = None  # the lone likes' journal (None: every like goes in a group)


@attrs.define
class Activation:
    """A running activation, as the daemon (health, metrics, chat) sees it."""

    supervisor: Supervisor
    bus: Bus
    router: Router
    inboxes: dict
    commands: CommandSubscriptions
    # False once it steps down or stops: requests from inside the process
    # (HTTP, chat) are refused as the bus's are by closing the subscriptions.
    taking_requests: bool = True

    def global_counters(self, ns: str) -> dict:
        writer = self.supervisor.incarnations.get("counter_writer")
        return writer.core.book(ns).global_value() if writer is not None else {}

    def likes_unstored(self) -> int:
        """Likes answered and not yet in their documents (actors/like_journal.py)."""
        writer = self.supervisor.incarnations.get("counter_writer")
        return writer.core.likes.journal.unstored() if writer is not None else 0

    async def likes_stored(self) -> None:
        """Until every like answered is in its documents."""
        writer = self.supervisor.incarnations.get("counter_writer")
        if writer is not None:
            await writer.all_stored()

    def mailbox_depths(self) -> dict:
        return {n: self.inboxes[n].statistics().current_buffer_used for n in ACTORS}

    async def stop_taking_requests(self) -> None:
        self.taking_requests = False
        await self.commands.close()


async def serve_active(s: Surroundings, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
    config, ns = s.config, s.config.analytics.namespace
    source = await open_event_source(s.nc.jetstream(), event_channel_token(config.cytube.channel), ns,
                                     config.storage.replicas)
    router, inboxes = open_mailboxes(ACTORS, config.limits.max_in_flight)
    bus = Bus(s.nc, config.limits.max_in_flight, watchers=list(s.bus_watchers))
    first = bound_to_stream(await load_snapshot(s.analytics, s.likes, s.clock.now(), s.journal), ns,
                            source.identity)
    # The start-up state is long-lived: keep it out of every later collection
    # (100 000 items are many objects; scanning them costs pauses).
    gc.collect()
    gc.freeze()
    give_back_free_memory()
    # The feed reads from the first event not stored; what is stored, the cast knows (its writer's book).
    feed = EventFeed(s.nc.jetstream(), source, router, config.storage.replicas, lambda: cast.stored_up_to())
    cast = Cast(config, s.nc, s.kryten, s.clock, s.analytics, s.likes, feed, router, first, source.identity,
                published=s.published, journal=s.journal)
    feed.rewind(first_unstored(first.books.get(ns)))
    sv = config.supervisor
    policy = RestartPolicy(sv.max_restarts, sv.period_seconds, sv.backoff_initial_seconds, sv.backoff_max_seconds)
    supervisor = Supervisor(cast.rows(), inboxes, router, bus, s.clock, policy, fault=s.fault,
                            tick_seconds=s.tick_seconds)
    activation = Activation(supervisor, bus, router, inboxes, CommandSubscriptions(s.nc, bus, router))
    async with anyio.create_task_group() as tg:
        await tg.start(supervisor.run)
        # Where kryten-playlist owns applies ([queue] apply_enabled = false) we
        # do not answer queue_apply at all: NATS would hand each request to both.
        served = [c for c in COMMANDS if c != "queue_apply" or config.queue.apply_enabled]
        await activation.commands.open(config.nats.subject_prefix, served, ns)
        tg.start_soon(feed.run)
        task_status.started(activation)
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await activation.stop_taking_requests()
