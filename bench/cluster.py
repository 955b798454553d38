"""The like rows on a 3-node cluster (three replicas) beside one server.

    python -m bench.cluster [--rounds N] [--scale X]

Issue 17 asks for both: on one nats-server (R1, what ``python -m bench``
measures) nats-server stages an atomic batch in a file store of its own;
on a cluster with three replicas (R3) it stages it in memory, and every
write, the ceiling's one KV create a like included, is a Raft proposal
the other two nodes must store before the ack.

Each setup gets a fresh bus and three responders with that many replicas,
all connected to the same node: the ceiling (``bench/ceiling.py``, one KV
create a like), the layout's floor (``bench/layout_floor.py``: the three
messages a like of this layout stores, and nothing else) and the daemon
(``[storage] replicas``). The rows: one hot item at 1, 16 and 256 in
flight, and likes spread over 1 000 namespaces at 256. In each round the
three take turns (the order turns each round). It prints each rate, its
ratio to the ceiling of the same round, and the CPU a like costs: the
responder, the nats-servers together, the driver. Every
daemon count is checked exactly in both setups.

On two cores the three nodes, the responder and the driver share the
machine: the R3 figures say how the ratio moves when every write is
replicated, not what a real cluster of three hosts would do.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import tempfile
from contextlib import ExitStack
from pathlib import Path

import nats

from kryten_likes.embedded import start_nats_server
from kryten_likes.store import likes_key

from .daemon import NAMESPACE
from .floor import HOT, ROOT, check_daemon_counts, pool_round, ready_and_warm, start_responders
from .harness import Children, CpuMeter, all_ok, body, drive
# (row, in flight, likes a round at --scale 1, namespaces the likes go over; 0: the hot item)
ROWS = (("hot item, 1 in flight", 1, 1000, 0), ("hot item, 16 in flight", 16, 5000, 0),
        ("hot item, 256 in flight", 256, 20000, 0), ("spread over 1,000 namespaces, 256 in flight", 256, 10000, 1000))


def load_cluster_script():
    spec = importlib.util.spec_from_file_location("nats_cluster", ROOT / "scripts" / "nats_cluster.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


async def run_setup(urls: list[str], server_pids: list[int], replicas: int, rounds: int, scale: float,
                    tmp: Path) -> dict:
    """Every row, ``rounds`` times, against one bus; the counts checked."""
    url = urls[0]
    totals: dict = {}
    with Children() as children:
        responders = start_responders(children, tmp, url, replicas)
        nc = await nats.connect(url, name="bench-cluster-driver")
        try:
            expected = await ready_and_warm(nc, responders, 300)
            order = list(responders)
            for r in range(rounds):
                for k, (row, inflight, likes, spread) in enumerate(ROWS):
                    n = max(inflight, int(likes * scale))
                    if spread:
                        bodies = [body(username=f"s{r}-{i}", namespace=f"cl{r}-{i % spread}") for i in range(n)]
                        for j in range(min(spread, n)):
                            expected[likes_key(f"cl{r}-{j}", HOT)] = n // spread + (j < n % spread)
                    else:
                        bodies = [body(username=f"r{r}-{k}-{i}") for i in range(n)]
                        expected[likes_key(NAMESPACE, HOT)] += n
                    got = {}
                    for who in order:
                        child, subject = responders[who]
                        pids = {"proc": child.pid, "driver": os.getpid(),
                                **{f"server{i}": p for i, p in enumerate(server_pids)}}
                        with CpuMeter(pids) as cpu:
                            d = await drive(nc, subject, bodies, inflight, watch=child)
                        all_ok(d, f"{who}, {row}, R{replicas}")
                        used = {"proc": cpu.used["proc"], "driver": cpu.used["driver"],
                                "servers": sum(v for name, v in cpu.used.items() if name.startswith("server"))}
                        got[who] = (d["rate"], used, d["n"])
                    pool_round(totals.setdefault(row, {}), got, f"R{replicas} round {r + 1}, {row}")
                order = order[1:] + order[:1]
            totals["check"] = await check_daemon_counts(nc, expected, f"R{replicas}, the daemon's counts")
        finally:
            await nc.close()
    return totals


async def run(rounds: int, scale: float) -> dict[int, dict]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    results: dict[int, dict] = {}
    with start_nats_server(tmp / "r1" / "nats", port=None) as server:
        (tmp / "r1").mkdir(exist_ok=True)
        results[1] = await run_setup([server.url], [server.pid], 1, rounds, scale, tmp / "r1")
    cluster = load_cluster_script()
    with ExitStack() as stack:
        c = stack.enter_context(cluster.start_cluster(tmp / "r3" / "cluster"))
        results[3] = await run_setup(c.urls, [node.process.pid for node in c.nodes], 3, rounds, scale, tmp / "r3")
    return results


def report(results: dict[int, dict]) -> None:
    def mean(xs: list[float]) -> float:
        return sum(xs) / len(xs)

    def cpu(t: dict) -> str:
        return ", ".join(f"{mean(t['cpu'][k]):.0f}" for k in ("proc", "servers", "driver"))

    print("\n| row | replicas | ceiling/s | floor: ratio | daemon: ratio (each round) | CPU µs a like "
          "(responder, servers, driver): ceiling | floor | daemon |")
    print("|---|---|---:|---|---|---|---|---|")
    for row, *_ in ROWS:
        for replicas, totals in results.items():
            c, f, d = (totals[row][who] for who in ("ceiling", "floor", "daemon"))
            print(f"| {row} | R{replicas} | {mean(c['rate']):,.0f} | ×{mean(f['ratio']):.2f} | "
                  f"×{mean(d['ratio']):.2f} ({', '.join(f'{x:.2f}' for x in d['ratio'])}) | "
                  f"{cpu(c)} | {cpu(f)} | {cpu(d)} |")
    for replicas, totals in results.items():
        print(f"check R{replicas}: {totals['check']}")


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--scale", type=float, default=1.0, help="likes a row, as a share of the default sizes")
    args = ap.parse_args()
    report(asyncio.run(run(args.rounds, args.scale)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
