"""Publishing the daemon's events: each counted like, unlike and play, on
``{pfx}.likes.events.{namespace}.{kind}`` into the stream the daemon
declares, ``KRYTEN_LIKES_OUT_{namespace}`` (docs/contract-social-web.md).

The counter writer decides what to publish and when (actors/outbox.py); this
is the I/O: the stream declared on first use per namespace (limits, 7 days,
``[storage] replicas``, a 10-minute duplicate window so a republish after a
quick restart is dropped by the server), and each event published through
JetStream with ``Nats-Msg-Id`` set to its ``event_id``, many at once.

A request may name any namespace, and a stream costs the server a store and
a goroutine or more: a client naming thousands of namespaces must not make
us declare thousands of streams. So streams are declared for the configured
namespace and the first ``MAX_STREAMS`` others; events of any namespace
beyond are published on the same subject without a stream (core NATS, the
same body and header: live subscribers get them, nothing keeps them), and
the daemon says so once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from nats.js import api
from nats.js.errors import BadRequestError, NotFoundError

log = logging.getLogger(__name__)

MAX_AGE = 7 * 24 * 3600
DUPLICATE_WINDOW = 600.0
IN_FLIGHT = 256  # publishes awaiting their acks at once
MAX_STREAMS = 32  # namespaces other than the configured one with a stream of their own
FIELDS = ("event_id", "kind", "namespace", "channel", "username", "user", "video_id", "type", "title", "curator",
          "like_count", "play_count", "at")


def out_stream_name(namespace: str) -> str:
    return f"KRYTEN_LIKES_OUT_{namespace}"


def out_subject(prefix: str, namespace: str, kind: str) -> str:
    return f"{prefix}.likes.events.{namespace}.{kind}"


class OutStream:
    def __init__(self, js: Any, prefix: str, channel: str, replicas: int, namespace: str = "default",
                 nc: Any = None) -> None:
        self.js = js
        self.nc = nc
        self.prefix = prefix
        self.channel = channel
        self.replicas = replicas
        self.namespace = namespace  # the configured one: always a stream
        self._declared: set[str] = set()
        self._streamless: set[str] = set()

    def has_stream(self, namespace: str) -> bool:
        if namespace in self._declared or namespace == self.namespace:
            return True
        if self.nc is None or len(self._declared - {self.namespace}) < MAX_STREAMS:
            return True
        if namespace not in self._streamless:
            if not self._streamless:
                log.warning("events of namespaces beyond the first %d are published without a stream (core NATS)",
                            MAX_STREAMS)
            self._streamless.add(namespace)
        return False

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
        full = {**event, "channel": self.channel}
        return json.dumps({k: full.get(k) for k in FIELDS}, separators=(",", ":"), ensure_ascii=False).encode()

    async def publish(self, events: tuple[dict, ...]) -> None:
        """Every event, acknowledged by the stream; raises if one is not."""
        streamed = {ns for ns in {e["namespace"] for e in events} if self.has_stream(ns)}
        for ns in streamed:
            await self.declare(ns)
        for i in range(0, len(events), IN_FLIGHT):
            await asyncio.gather(*(self._one(e, e["namespace"] in streamed) for e in events[i:i + IN_FLIGHT]))

    async def _one(self, event: dict, streamed: bool) -> None:
        subject = out_subject(self.prefix, event["namespace"], event["kind"])
        headers = {"Nats-Msg-Id": event["event_id"]}
        if streamed:
            await self.js.publish(subject, self.body(event), headers=headers)
        else:
            await self.nc.publish(subject, self.body(event), headers=headers)
