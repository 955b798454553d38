"""Opening the two buckets and reading them whole at start.

kryten-py's ``get_or_create_kv_store`` cannot set replicas and its ``kv_put``
swallows errors, so buckets are opened here with nats-py directly; kryten-py
is still used to read the bridge's own state (``kryten.kv_store``), where a
missing key or bucket is an ordinary answer.
"""

from __future__ import annotations

import json
import logging

import nats.errors

from nats.aio.client import Client as NatsClient
from nats.js.client import JetStreamContext
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KV_DEL, KV_PURGE

from .batch import AtomicBucket, StoredEntry
from .keys import ANALYTICS_BUCKET, LIKES_BUCKET

log = logging.getLogger(__name__)


class StoreError(Exception):
    """The buckets cannot be used as the daemon needs them."""


async def open_bucket(nc: NatsClient, js: JetStreamContext, bucket: str, replicas: int) -> AtomicBucket:
    try:
        kv = await js.key_value(bucket)
    except BucketNotFoundError:
        kv = await js.create_key_value(bucket=bucket, history=1, replicas=replicas, direct=True)
    # Atomic batches and per-message TTL are stream settings; a bucket made by
    # another service (or an older kryten-likes) may lack them.
    stream = f"KV_{bucket}"
    try:
        info = await js.stream_info(stream)
    except NotFoundError as exc:  # pragma: no cover - raced with a delete
        raise StoreError(f"bucket {bucket} vanished during start") from exc
    cfg = info.config
    if not (cfg.allow_atomic and cfg.allow_msg_ttl):
        cfg.allow_atomic = True
        cfg.allow_msg_ttl = True
        try:
            info = await js.update_stream(cfg)
        except Exception as exc:
            raise StoreError(
                f"cannot enable atomic batches and message TTL on {stream} "
                f"(nats-server 2.12 or newer is needed): {exc}"
            ) from exc
        if not info.config.allow_atomic:
            raise StoreError(f"{stream}: the server ignored allow_atomic; nats-server 2.12+ is needed")
    return AtomicBucket(nc, kv, bucket)


async def open_buckets(nc: NatsClient, replicas: int) -> tuple[AtomicBucket, AtomicBucket]:
    js = nc.jetstream()
    analytics = await open_bucket(nc, js, ANALYTICS_BUCKET, replicas)
    likes = await open_bucket(nc, js, LIKES_BUCKET, replicas)
    return analytics, likes


async def scan(bucket: AtomicBucket) -> dict[str, StoredEntry]:
    """Every live key of a bucket with its value and revision.

    nats-py's watcher signals "initial values done" with a None that can come
    too early (it compares consumer info with messages not yet dispatched),
    which would make a start-up snapshot silently incomplete. So the end is
    found from each entry's own ``delta`` (messages still pending after it),
    and an empty stream is recognised from the stream state.
    """
    for _attempt in range(3):
        info = await bucket._kv._js.stream_info(f"KV_{bucket.bucket}")
        if not info.state.messages:
            return {}
        watcher = await bucket._kv.watchall()
        out: dict[str, StoredEntry] = {}
        try:
            while True:
                try:
                    entry = await watcher.updates(timeout=5.0)
                except nats.errors.TimeoutError:
                    break  # messages vanished under us (TTL); read again
                if entry is None:
                    continue
                _take(bucket, entry, out)
                if entry.delta == 0:
                    return out
        finally:
            await watcher.stop()
    raise StoreError(f"could not read {bucket.bucket} whole")


def _take(bucket: AtomicBucket, entry, out: dict[str, StoredEntry]) -> None:
    if entry.operation in (KV_DEL, KV_PURGE) or not entry.value:
        out.pop(entry.key, None)
        return
    try:
        value = json.loads(entry.value)
    except ValueError:
        log.warning("skipping %s/%s: not JSON", bucket.bucket, entry.key)
        return
    if isinstance(value, dict):
        out[entry.key] = StoredEntry(revision=entry.revision, value=value)
