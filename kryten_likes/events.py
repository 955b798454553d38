"""The durable event feed: the bridge's changeMedia and queue events, captured
in a JetStream stream the daemon declares and read through a durable pull
consumer.

Events that arrive while the daemon is down wait in the stream; an event is
acknowledged only after what it counts is stored (the counter writer acks),
and one delivered again is known by its stream sequence.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
import attrs
import nats.errors
from nats.js import api
from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError, NotFoundError

from .bridge_events import media_changed, queue_observed
from .event_marks import EventStream
from .domain import EventRef
from .messages import EntryQueued, QueueObserved

if TYPE_CHECKING:
    from .mailboxes import Router  # which imports EVENT_WINDOW from here

log = logging.getLogger(__name__)

CREATE_TIMEOUT = 20.0  # seconds to wait for the durable consumer to be made
EVENT_WINDOW = 2000  # events handed out and not yet acknowledged, at most (the consumer's max_ack_pending)
FETCH = 256  # events asked for at once while they keep coming
# How long a fetch waits. nats-py's fetch of many holds what came until it
# has them all or its pull request ends, so an event delivered to a request
# left open on the server waited for the end of the feed's own: play
# switches of 0.6 s (tests/test_event_feed.py). An idle feed asks for one
# event (returned the moment it comes) and waits long; after an event it
# asks for many, which waits this short while at most.
IDLE_WAIT = 1.0
BURST_WAIT = 0.1

# The bridge (kryten-robot) publishes on kryten.events.cytube.{channel}.*
# whatever our [nats] subject_prefix is: that prefix is for our own subjects.
BRIDGE_PREFIX = "kryten"
STREAM_ID = "kryten_likes_stream_id"  # the stream's metadata key naming it for good (event_marks)


@attrs.frozen
class EventSource:
    stream: str
    durable: str
    subjects: tuple[str, ...]
    identity: EventStream  # what the counted marks are bound to (event_marks)


def event_subjects(channel_token: str) -> tuple[str, str]:
    base = f"{BRIDGE_PREFIX}.events.cytube.{channel_token}"
    return f"{base}.changemedia", f"{base}.queue"


async def open_event_source(js: JetStreamContext, channel_token: str, namespace: str,
                            replicas: int) -> EventSource:
    subjects = event_subjects(channel_token)
    # Named after the subjects it captures (so an existing stream of an
    # earlier version, made with the default prefix, keeps its name).
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", f"{BRIDGE_PREFIX}_{channel_token}")
    stream = f"KRYTEN_LIKES_EVENTS_{safe}"
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        cfg = api.StreamConfig(name=stream, subjects=list(subjects), retention=api.RetentionPolicy.LIMITS,
                               max_age=7 * 24 * 3600, storage=api.StorageType.FILE, num_replicas=replicas,
                               discard=api.DiscardPolicy.OLD, metadata={STREAM_ID: uuid.uuid4().hex})
        try:
            info = await js.add_stream(cfg)
        except BadRequestError as exc:
            # Another stream may already capture these subjects (one stream per
            # subject is a server rule); then read from that one.
            try:
                stream = await js.find_stream_name_by_subject(subjects[0])
            except NotFoundError:
                raise exc from None
            log.info("using existing stream %s for %s", stream, subjects[0])
            info = await js.stream_info(stream)
    durable = re.sub(r"[^A-Za-z0-9_-]", "_", f"kryten_likes_{namespace}_{channel_token}")
    # What tells a stream made again under the same name apart: an id in its
    # metadata, replicated with its config (its "created" time is not: each
    # node of a cluster reports its own).
    ident = (info.config.metadata or {}).get(STREAM_ID)
    if not ident:  # made by an earlier version, or by someone else: name it once
        cfg = info.config
        cfg.metadata = {**(cfg.metadata or {}), STREAM_ID: uuid.uuid4().hex}
        info = await js.update_stream(cfg)
        ident = (info.config.metadata or {}).get(STREAM_ID, "")
    identity = EventStream(stream, ident, int(info.state.last_seq or 0))
    return EventSource(stream, durable, subjects, identity)


class EventFeed:
    """Reads the event stream through the daemon's durable consumer, in order.

    The counters remember the highest event sequence they stored (per kind),
    so events must reach them in stream order. JetStream keeps that order
    except for redeliveries, which come *after* newer events. So the feed
    never relies on redelivery to recover lost work: at start, whenever an
    actor that held events dies, and whenever a delivery is missing or comes
    out of order (a fetch lost with the connection, a redelivery after
    ``ack_wait``), it makes the consumer anew from the first event not yet
    stored (``rewind``) and begins a new *epoch*. After an actor's death the
    others drop events of older epochs still in their mailboxes; those come
    again, in order. Events read twice are known: playback passes what it
    has seen, the writer what it holds or has stored.
    """

    def __init__(self, js: JetStreamContext, source: EventSource, router: Router, replicas: int,
                 first_unstored: Callable[[], int]) -> None:
        self.js = js
        self.source = source
        self.router = router
        self.replicas = replicas
        self.first_unstored = first_unstored  # from the counter writer's stored documents
        self.epoch = 0
        self.start_seq = 1
        self._psub = None
        self._bound_epoch = -1
        self._consumer_seq = 0
        self._stream_seq = 0

    def rewind(self, start_seq: int) -> int:
        """Read again from ``start_seq``; events already handed out are void."""
        self.epoch += 1
        self.start_seq = max(1, start_seq)
        log.info("event feed: reading again from sequence %d (epoch %d)", self.start_seq, self.epoch)
        return self.epoch

    async def _bind(self) -> None:
        if self._psub is not None:
            try:
                await self._psub.unsubscribe()
            except Exception:  # the old subscription may already be gone
                pass
        try:
            await self.js.delete_consumer(self.source.stream, self.source.durable)
        except NotFoundError:
            pass
        cfg = api.ConsumerConfig(durable_name=self.source.durable, ack_policy=api.AckPolicy.EXPLICIT,
                                 ack_wait=30, max_ack_pending=EVENT_WINDOW, num_replicas=self.replicas,
                                 deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self.start_seq,
                                 filter_subjects=list(self.source.subjects))
        try:
            # Generous: on a cluster that just lost a node, making a replicated
            # consumer can take longer than an ordinary API call.
            await self.js.add_consumer(self.source.stream, cfg, timeout=CREATE_TIMEOUT)
        except nats.errors.TimeoutError:
            # The answer may be late, not the consumer: if it exists as asked,
            # use it. Deleting it and asking again could repeat for as long as
            # creating one takes longer than the wait.
            info = await self.js.consumer_info(self.source.stream, self.source.durable)
            if info.config.opt_start_seq != self.start_seq:
                raise
        self._psub = await self.js.pull_subscribe_bind(self.source.durable, self.source.stream)
        self._bound_epoch = self.epoch
        self._consumer_seq = self._stream_seq = 0

    async def run(self) -> None:
        pause = 0.1
        batch = 1
        while True:
            try:
                if self._bound_epoch != self.epoch:
                    try:
                        await self._bind()
                    except nats.errors.TimeoutError as exc:  # not an idle fetch: say so, and back off
                        raise nats.errors.Error(f"consumer set-up timed out ({type(exc).__name__})") from exc
                epoch = self.epoch
                msgs = await self._psub.fetch(batch=batch, timeout=IDLE_WAIT if batch == 1 else BURST_WAIT)
            except (nats.errors.TimeoutError, TimeoutError):
                # An idle fetch; Python's own TimeoutError (an OSError) is one
                # too and must not take the back-off below.
                batch = 1
                continue
            except (nats.errors.Error, OSError) as exc:
                log.warning("event feed: %s; retrying", exc)
                batch = 1
                await anyio.sleep(pause)  # back-off while the bus is away
                pause = min(pause * 2, 2.0)
                continue
            pause = 0.1
            batch = FETCH if len(msgs) == batch else 1  # (all it asked for: more may be waiting)
            if epoch != self.epoch:
                continue  # fetched for a reading that was voided meanwhile
            for m in msgs:
                seq = m.metadata.sequence
                if seq.consumer != self._consumer_seq + 1 or seq.stream <= self._stream_seq:
                    # A delivery never reached us (a fetch lost with the connection)
                    # or one comes again behind newer ones: in-order reading is
                    # broken, so read again from the first event not stored.
                    log.warning("event feed: delivery %d (stream %d) out of order; reading again",
                                seq.consumer, seq.stream)
                    self.rewind(self.first_unstored())
                    break
                self._consumer_seq, self._stream_seq = seq.consumer, seq.stream
                await self._route(m, epoch)

    async def _route(self, m, epoch: int) -> None:
        ref = EventRef(m.metadata.sequence.stream, m.reply, epoch)
        if m.subject.endswith(".changemedia"):
            change = media_changed(m.data, ref)
        else:
            change = queue_observed(m.data, ref)
        if change is None:
            log.warning("event %d on %s is unreadable; skipped", ref.stream_seq, m.subject)
            try:
                await m.ack()  # it counts nothing, so nothing is lost by acking it now
            except (nats.errors.Error, OSError) as exc:
                log.warning("ack lost: %s", exc)
            return
        await self.router.send_with_room(change)  # waits while the mailbox is down to its reserve
        if isinstance(change, QueueObserved) and change.uid is not None:
            # Playback keeps who queued each entry: the curator of its plays.
            await self.router.send_with_room(EntryQueued(change.uid, change.media, change.queued_by))
