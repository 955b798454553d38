"""The start-up scan against a real nats-server: every live key once with its
last value and revision, deletes seen as deletes, more keys than the
consumer's window, and an empty bucket."""

from __future__ import annotations

import itertools
import json

import anyio
import nats

from kryten_likes.store import AtomicBucket, StoredEntry, scan, scan_each
from kryten_likes.store.buckets import SCAN_WINDOW

_n = itertools.count(1)


async def _bucket(nc, name: str) -> tuple[AtomicBucket, object]:
    kv = await nc.jetstream().create_key_value(bucket=name, history=1)
    return AtomicBucket(nc, kv, name), kv


def test_scan_hands_every_live_key_once_with_its_last_value(nats_server):
    async def main():
        nc = await nats.connect(nats_server.url)
        try:
            bucket, kv = await _bucket(nc, f"scan_{next(_n)}")
            n = SCAN_WINDOW * 2 + 7  # more than the server may send ahead
            want: dict[str, StoredEntry] = {}
            for i in range(n):
                rev = await kv.put(f"k/{i}", json.dumps({"i": i}).encode())
                want[f"k/{i}"] = StoredEntry(rev, {"i": i})
            for i in range(0, n, 10):  # rewritten: the last value counts
                rev = await kv.put(f"k/{i}", json.dumps({"i": i, "again": True}).encode())
                want[f"k/{i}"] = StoredEntry(rev, {"i": i, "again": True})
            for i in range(5, n, 50):
                await kv.delete(f"k/{i}")
                del want[f"k/{i}"]
            await kv.put("not-json", b"{oops")

            handed: list[tuple[str, StoredEntry | None]] = []
            await scan_each(bucket, lambda k, e: handed.append((k, e)))
            keys = [k for k, _ in handed]
            assert len(keys) == len(set(keys)), "a key handed twice"
            live = {k: e for k, e in handed if e is not None}
            deleted = {k for k, e in handed if e is None}
            assert live == want
            assert deleted == {f"k/{i}" for i in range(5, n, 50)}
            assert await scan(bucket) == want
            # The scan leaves no consumer behind.
            info = await nc.jetstream().stream_info(f"KV_{bucket.bucket}")
            assert info.state.consumer_count == 0
        finally:
            await nc.close()

    anyio.run(main)


def test_scan_of_an_empty_bucket_hands_nothing(nats_server):
    async def main():
        nc = await nats.connect(nats_server.url)
        try:
            bucket, _kv = await _bucket(nc, f"scan_{next(_n)}")
            handed: list = []
            with anyio.fail_after(5):
                await scan_each(bucket, lambda k, e: handed.append(k))
            assert handed == []
        finally:
            await nc.close()

    anyio.run(main)
