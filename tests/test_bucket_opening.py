"""Opening the buckets against a real nats-server when another daemon makes
them at the same moment (an operator may start two at once): the one that
finds a bucket missing and then cannot make it opens the bucket the other
made, as the other left it."""

from __future__ import annotations

import anyio
import nats
from nats.js.errors import BucketNotFoundError

from kryten_likes.store.buckets import open_bucket


def test_a_bucket_made_meanwhile_by_another_daemon_is_opened_not_refused(nats_server):
    async def main():
        first = await nats.connect(nats_server.url)
        second = await nats.connect(nats_server.url)
        try:
            js = second.jetstream()
            real_key_value = js.key_value
            looked = 0

            async def missing_then_made(bucket: str):
                # The second daemon looks before the first has made the bucket,
                # and asks to make it after the first has made it and given it
                # atomic batches and message TTLs.
                nonlocal looked
                looked += 1
                if looked == 1:
                    await open_bucket(first, first.jetstream(), bucket, 1)
                    raise BucketNotFoundError
                return await real_key_value(bucket)

            js.key_value = missing_then_made
            bucket = await open_bucket(second, js, "race_made_meanwhile", 1)
            assert looked == 2  # it looked again after its own make was refused
            kv = await real_key_value("race_made_meanwhile")
            rev = await kv.put("k", b'{"made": "by the first"}')
            entry = await bucket.read("k")  # the bucket opened is the one the first made
            assert entry is not None and entry.revision == rev and entry.value == {"made": "by the first"}
            info = await js.stream_info("KV_race_made_meanwhile")
            assert info.config.allow_atomic and info.config.allow_msg_ttl
        finally:
            await first.close()
            await second.close()

    anyio.run(main)
