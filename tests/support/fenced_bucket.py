"""A KV bucket of its own on the test's nats-server, written through an
``AtomicBucket`` that holds the one-writer fence (key ``writer``), as the
daemon's writer does once active."""

from __future__ import annotations

from nats.js.api import KeyValueConfig

from kryten_likes.store import AtomicBucket
from kryten_likes.store.values import Fence


async def fenced_bucket(nc, name: str, *, timeout: float, atomic: bool = False):
    """(the bucket's ``KeyValue``, its ``AtomicBucket``); ``atomic``: the
    stream allows atomic batches (as store/buckets.py opens the daemon's)."""
    js = nc.jetstream()
    kv = await js.create_key_value(KeyValueConfig(bucket=name, history=1))
    if atomic:
        config = (await js.stream_info(f"KV_{name}")).config
        config.allow_atomic = True
        await js.update_stream(config)
    bucket = AtomicBucket(nc, kv, name, timeout=timeout)
    bucket.fence = Fence("writer", await kv.put("writer", b"us"), "writer-check", b"us")
    return kv, bucket
