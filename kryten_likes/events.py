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

import anyio
import attrs
import nats.errors
from nats.js import api
from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError, NotFoundError

from .actors.gateway import media_changed, queue_observed
from .actors.shell import Router
from .messages import EventRef

log = logging.getLogger(__name__)


@attrs.frozen
class EventSource:
    stream: str
    durable: str
    subjects: tuple[str, ...]


def event_subjects(prefix: str, channel_token: str) -> tuple[str, str]:
    base = f"{prefix}.events.cytube.{channel_token}"
    return f"{base}.changemedia", f"{base}.queue"


async def open_event_source(js: JetStreamContext, prefix: str, channel_token: str, namespace: str,
                            replicas: int) -> EventSource:
    subjects = event_subjects(prefix, channel_token)
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", f"{prefix}_{channel_token}")
    stream = f"KRYTEN_LIKES_EVENTS_{safe}"
    cfg = api.StreamConfig(name=stream, subjects=list(subjects), retention=api.RetentionPolicy.LIMITS,
                           max_age=7 * 24 * 3600, storage=api.StorageType.FILE, num_replicas=replicas,
                           discard=api.DiscardPolicy.OLD)
    try:
        await js.add_stream(cfg)
    except BadRequestError as exc:
        # Another stream may already capture these subjects (one stream per
        # subject is a server rule); then read from that one.
        try:
            stream = await js.find_stream_name_by_subject(subjects[0])
        except NotFoundError:
            raise exc from None
        log.info("using existing stream %s for %s", stream, subjects[0])
    durable = re.sub(r"[^A-Za-z0-9_-]", "_", f"kryten_likes_{namespace}_{channel_token}")
    ccfg = api.ConsumerConfig(durable_name=durable, ack_policy=api.AckPolicy.EXPLICIT, ack_wait=10,
                              max_ack_pending=2000, deliver_policy=api.DeliverPolicy.ALL,
                              filter_subjects=list(subjects))
    try:
        await js.add_consumer(stream, ccfg)
    except BadRequestError as exc:
        log.warning("consumer %s exists with other settings; using it as it is: %s", durable, exc)
    return EventSource(stream, durable, subjects)


async def feed_events(js: JetStreamContext, source: EventSource, router: Router) -> None:
    """Pull events forever and hand each changeMedia to playback."""
    psub = await js.pull_subscribe_bind(source.durable, source.stream)
    pause = 0.1
    while True:
        try:
            msgs = await psub.fetch(batch=256, timeout=1.0)
        except nats.errors.TimeoutError:
            continue
        except (nats.errors.Error, OSError) as exc:
            log.warning("event feed: %s; retrying", exc)
            await anyio.sleep(pause)  # back-off while the bus is away
            pause = min(pause * 2, 2.0)
            continue
        pause = 0.1
        for m in msgs:
            ref = EventRef(m.metadata.sequence.stream, m.reply)
            if m.subject.endswith(".changemedia"):
                change = media_changed(m.data, ref)
                to = "playback"
            else:
                change = queue_observed(m.data, ref)
                to = "counter_writer"
            if change is None:
                log.warning("event %d on %s is unreadable; skipped", ref.stream_seq, m.subject)
                await _ack(m)
                continue
            router.send(to, change)


async def _ack(m) -> None:
    try:
        await m.ack()
    except (nats.errors.Error, OSError) as exc:  # it comes back and is skipped again
        log.warning("ack lost: %s", exc)
