"""Phase 2, on a fresh nats-server: a daemon that knows 100 000 items.

The state is written straight into the buckets, in the shapes of
docs/kv-schema.md (``ns/{ns}/items/{id}`` with play_count, ``.../likes`` with
like_count), faster than 100 000 plays could make it; the daemon then loads
it at start like any state a previous life left. Measured: start-up time,
query latency (top_liked, top_played, stats) at 1 in flight, and RSS with
100 000 items known, then after 100 000 distinct users have liked.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from typing import Any

from kryten_likes.store import ANALYTICS_BUCKET, LIKES_BUCKET, global_key, item_key, likes_key, open_buckets

from .daemon import NAMESPACE, cmd, daemon_ready, play, wait_playing
from .harness import BenchError, Child, CpuMeter, Miscount, Progress, all_ok, body, drive, kv_settled

TS = "2025-12-18T12:34:56Z"


def dump(v: dict) -> bytes:
    return json.dumps(v, separators=(",", ":")).encode()


async def prewrite(nc: Any, n: int, progress: Progress) -> dict:
    """n item documents and n likes documents; returns the expected rankings."""
    await open_buckets(nc, 1)  # the buckets exactly as the daemon makes them
    js = nc.jetstream()
    rnd = random.Random(6)
    plays: list[tuple[int, str]] = []
    liked: list[tuple[int, str]] = []
    t0 = time.perf_counter()
    progress.start(f"pre-writing {n:,} items + {n:,} likes documents", n)
    total_plays = 0
    for i in range(n):
        vid = f"q{i}"
        p, l = rnd.randint(1, 100_000), rnd.randint(1, 100_000)
        total_plays += p
        plays.append((-p, vid))
        liked.append((-l, vid))
        title = f"Item number {i}"
        await nc.publish(f"$KV.{ANALYTICS_BUCKET}.{item_key(NAMESPACE, vid)}",
                         dump({"video_id": vid, "play_count": p, "queue_count": 0, "last_played_at": TS,
                               "last_queued_at": None, "duration_seconds": 60 + i % 600, "schema_version": 1,
                               "title": title}))
        await nc.publish(f"$KV.{LIKES_BUCKET}.{likes_key(NAMESPACE, vid)}",
                         dump({"video_id": vid, "like_count": l, "updated_at": TS, "schema_version": 1,
                               "title": title}))
        if i % 1000 == 999:
            await nc.flush()
            progress.set(i + 1)
    await nc.publish(f"$KV.{ANALYTICS_BUCKET}.{global_key(NAMESPACE)}",
                     dump({"items_queued": 0, "items_played": total_plays, "duration_queued_seconds": 0,
                           "duration_played_seconds": 0, "updated_at": TS, "schema_version": 1}))
    await nc.flush()
    progress.stop()
    # Core publishes carry no ack: count what the streams hold before going on.
    want = {f"KV_{ANALYTICS_BUCKET}": n + 1, f"KV_{LIKES_BUCKET}": n}
    deadline = time.monotonic() + 60
    while True:
        have = {s: (await js.stream_info(s)).state.messages for s in want}
        if have == want:
            break
        if time.monotonic() > deadline:
            raise BenchError(f"pre-written state incomplete: streams hold {have}, expected {want}")
        await asyncio.sleep(0.1)  # the server is still storing
    plays.sort()
    liked.sort()
    return {"seconds": time.perf_counter() - t0,
            "top_played": [[vid, -c] for c, vid in plays[:100]],
            "top_liked": [[vid, -c] for c, vid in liked[:100]]}


def _mb(kb: dict[str, int]) -> dict[str, float]:
    return {k: round(v / 1024, 1) for k, v in kb.items()}


async def run_state(nc: Any, daemon: Child, sizes: Any, progress: Progress, expected: dict, server_pid: int) -> dict:
    out: dict = {"items": sizes.query_items}
    out["startup_seconds"] = round(await daemon_ready(nc, daemon), 2)
    await asyncio.sleep(0.5)  # let start-up garbage settle before reading RSS
    out["rss_loaded_mb"] = _mb(daemon.memory_kb())
    progress.say(f"daemon with {sizes.query_items:,} items + likes documents: ready in "
                 f"{out['startup_seconds']} s, RSS {out['rss_loaded_mb']}")

    # --- queries at 1 in flight -------------------------------------------------------
    rows = []
    k = sizes.query_samples
    rnd = random.Random(7)
    queries = [
        ("now_playing (the floor: one actor hop)", "now_playing", [b"{}"] * k, None),
        ("top_liked limit 10", "top_liked", [body(limit=10)] * k, ("top_liked", 10)),
        ("top_liked limit 100", "top_liked", [body(limit=100)] * k, ("top_liked", 100)),
        ("top_played limit 10", "top_played", [body(limit=10)] * k, ("top_played", 10)),
        ("top_played limit 100", "top_played", [body(limit=100)] * k, ("top_played", 100)),
        ("stats (global)", "stats", [b"{}"] * k, None),
        ("stats video_id", "stats", [body(video_id=f"q{rnd.randrange(sizes.query_items)}") for _ in range(k)], None),
    ]
    for name, command, bodies, check in queries:
        with CpuMeter({"proc": daemon.pid, "server": server_pid, "driver": os.getpid()}) as m:
            d = await drive(nc, cmd(command), bodies, 1, progress=progress, label=name,
                            keep=(lambda r: r) if check else None, watch=daemon)
        all_ok(d, name)
        note = ""
        if check:
            ranking, limit = check
            got = [[it["video_id"], it["count"]] for it in d["kept"][0]["items"]]
            want = expected[ranking][:limit]
            if got != want:
                raise Miscount(f"{name}: answered {got[:3]}…, KV holds {want[:3]}…")
            note = "answer = what KV holds"
        r = {"scenario": f"query: {name}, {sizes.query_items:,} items", "inflight": 1, "n": d["n"],
             "rate": round(d["rate"]), "p50_ms": round(d["p50_ms"], 3), "p99_ms": round(d["p99_ms"], 3),
             "max_ms": round(d["max_ms"], 2), "cpu_us": m.per_request_us(d["n"]), "others_pct": round(m.others_pct),
             "check": note}
        rows.append(r)
        progress.say(f"{r['scenario']}: p50 {r['p50_ms']} ms p99 {r['p99_ms']} ms max {r['max_ms']} ms {note}")
    out["query_rows"] = rows

    # --- memory with 100 000 users ---------------------------------------------------------
    vid = "m-hot"
    await play(nc.jetstream(), vid)
    await wait_playing(nc, vid, daemon)
    n = sizes.memory_users
    with CpuMeter({"proc": daemon.pid, "server": server_pid, "driver": os.getpid()}) as m:
        d = await drive(nc, cmd("like"), [body(username=f"user-{i}") for i in range(n)], 256,
                        progress=progress, label=f"{n:,} distinct users like", watch=daemon)
    all_ok(d, "memory likes")
    # (the documents follow the answers within a second: like_journal.py)
    docs, _ = await kv_settled(await nc.jetstream().key_value(LIKES_BUCKET), {likes_key(NAMESPACE, vid): n})
    doc = docs[likes_key(NAMESPACE, vid)]
    if (doc or {}).get("like_count") != n:
        raise Miscount(f"memory likes: KV holds {(doc or {}).get('like_count')}, {n} answered ok")
    await asyncio.sleep(0.5)
    out["rss_after_users_mb"] = _mb(daemon.memory_kb())
    out["users"] = n
    out["likes_row"] = {"scenario": f"like, hot item, {sizes.query_items:,} items known", "inflight": 256,
                        "n": n, "rate": round(d["rate"]), "p50_ms": round(d["p50_ms"], 2),
                        "p99_ms": round(d["p99_ms"], 2), "cpu_us": m.per_request_us(n), "others_pct": round(m.others_pct),
                        "check": f"exact: KV {n:,} = {n:,} ok"}
    progress.say(f"after {n:,} users liked ({d['rate']:,.0f}/s, exact): RSS {out['rss_after_users_mb']}")

    # --- remembered requests: likes with a correlation_id, past [likes] max_remembered_requests
    # (default 100 000): memory grows to the bound and no further.
    vid = "m-requests"
    await play(nc.jetstream(), vid)
    await wait_playing(nc, vid, daemon)
    r = n + n // 5
    d = await drive(nc, cmd("like"), [body(username=f"user-{i}", correlation_id=f"mem-{i:08x}") for i in range(r)],
                    256, progress=progress, label=f"{r:,} likes with a correlation_id", watch=daemon)
    all_ok(d, "likes with a correlation_id")
    await asyncio.sleep(0.5)
    out["rss_with_requests_mb"] = _mb(daemon.memory_kb())
    out["requests"] = r
    progress.say(f"after {r:,} likes with a correlation_id: RSS {out['rss_with_requests_mb']}")
    return out
