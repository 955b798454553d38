"""A push consumer of the last message of every key of a bucket, with a
window: the one way a bucket is read whole, at start (``buckets.scan_each``)
and by tools (``bulk.each_chunk``).

The server sends at most ``window`` messages ahead of the last one
acknowledged (``AckPolicy.ALL``: one ack covers everything before it), so
the reader, not the bucket's size, bounds what the client holds. The
consumer lives in memory with one replica, and is deleted when the read ends
(or goes by itself once unused: ``inactive_threshold``).

What differs stays with each reader: the start-up scan hands deletes too,
and reads again when keys vanish under it (TTL); a tool takes chunks at its
own pace, and asks the consumer whether anything is left when messages stop.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

__all__ = ["last_per_key"]


@contextlib.asynccontextmanager
async def last_per_key(js: Any, bucket: str, on_msg: Callable[[Any], Awaitable[None]], *, window: int,
                       ack_wait: float) -> AsyncIterator[Any]:
    """Subscribe ``on_msg`` to the last message of every key of ``bucket``;
    the subscription while the block runs, the consumer deleted after it."""
    stream, prefix = f"KV_{bucket}", f"$KV.{bucket}."
    config = ConsumerConfig(deliver_policy=DeliverPolicy.LAST_PER_SUBJECT, ack_policy=AckPolicy.ALL,
                            max_ack_pending=window, ack_wait=ack_wait, inactive_threshold=30.0,
                            mem_storage=True, num_replicas=1, filter_subject=f"{prefix}>")
    sub = await js.subscribe(f"{prefix}>", stream=stream, cb=on_msg, manual_ack=True, config=config)
    try:
        yield sub
    finally:
        with contextlib.suppress(Exception):  # an unused consumer goes by itself (inactive_threshold)
            name = (await sub.consumer_info()).name
            await sub.unsubscribe()
            await js.delete_consumer(stream, name)
