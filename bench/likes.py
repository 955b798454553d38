"""Phase 1, on one nats-server: the ceiling and the daemon side by side.

Rows: the raw ceiling and the daemon's likes on one hot item at each
concurrency (measured back to back, so each ratio compares the same
machine in the same minute), likes with a correlation_id, likes spread over
many counter documents, a channel that rotates items, plays absorbed, and
(in another module) the old service's like. Every count is checked exactly
against KV.

How likes are spread over 10 000 items: a like only ever counts for what
plays now (docs/contract.md), and one channel plays one item at a time. Two
honest ways remain, and both are measured:

- *spread*: the same playing item liked in 10 000 namespaces (a request's
  ``namespace`` field, docs/contract.md): 10 000 distinct counter documents,
  each like's claim and its own item's compare-and-set in the batches: the
  per-document cost of a spread, with no play in between.
- *rotation*: what a real channel does: an item starts (changeMedia), a
  burst of likes naming it (``video_id``) follows, then the next item.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from kryten_likes.store import ANALYTICS_BUCKET, LIKES_BUCKET, dedupe_key, item_key, likes_key

from .daemon import NAMESPACE, cmd, play, stats, wait_playing
from .harness import (Child, CpuMeter, Drive, Miscount, Progress, all_ok, body, drive, kv_json, kv_json_many,
                      kv_settled,
                      pct, pooled)

HOT = "hot"
ROUNDS = 3  # ceiling and daemon measured in this many alternating rounds at each concurrency


def row(scenario: str, d: Drive, ceiling: Drive | None = None, **extra: Any) -> dict:
    r = {"scenario": scenario, "inflight": d["inflight"], "n": d["n"], "rate": round(d["rate"]),
         "p50_ms": round(d["p50_ms"], 2), "p99_ms": round(d["p99_ms"], 2)}
    if "cpu_us" in d:
        r["cpu_us"] = d["cpu_us"]
        r["others_pct"] = d.get("others_pct")
    if ceiling is not None:
        r.update(ceiling_rate=round(ceiling["rate"]), ceiling_p50_ms=round(ceiling["p50_ms"], 2),
                 ceiling_p99_ms=round(ceiling["p99_ms"], 2), ratio=round(d["rate"] / ceiling["rate"], 2),
                 p99_ratio=round(d["p99_ms"] / ceiling["p99_ms"], 2))
    r.update(extra)
    return r


class BusPhase:
    """Phase 1's state: the connection, the daemon, the counts sent so far."""

    def __init__(self, nc: Any, procs: dict[str, Child], server_pid: int, sizes: Any, progress: Progress) -> None:
        self.nc = nc
        self.procs = procs  # responders by role: "daemon", "ceiling", later "anchor", ...
        self.server_pid = server_pid
        self.js = nc.jetstream()
        self.daemon = procs["daemon"]
        self.sizes = sizes
        self.progress = progress
        self.hot_expected = 0
        self.ceilings: dict[int, Drive] = {}
        self.rows: list[dict] = []
        self.kv_likes: Any = None
        self.kv_analytics: Any = None

    async def open(self) -> None:
        self.kv_likes = await self.js.key_value(LIKES_BUCKET)
        self.kv_analytics = await self.js.key_value(ANALYTICS_BUCKET)

    def meter(self, who: str) -> CpuMeter:
        return CpuMeter({"proc": self.procs[who].pid, "server": self.server_pid, "driver": os.getpid()})

    async def run(self, who: str, subject: str, bodies: list[bytes], inflight: int, label: str) -> Drive:
        """Drive `who` (stopping at once if it dies), noting the CPU it, the nats-server
        and this driver used per request, and how busy the rest of the machine was."""
        with self.meter(who) as m:
            d = await drive(self.nc, subject, bodies, inflight, progress=self.progress, label=label,
                            watch=self.procs[who])
        d["cpu_us"] = m.per_request_us(d["n"])
        d["others_pct"] = round(m.others_pct)
        return d

    def add(self, r: dict) -> None:
        self.rows.append(r)
        cells = [f"{r['scenario']}", f"in flight {r['inflight']}", f"{r['rate']:,}/s",
                 f"p50 {r['p50_ms']} ms", f"p99 {r['p99_ms']} ms"]
        if "ratio" in r:
            cells.append(f"ceiling {r['ceiling_rate']:,}/s p99 {r['ceiling_p99_ms']} ms → ×{r['ratio']}")
        if r.get("check"):
            cells.append(r["check"])
        self.progress.say(" | ".join(cells))

    async def check_hot(self, what: str) -> str:
        answered = (await stats(self.nc, video_id=HOT))["item"]["like_count"]
        key = likes_key(NAMESPACE, HOT)
        docs, after = await kv_settled(self.kv_likes, {key: self.hot_expected})
        stored = (docs[key] or {}).get("like_count", 0)
        if stored != self.hot_expected or answered != self.hot_expected:
            raise Miscount(f"{what}: KV holds {stored}, stats says {answered}, {self.hot_expected} likes answered ok")
        return f"exact: KV {stored} = {self.hot_expected} ok ({after * 1000:.0f} ms)"

    async def group_sizes(self, ns: str, video_id: str, users: list[str]) -> str:
        """How the likes were grouped into atomic batches, read back from their claims'
        ``batch`` field (an extra field of the daemon's; empty if it has none)."""
        docs = await kv_json_many(self.kv_likes, [dedupe_key(ns, video_id, u) for u in users])
        groups: dict[str, int] = {}
        for v in docs.values():
            if v and v.get("batch"):
                groups[v["batch"]] = groups.get(v["batch"], 0) + 1
        if not groups:
            return ""
        sizes = sorted(groups.values())
        return (f"{len(sizes):,} batches, likes per batch: mean {sum(sizes) / len(sizes):.0f}, "
                f"p10 {pct(sizes, 0.1)}, median {pct(sizes, 0.5)}, p90 {pct(sizes, 0.9)}, max {sizes[-1]}")

    # --- scenarios ------------------------------------------------------------------

    async def warm_hot_item(self, warmup: int) -> None:
        await play(self.js, HOT, title="The hot item")
        await wait_playing(self.nc, HOT, self.daemon)
        # Warm both sides (connections, inboxes, first batches) before measuring.
        w = await drive(self.nc, cmd("like"), [body(username=f"warm-{i}") for i in range(warmup)], 16, watch=self.daemon)
        all_ok(w, "warm-up likes")
        self.hot_expected += warmup
        await drive(self.nc, "bench.ceiling", [body(username=f"warm-{i}") for i in range(warmup)], 16,
                    watch=self.procs["ceiling"])

    async def hot_item(self, warmup: int) -> None:
        await self.warm_hot_item(warmup)
        for c in self.sizes.inflight:
            n = self.sizes.likes[c]
            users = [body(username=f"h{c}-{i}") for i in range(n)]
            # In rounds, the order alternating (ceiling first, then the daemon
            # first, ...): on a shared machine whose speed drifts within a
            # minute, one back-to-back pair can land on two different machines.
            rounds = ROUNDS if n >= ROUNDS * 4 * c else 1
            size = -(-n // rounds)
            ceils, likes, ratios = [], [], []
            for r in range(rounds):
                part = users[r * size:(r + 1) * size]
                steps = [("ceiling", "bench.ceiling"), ("daemon", cmd("like"))]
                got = {}
                for who, subject in (steps if r % 2 == 0 else steps[::-1]):
                    got[who] = await self.run(who, subject, part, c, f"{who} ×{c}, round {r + 1}/{rounds}")
                    all_ok(got[who], f"{who} at {c} in flight")
                ceils.append(got["ceiling"])
                likes.append(got["daemon"])
                ratios.append(round(got["daemon"]["rate"] / got["ceiling"]["rate"], 2))
            ceil, d = pooled(ceils), pooled(likes)
            self.ceilings[c] = ceil
            self.add(row("raw ceiling (request + KV create)", ceil))
            self.hot_expected += n
            check = await self.check_hot(f"likes at {c}")
            grouping = await self.group_sizes(NAMESPACE, HOT, [f"h{c}-{i}" for i in range(n)])
            if rounds > 1:
                grouping = f"rounds (alternating order): ratios {ratios}; " + grouping
            self.add(row("like, one hot item", d, ceil, check=check, note=grouping, round_ratios=ratios))

    async def with_correlation_id(self) -> None:
        c = max(self.sizes.inflight)
        n = self.sizes.corr_likes
        bodies = [body(username=f"c-{i}", correlation_id=f"bench-{i:08x}") for i in range(n)]
        d = await self.run("daemon", cmd("like"), bodies, c, "like+correlation_id")
        all_ok(d, "likes with correlation_id")
        self.hot_expected += n
        self.add(row("like + correlation_id (as `kryten-likes like` sends)", d, self.ceilings.get(c),
                     check=await self.check_hot("likes with correlation_id"),
                     note="each like also stores its request key"))

    async def spread(self) -> None:
        c = max(self.sizes.inflight)
        items, n = self.sizes.spread_items, self.sizes.spread_likes
        bodies = [body(username=f"s-{i}", namespace=f"sp{i % items}") for i in range(n)]
        d = await self.run("daemon", cmd("like"), bodies, c, f"spread over {items}")
        all_ok(d, "spread likes")
        expected = {k: n // items + (1 if k < n % items else 0) for k in range(items)}
        docs, _ = await kv_settled(self.kv_likes, {likes_key(f"sp{k}", HOT): e for k, e in expected.items()})
        wrong = [(k, (docs[likes_key(f"sp{k}", HOT)] or {}).get("like_count", 0), e)
                 for k, e in expected.items() if (docs[likes_key(f"sp{k}", HOT)] or {}).get("like_count", 0) != e]
        if wrong:
            raise Miscount(f"spread likes: {len(wrong)} of {items} documents wrong, e.g. (ns, stored, sent) {wrong[:3]}")
        self.add(row(f"like, spread over {items:,} counter documents", d, self.ceilings.get(c),
                     check=f"exact: {items:,} documents, {n:,} likes",
                     note=f"one playing item liked in {items:,} namespaces (request `namespace`)"))

    async def rotation(self) -> None:
        items, burst = self.sizes.rotation_items, self.sizes.rotation_burst
        c = min(max(self.sizes.inflight), burst)
        lat: list[float] = []
        switch: list[float] = []
        self.progress.start("rotation", items * burst)
        meter = self.meter("daemon").start()
        t0 = time.perf_counter()
        for k in range(items):
            vid = f"r{k}"
            ts = time.perf_counter()
            await play(self.js, vid)
            await wait_playing(self.nc, vid, self.daemon)
            switch.append(time.perf_counter() - ts)
            bodies = [body(username=f"r{k}-{j}", video_id=vid) for j in range(burst)]
            d = await drive(self.nc, cmd("like"), bodies, c, watch=self.daemon)
            all_ok(d, f"rotation likes of {vid}")
            lat += d["latencies"]
            self.progress.advance(burst)
        elapsed = time.perf_counter() - t0
        meter.stop()
        self.progress.stop()
        docs, _ = await kv_settled(self.kv_likes, {likes_key(NAMESPACE, f"r{k}"): burst for k in range(items)})
        wrong = {k: (v or {}).get("like_count") for k, v in docs.items() if (v or {}).get("like_count") != burst}
        if wrong:
            raise Miscount(f"rotation: {len(wrong)} items miscounted, e.g. {list(wrong.items())[:3]}")
        lat.sort()
        n = items * burst
        d = Drive(n=n, inflight=c, seconds=elapsed, rate=n / elapsed, p50_ms=pct(lat, 0.5) * 1e3,
                  p99_ms=pct(lat, 0.99) * 1e3, cpu_us=meter.per_request_us(n), others_pct=round(meter.others_pct))
        self.add(row(f"like, rotation: {items} plays × {burst} likes", d, self.ceilings.get(c),
                     check=f"exact: {items} items × {burst}",
                     note=f"changeMedia published → now_playing names it: median {1e3 * pct(sorted(switch), 0.5):.1f} ms, "
                          f"max {1e3 * max(switch):.0f} ms; likes name video_id; the rate includes the switches"))

    async def plays(self) -> dict:
        """N changeMedia of distinct items, published as fast as the bus takes them;
        the rate is N over the time until the daemon's items_played has grown by N."""
        n = self.sizes.plays
        lanes = 64  # concurrent JetStream publishes
        seconds_total = sum(30 + i % 100 for i in range(n))
        base = (await stats(self.nc))["global"]

        async def publisher(ids: range) -> None:
            for i in ids:
                await play(self.js, f"p{i}", seconds=30 + i % 100)

        self.progress.start(f"{n:,} plays", n)
        meter = self.meter("daemon").start()
        t0 = time.perf_counter()
        pub = asyncio.gather(*(publisher(range(k, n, lanes)) for k in range(lanes)))
        deadline = time.monotonic() + max(60.0, n / 50)
        t_pub = None
        while True:
            self.daemon.check_alive()
            played = (await stats(self.nc))["global"]["items_played"] - base["items_played"]
            self.progress.set(played)
            if pub.done() and t_pub is None:
                t_pub = time.perf_counter() - t0
                pub.result()  # a failed publish fails the scenario
            if played >= n:
                break
            if time.monotonic() > deadline:
                pub.cancel()
                raise Miscount(f"plays: {played} of {n} counted after {time.perf_counter() - t0:.0f} s")
            await asyncio.sleep(0.01)  # polling the global counter
        elapsed = time.perf_counter() - t0
        meter.stop()
        await pub
        t_pub = t_pub or elapsed
        self.progress.stop()
        await asyncio.sleep(0.3)  # nothing more may come: a late extra play would be a miscount
        g = (await stats(self.nc))["global"]
        stored = await kv_json(self.kv_analytics, f"ns/{NAMESPACE}/counters/global")
        d_played = g["items_played"] - base["items_played"]
        d_secs = g["duration_played_seconds"] - base["duration_played_seconds"]
        kv_played = stored["items_played"] - base["items_played"]
        if d_played != n or kv_played != n or d_secs != seconds_total:
            raise Miscount(f"plays: {n} published, stats {d_played}, KV {kv_played}; "
                           f"seconds {d_secs} vs {seconds_total}")
        docs = await kv_json_many(self.kv_analytics, [item_key(NAMESPACE, f"p{i}") for i in range(n)])
        wrong = [k for k, v in docs.items() if (v or {}).get("play_count") != 1]
        if wrong:
            raise Miscount(f"plays: {len(wrong)} items without play_count 1, e.g. {wrong[:3]}")
        r = {"scenario": f"plays: {n:,} changeMedia of distinct items", "inflight": lanes, "n": n,
             "rate": round(n / elapsed), "p50_ms": None, "p99_ms": None, "cpu_us": meter.per_request_us(n),
             "others_pct": round(meter.others_pct),
             "check": f"exact: items_played +{n:,}, {n:,} items play_count 1",
             "note": f"published in {t_pub:.2f} s ({n / t_pub:,.0f}/s); rate = until items_played reached +{n:,}"}
        self.rows.append(r)
        self.progress.say(f"{r['scenario']}: {r['rate']:,}/s absorbed | {r['check']} | {r['note']}")
        return r
