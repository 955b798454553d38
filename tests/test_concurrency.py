"""Integration tests for KV counter updates under concurrency (seed §6):
no lost update, no double count, against a real nats-server."""

from __future__ import annotations

import json

import anyio
from conftest import playing, wait_until

from kryten_likes.store import LIKES_BUCKET, AtomicBucket, likes_key, scan


def _burst(h, bodies: list[dict]) -> list[dict]:
    subject = f"{h.config.nats.subject_prefix}.playlist.cmd.like"

    async def all_at_once() -> list[dict]:
        replies: list[dict | None] = [None] * len(bodies)

        async def one(i: int, body: dict) -> None:
            msg = await h.nc.request(subject, json.dumps(body).encode(), timeout=20)
            replies[i] = json.loads(msg.data)

        async with anyio.create_task_group() as tg:
            for i, body in enumerate(bodies):
                tg.start_soon(one, i, body)
        return replies  # type: ignore[return-value]

    return h.portal.call(all_at_once)


def _dedupe_keys(h, video_id: str) -> int:
    async def count() -> int:
        # store.scan, not kv.keys(): nats-py's watcher may end its initial
        # values early under load (see store/buckets.py).
        kv = await h.nc.jetstream().key_value(LIKES_BUCKET)
        prefix = f"ns/{h.config.analytics.namespace}/dedupe/{video_id}/"
        return sum(1 for k in await scan(AtomicBucket(h.nc, kv, LIKES_BUCKET)) if k.startswith(prefix))
    return h.portal.call(count)


def test_hundreds_of_distinct_users_at_once_count_exactly(harness):
    h = harness()
    h.change_media("hot")
    playing(h, "hot")
    n = 400
    replies = _burst(h, [{"username": f"user{i}"} for i in range(n)])
    assert all(r["status"] == "ok" for r in replies), [r for r in replies if r["status"] != "ok"][:3]
    # Every like got its own count: 1..n, none lost, none repeated.
    assert sorted(r["like_count"] for r in replies) == list(range(1, n + 1))
    assert h.kv(LIKES_BUCKET, likes_key(h.config.analytics.namespace, "hot"))["like_count"] == n
    assert _dedupe_keys(h, "hot") == n


def test_dozens_of_concurrent_likes_by_one_user_count_once(harness):
    h = harness()
    h.change_media("hot")
    playing(h, "hot")
    replies = _burst(h, [{"username": name} for name in ["Mallory", "mallory", "MALLORY"] * 20])
    statuses = sorted(r["status"] for r in replies)
    assert statuses.count("ok") == 1 and statuses.count("duplicate") == 59, statuses
    assert {r["like_count"] for r in replies} == {1}
    assert h.kv(LIKES_BUCKET, likes_key(h.config.analytics.namespace, "hot"))["like_count"] == 1
    assert _dedupe_keys(h, "hot") == 1


def test_likes_and_plays_interleaved_stay_exact(harness):
    h = harness()
    total_ok = 0
    for round_ in range(5):
        h.change_media(f"v{round_}")
        playing(h, f"v{round_}")
        replies = _burst(h, [{"username": f"u{i}", "video_id": f"v{round_}"} for i in range(50)])
        total_ok += sum(r["status"] == "ok" for r in replies)
        for i in range(round_ + 1):
            assert h.request("stats", {"video_id": f"v{i}"})["item"]["like_count"] == 50
    assert total_ok == 250
    # Plays are stored in batches of their own: wait for the last one.
    wait_until(lambda: h.request("stats", {})["global"]["items_played"] == 5)
