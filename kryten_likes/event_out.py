"""Publishing the daemon's events: each counted like, unlike and play, on
``{pfx}.likes.events.{namespace}.{kind}`` into the stream the daemon
declares, ``KRYTEN_LIKES_OUT_{namespace}`` (docs/contract-social-web.md).

The counter writer decides what to publish and when (actors/outbox.py); this
is the I/O: the stream declared on first use per namespace (limits, 7 days,
``[storage] replicas``, a 10-minute duplicate window so a republish after a
quick restart is dropped by the server), and each event published through
JetStream with ``Nats-Msg-Id`` set to its ``event_id``, many at once.

Every event is stored by the stream, and we know it before we say so, but
not through nats-py's ``js.publish``: that is a request per event (an inbox
token, a future, a ``wait_for`` timer, a parsed ``PubAck``), about 100 µs
of our CPU per event, a third of a like's whole cost. Here a chunk of events
is handed to the client as one command, with reply subjects under one inbox
of our own, subscribed once, and acks matched by subject (``store/acks.py``).

One ack per stream and chunk, not one per event, for events never sent
before (a group that just landed; ``chained``): the events of one stream in
the chunk form a *chain*. Each but the first carries
``Nats-Expected-Last-Msg-Id`` = the event before it, and only the last asks
for an ack. The stream stores a message only when the one before it in the
chain is its last message, so the last one stored (acked, not a duplicate)
proves every one before it stored, in order, with nothing in between. Only
new events may chain: the stream drops a duplicate without looking at its
expectation, so a republished event that happens to be the stream's last
message could carry a chain over an event that was refused. A chain that
breaks (someone else's message in between, a refusal) ends in an error ack;
that stream's events then go again, each acknowledged on its own, and the
stream drops what it already has by ``Nats-Msg-Id``. A republish goes that
way from the start. Acks were a sixth of the daemon's NATS traffic. An ack
that says ``error`` there, or one that does not come, fails the whole
publish, and the caller publishes the group again, unchained.

A request may name any namespace, and a stream costs the server a store and
a goroutine or more: a client naming thousands of namespaces must not make
us declare thousands of streams. So streams are declared for the configured
namespace and the first ``MAX_STREAMS`` others; events of any namespace
beyond are published on the same subject without a stream (core NATS, the
same body and header: live subscribers get them, nothing keeps them), and
the daemon says so once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
from nats.js import api
from nats.js.errors import BadRequestError, NotFoundError

from .compact_json import dump_bytes
from .store.acks import StreamAcks, stored
from .store.headed_publish import publish_headed_many

log = logging.getLogger(__name__)

MAX_AGE = 7 * 24 * 3600
DUPLICATE_WINDOW = 600.0
IN_FLIGHT = 256  # publishes awaiting their acks at once
MAX_STREAMS = 32  # namespaces other than the configured one with a stream of their own


def out_stream_name(namespace: str) -> str:
    return f"KRYTEN_LIKES_OUT_{namespace}"


def out_subject(prefix: str, namespace: str, kind: str) -> str:
    return f"{prefix}.likes.events.{namespace}.{kind}"


class OutStream:
    def __init__(self, js: Any, prefix: str, channel: str, replicas: int, namespace: str, nc: Any,
                 published: Callable[[str, str, bytes], None] | None = None) -> None:
        self.js = js
        self.published = published  # told each event of the namespace once acknowledged (the live stream)
        self.nc = nc
        self.prefix = prefix
        self.channel = channel
        self.replicas = replicas
        self.namespace = namespace  # the configured one: always a stream
        self._declared: set[str] = set()
        # Other namespaces granted a stream, declared or being declared: granted
        # before the first await, so that publishes running at once cannot
        # each find room under the cap.
        self._granted: set[str] = set()
        self._streamless: set[str] = set()
        self._acks = StreamAcks(nc)
        self.chains_broken = 0  # chains published again event by event (a restart's republish, someone else's)

    def has_stream(self, namespace: str) -> bool:
        if namespace in self._granted or namespace == self.namespace:
            return True
        if len(self._granted) < MAX_STREAMS:
            self._granted.add(namespace)
            return True
        if namespace not in self._streamless:
            if not self._streamless:
                log.warning("events of namespaces beyond the first %d are published without a stream (core NATS)",
                            MAX_STREAMS)
            self._streamless.add(namespace)
        return False

    async def _declare_all(self, namespaces: list[str]) -> None:
        """Their streams made at once, not one after the other: on a cluster
        each is a Raft group of its own, tens of ms to make, and a burst of
        likes spread over new namespaces held its events (and so their
        records) for 2 s while 32 were made in turn (``python -m
        bench.cluster``). The first failure is raised once all are done."""
        if len(namespaces) <= 1:
            for ns in namespaces:
                await self.declare(ns)
            return
        failed: list[Exception] = []

        async def one(ns: str) -> None:
            try:
                await self.declare(ns)
            except Exception as exc:
                failed.append(exc)

        async with anyio.create_task_group() as tg:
            for ns in namespaces:
                tg.start_soon(one, ns)
        if failed:
            raise failed[0]

    async def declare(self, namespace: str) -> None:
        if namespace in self._declared:
            return
        cfg = api.StreamConfig(
            name=out_stream_name(namespace), subjects=[out_subject(self.prefix, namespace, "*")],
            retention=api.RetentionPolicy.LIMITS, max_age=MAX_AGE, storage=api.StorageType.FILE,
            num_replicas=self.replicas, discard=api.DiscardPolicy.OLD, duplicate_window=DUPLICATE_WINDOW)
        try:
            info = await self.js.stream_info(cfg.name)
        except NotFoundError:
            try:
                info = await self.js.add_stream(cfg)
            except BadRequestError as exc:  # made meanwhile by another daemon, or its subjects taken
                log.info("event stream %s: %s", cfg.name, exc)
                info = await self.js.stream_info(cfg.name)
        subject = cfg.subjects[0]
        if subject not in (info.config.subjects or []):
            # Made by a daemon of another subject prefix on this bus: the stream is the namespace's.
            info.config.subjects = [*(info.config.subjects or []), subject]
            await self.js.update_stream(info.config)
        self._declared.add(namespace)

    def body(self, event: dict) -> bytes:
        return dump_bytes({**event, "channel": self.channel})

    async def publish(self, events: tuple[dict, ...], chained: bool = False) -> None:
        """Every event, known stored by the stream; raises if one is not.
        ``chained``: none was ever sent (so none can be a duplicate): one
        chain per stream, one ack each; else an ack per event."""
        streamed = {ns: None for ns in dict.fromkeys(e["namespace"] for e in events)
                    if self.has_stream(ns)}  # (each granted counts against the cap of the next)
        await self._declare_all([ns for ns in streamed if ns not in self._declared])
        for i in range(0, len(events), IN_FLIGHT):
            chunk = [(e, self.body(e)) for e in events[i:i + IN_FLIGHT]]
            plain = [(self._subject(e), body, {"Nats-Msg-Id": e["event_id"]}, "") for e, body in chunk
                     if e["namespace"] not in streamed]
            if plain:  # (namespaces beyond the cap: core NATS, no ack)
                await publish_headed_many(self.nc, plain)
            streamed_chunk = [(e, body) for e, body in chunk if e["namespace"] in streamed]
            if chained:
                await self._publish_chains(streamed_chunk)
            else:
                await self._publish_each(streamed_chunk)
            if self.published is not None:
                for e, body in chunk:
                    if e["namespace"] == self.namespace:
                        try:
                            self.published(e["event_id"], e["kind"], body)
                        except Exception:  # an observer's bug must not fail a publish the stream took
                            log.exception("event watcher failed")

    async def _publish_chains(self, chunk: list[tuple[dict, bytes]]) -> None:
        """Each stream's events of the chunk as a chain, one ack each (see the
        module's docstring); a broken chain's events again, each acked."""
        if not chunk:
            return
        messages: list[tuple[str, bytes, dict[str, str]]] = []
        before: dict[str, str] = {}  # namespace -> the event_id before, in this chunk
        end: dict[str, int] = {}  # namespace -> its chain's last message
        for i, (e, body) in enumerate(chunk):
            ns, event_id = e["namespace"], e["event_id"]
            headers = {"Nats-Msg-Id": event_id}
            if ns in before:
                headers["Nats-Expected-Last-Msg-Id"] = before[ns]
            before[ns] = event_id
            end[ns] = i
            messages.append((self._subject(e), body, headers))
        ends = sorted(end.values())
        acked = set(ends)
        answers = await self._acks.answers(await self._acks.publish(messages, [i in acked for i in range(len(chunk))]))
        broken = {chunk[i][0]["namespace"] for i, data in zip(ends, answers) if not stored(data)}
        if broken:
            self.chains_broken += len(broken)
            log.debug("event chains of %s broken: each event again, acked", sorted(broken))
            await self._publish_each([(e, body) for e, body in chunk if e["namespace"] in broken])

    async def _publish_each(self, chunk: list[tuple[dict, bytes]]) -> None:
        if chunk:
            await self._acks.wait(await self._acks.publish([(self._subject(e), body, {"Nats-Msg-Id": e["event_id"]})
                                                            for e, body in chunk]))

    def _subject(self, event: dict) -> str:
        return out_subject(self.prefix, event["namespace"], event["kind"])
