"""Opening the two buckets and reading them whole at start.

kryten-py's ``get_or_create_kv_store`` cannot set replicas and its ``kv_put``
swallows errors, so buckets are opened here with nats-py directly; kryten-py
is still used to read the bridge's own state (``kryten.kv_store``), where a
missing key or bucket is an ordinary answer.
"""

from __future__ import annotations

import json
import logging

import anyio
from collections.abc import Callable


from nats.aio.client import Client as NatsClient
from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError, BucketNotFoundError, NotFoundError
from nats.js.kv import KV_DEL, KV_PURGE

from .batch import AtomicBucket, StoredEntry
from .reconnects import Reconnects
from .keys import ANALYTICS_BUCKET, JOURNAL_BUCKET, LIKES_BUCKET
from .last_per_key import last_per_key

log = logging.getLogger(__name__)

SCAN_WINDOW = 2000  # messages the server sends ahead while a bucket is read at start


class StoreError(Exception):
    """The buckets cannot be used as the daemon needs them."""


async def open_bucket(nc: NatsClient, js: JetStreamContext, bucket: str, replicas: int,
                      reconnects: Reconnects | None = None) -> AtomicBucket:
    try:
        kv = await js.key_value(bucket)
    except BucketNotFoundError:
        try:
            kv = await js.create_key_value(bucket=bucket, history=1, replicas=replicas, direct=True)
        except BadRequestError as exc:
            # Made meanwhile by a daemon starting beside this one, and maybe
            # given atomic batches already: then its config is not the one
            # asked for here ("stream name already in use with a different
            # configuration"). Open that one.
            try:
                kv = await js.key_value(bucket)
            except BucketNotFoundError:
                raise exc from None
            log.info("bucket %s was made meanwhile (%s); opening it", bucket, exc.description)
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
    return AtomicBucket(nc, kv, bucket, reconnects=reconnects)


async def open_buckets(nc: NatsClient, replicas: int,
                       reconnects: Reconnects | None = None) -> tuple[AtomicBucket, AtomicBucket]:
    js = nc.jetstream()
    analytics = await open_bucket(nc, js, ANALYTICS_BUCKET, replicas, reconnects)
    likes = await open_bucket(nc, js, LIKES_BUCKET, replicas, reconnects)
    return analytics, likes


async def open_journal(nc: NatsClient, replicas: int, reconnects: Reconnects | None = None) -> AtomicBucket:
    """The lone likes' journal (actors/like_journal.py), named by its stream's creation time."""
    js = nc.jetstream()
    bucket = await open_bucket(nc, js, JOURNAL_BUCKET, replicas, reconnects)
    info = await js.stream_info(f"KV_{JOURNAL_BUCKET}")
    bucket.identity = str(info.created)
    return bucket


async def scan(bucket: AtomicBucket) -> dict[str, StoredEntry]:
    """Every live key of a bucket with its value and revision, in one dict."""
    out: dict[str, StoredEntry] = {}

    def take(key: str, entry: StoredEntry | None) -> None:
        if entry is None:
            out.pop(key, None)
        else:
            out[key] = entry

    await scan_each(bucket, take)
    return out


async def scan_each(bucket: AtomicBucket, take: Callable[[str, StoredEntry | None], None]) -> None:
    """Hand every key of a bucket to ``take`` as it arrives (None: deleted).

    Read through a push consumer of the last message of every key with a
    window (``last_per_key``): the server sends at most ``SCAN_WINDOW`` messages ahead of what
    was taken (acknowledged all at once, every half window). So a start-up
    with 100 000 items never buffers the bucket in the client, and costs one
    callback per key (nats-py's ``fetch`` costs two tasks per message). The
    end is each message's own count of messages still pending (nats-py's KV
    watcher signals "initial values done" with a None that can come too
    early). A scan that must start over (keys vanished under it: TTL) hands
    keys again, so ``take`` must be idempotent.
    """
    stream = f"KV_{bucket.bucket}"
    prefix = f"$KV.{bucket.bucket}."
    js = bucket._kv._js
    for _attempt in range(3):
        info = await js.stream_info(stream)
        if not info.state.messages:
            return
        done = anyio.Event()
        taken = 0

        async def on_msg(msg) -> None:
            nonlocal taken
            taken += 1
            _take(bucket, msg, prefix, take)
            last = msg.metadata.num_pending == 0
            if last or taken % (SCAN_WINDOW // 2) == 0:
                await msg.ack()  # AckPolicy.ALL: everything up to here; the server sends on
            if last:
                done.set()

        async with last_per_key(js, bucket.bucket, on_msg, window=SCAN_WINDOW, ack_wait=60.0):
            seen = -1
            while not done.is_set():
                with anyio.move_on_after(5.0):
                    await done.wait()
                if not done.is_set() and taken == seen:
                    break  # nothing for 5 s: messages vanished under us (TTL); read again
                seen = taken
            else:
                return
    raise StoreError(f"could not read {bucket.bucket} whole")


def _take(bucket: AtomicBucket, msg, prefix: str, take: Callable[[str, StoredEntry | None], None]) -> None:
    key = msg.subject[len(prefix):]
    op = (msg.headers or {}).get("KV-Operation")
    if op in (KV_DEL, KV_PURGE) or not msg.data:
        take(key, None)
        return
    try:
        value = json.loads(msg.data)
    except ValueError:
        log.warning("skipping %s/%s: not JSON", bucket.bucket, key)
        return
    if isinstance(value, dict):
        take(key, StoredEntry(revision=msg.metadata.sequence.stream, value=value))
