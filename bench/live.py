"""Open dashboards against the like path: the hot-item run at 256 in flight
with and without ``LISTENERS`` live streams (``/api/v1/stream``) connected.

In rounds, the order alternating (without first, then with first, ...), as
the hot-item rows do. The listeners run in a process of their own
(bench/live_listeners.py), ask for gzip as browsers do, and ``COUNTING`` of
them inflate and count the ``like`` events they read: each of those must
have read every like of its round, and no stream may have been dropped
(a drop is reported, not hidden). The
daemon's RSS is read before the listeners connect and after they read the
last round. The target (issue 16): like throughput with them within 10 % of
the run without them.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from .daemon import cmd, play, wait_playing
from .harness import Miscount, all_ok, body
from .likes import HOT, ROUNDS, pooled, row

LISTENERS = 200
COUNTING = 10  # of them inflate and count every like (the rest read and drop the bytes)
ROOT = Path(__file__).resolve().parent.parent


class Listeners:
    """``n`` live streams in a child process (bench/live_listeners.py)."""

    def __init__(self, port: int, n: int) -> None:
        self.port, self.n = port, n
        self.proc: asyncio.subprocess.Process | None = None
        self.likes = [0]
        self.ended = 0

    async def open(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.live_listeners", str(self.port), str(self.n), str(min(COUNTING, self.n)),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT)
        line = await asyncio.wait_for(self.proc.stdout.readline(), 60)
        if line.strip() != b"ready":
            await self.close()
            raise Miscount(f"live streams did not open: {line!r}")

    async def count(self) -> None:
        assert self.proc is not None
        self.proc.stdin.write(b"count\n")
        got = json.loads(await asyncio.wait_for(self.proc.stdout.readline(), 30))
        self.likes, self.ended = got["likes"], got["ended"]

    async def close(self) -> None:
        if self.proc is None:
            return
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except asyncio.TimeoutError:
            self.proc.kill()
            await self.proc.wait()


async def live_listeners(phase: Any, port: int, likes: int, inflight: int = 256,
                         listeners: int = LISTENERS) -> dict:
    """The rows: without listeners, with them, and the check."""
    # The hot item plays again (after the bus phase's other scenarios, something else plays).
    await play(phase.js, HOT, title="The hot item")
    await wait_playing(phase.nc, HOT, phase.daemon)
    users = {kind: [body(username=f"live-{kind}-{i}") for i in range(likes)] for kind in ("with", "without")}
    rounds = ROUNDS if likes >= ROUNDS * 4 * inflight else 1
    size = -(-likes // rounds)
    without, with_, ratios, read_ok = [], [], [], []
    rss_before = phase.daemon.memory_kb()
    rss_with: dict = {}
    for r in range(rounds):
        order = ("without", "with") if r % 2 == 0 else ("with", "without")
        got = {}
        for kind in order:
            part = users[kind][r * size:(r + 1) * size]
            label = f"hot item ×{inflight} {kind} {listeners} live streams, round {r + 1}/{rounds}"
            if kind == "with":
                streams = Listeners(port, listeners)
                await streams.open()
                try:
                    d = await phase.run("daemon", cmd("like"), part, inflight, label)
                    all_ok(d, label)
                    # The events follow the replies by one publish and one 0.1 s pace at most.
                    for _ in range(100):
                        await streams.count()
                        if min(streams.likes) >= len(part) or streams.ended:
                            break
                        await asyncio.sleep(0.1)
                    rss_with = phase.daemon.memory_kb()
                    read_ok.append((min(streams.likes), max(streams.likes), len(part), streams.ended))
                finally:
                    await streams.close()
            else:
                d = await phase.run("daemon", cmd("like"), part, inflight, label)
                all_ok(d, label)
            got[kind] = d
            phase.hot_expected += len(part)
        without.append(got["without"])
        with_.append(got["with"])
        ratios.append(round(got["with"]["rate"] / got["without"]["rate"], 2))
    check = await phase.check_hot(f"likes with {listeners} live streams")
    complete = all(lo == hi == n and ended == 0 for lo, hi, n, ended in read_ok)
    reading = "; ".join(f"round {i + 1}: each of {min(COUNTING, listeners)} counting streams read {lo}-{hi} "
                        f"of {n} likes, {ended} of {listeners} streams dropped"
                        for i, (lo, hi, n, ended) in enumerate(read_ok))
    base = pooled(without)
    phase.add(row("like, one hot item, no live streams", base))
    r = row(f"like, one hot item, {listeners} live streams open", pooled(with_), base,
            check=check, note=f"with/without by round {ratios}; {reading}",
            round_ratios=ratios, rss_mb_before=round(rss_before.get('VmRSS', 0) / 1024, 1),
            rss_mb_with=round(rss_with.get('VmRSS', 0) / 1024, 1), streams_complete=complete)
    phase.add(r)
    if not complete:
        raise Miscount(f"live streams missed likes: {reading}")
    return r
