"""How close the daemon is to the floor of its layout, at 256 in flight.

    python -m bench.floor [--rounds N] [--likes N] [--spread-likes N]

On one nats-server, in alternating rounds (the order turns each round), the
same likes go to three responders: the ceiling (``bench/ceiling.py``: one
KV create a like), the layout's floor (``bench/layout_floor.py``: the three
messages a like of this layout stores, and nothing else) and the daemon.
Two scenarios, as the bench's rows: one hot item, and likes spread over
10 000 namespaces (20 000 likes).

It prints each one's rate and its ratio to the ceiling of the same round,
and the CPU a like costs each process (the responder, nats-server, the
driver). The floor's ratio is a bound from above on any daemon's: the
table says what share of the gap to the ceiling is the layout's and what
share is the daemon's. Every daemon count is checked.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

import nats

from kryten_likes.embedded import start_nats_server
from kryten_likes.store import LIKES_BUCKET, likes_key

from .daemon import NAMESPACE, cmd, daemon_ready, play, start_daemon, wait_playing
from .harness import Child, Children, CpuMeter, Miscount, all_ok, body, drive, kv_settled, wait_for_answer

ROOT = Path(__file__).resolve().parent.parent
HOT = "hot"
INFLIGHT = 256


async def run(rounds: int, likes: int, spread_likes: int, spread: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-floor-"))
    totals: dict = {}
    with start_nats_server(tmp / "nats", port=None) as server, Children() as children:
        url = server.url
        responders = start_responders(children, tmp, url)
        nc = await nats.connect(url, name="bench-floor-driver")
        try:
            expected = await ready_and_warm(nc, responders, 500)
            order = list(responders)
            for r in range(rounds):
                scenarios = {
                    "hot item": [body(username=f"h{r}-{i}") for i in range(likes)],
                    f"spread over {spread:,} namespaces": [
                        body(username=f"s{r}-{i}", namespace=f"fl{r}-{i % spread}") for i in range(spread_likes)],
                }
                expected[likes_key(NAMESPACE, HOT)] += likes
                for k in range(min(spread, spread_likes)):
                    expected[likes_key(f"fl{r}-{k}", HOT)] = spread_likes // spread + (k < spread_likes % spread)
                for scenario, bodies in scenarios.items():
                    got = {}
                    for who in order:
                        child, subject = responders[who]
                        with CpuMeter({"proc": child.pid, "server": server.pid, "driver": os.getpid()}) as cpu:
                            d = await drive(nc, subject, bodies, INFLIGHT, watch=child)
                        all_ok(d, f"{who}, {scenario}")
                        got[who] = (d["rate"], cpu.used, d["n"])
                    pool_round(totals.setdefault(scenario, {}), got, f"round {r + 1}, {scenario}")
                order = order[1:] + order[:1]
            totals["check"] = await check_daemon_counts(nc, expected, "the daemon's counts")
        finally:
            await nc.close()
    return totals


def start_responders(children: Children, tmp: Path, url: str, replicas: int = 1) -> dict[str, tuple[Child, str]]:
    """The ceiling, the layout's floor and the daemon, each a process of its own
    whose streams have ``replicas`` replicas: name -> (process, subject)."""
    more = [f"--replicas={replicas}"]
    return {
        "ceiling": (children.start("ceiling", [sys.executable, "-m", "bench.ceiling", url, "bench.ceiling", *more],
                                   tmp / "ceiling.log", cwd=ROOT), "bench.ceiling"),
        "floor": (children.start("floor", [sys.executable, "-m", "bench.layout_floor", url, "bench.floor",
                                           "--uvloop", *more], tmp / "floor.log", cwd=ROOT), "bench.floor"),
        "daemon": (start_daemon(children, tmp, url, "daemon", replicas=replicas), cmd("like")),
    }


async def ready_and_warm(nc, responders: dict[str, tuple[Child, str]], warm_likes: int) -> dict[str, int]:
    """Each answers; the hot item plays; each takes ``warm_likes`` likes. The
    daemon's counts so far (counter document -> likes)."""
    await daemon_ready(nc, responders["daemon"][0])
    for who in ("ceiling", "floor"):
        await wait_for_answer(nc, responders[who][1], child=responders[who][0], body=body(username="ready"))
    await play(nc.jetstream(), HOT)
    await wait_playing(nc, HOT, responders["daemon"][0])
    warm = [body(username=f"warm-{i}") for i in range(warm_likes)]
    for child, subject in responders.values():
        all_ok(await drive(nc, subject, warm, 16, watch=child), f"warm-up {subject}")
    return {likes_key(NAMESPACE, HOT): len(warm)}


def pool_round(by_who: dict, got: dict[str, tuple[float, dict[str, float], int]], label: str) -> None:
    """One round's (rate, CPU seconds by process, likes) of each responder,
    added to its pooled figures as a ratio to the ceiling's rate and CPU µs
    a like; printed as it comes."""
    for who, (rate, used, n) in got.items():
        t = by_who.setdefault(who, {"rate": [], "ratio": [], "cpu": {}})
        t["rate"].append(rate)
        t["ratio"].append(rate / got["ceiling"][0])
        for k, v in used.items():
            t["cpu"].setdefault(k, []).append(1e6 * v / n)
    print(f"{label}: " + ", ".join(f"{who} {rate:,.0f}/s ×{rate / got['ceiling'][0]:.2f}"
                                   for who, (rate, _, _) in got.items()), flush=True)


async def check_daemon_counts(nc, expected: dict[str, int], what: str) -> str:
    """Every counter document the daemon should hold, as stored (Miscount if one is not)."""
    kv = await nc.jetstream().key_value(LIKES_BUCKET)
    docs, _ = await kv_settled(kv, expected)
    wrong = {k: ((docs.get(k) or {}).get("like_count"), e) for k, e in expected.items()
             if (docs.get(k) or {}).get("like_count") != e}
    if wrong:
        raise Miscount(f"{what}: {len(wrong)} documents wrong, e.g. {list(wrong.items())[:3]}")
    return f"exact: {len(expected):,} counter documents of the daemon"


def report(totals: dict) -> None:
    def mean(xs: list[float]) -> float:
        return sum(xs) / len(xs)

    print("\n| scenario | responder | likes/s | ratio to the ceiling | CPU µs a like: responder, server, driver |")
    print("|---|---|---:|---:|---|")
    for scenario, by_who in totals.items():
        if scenario == "check":
            continue
        for who, t in by_who.items():
            cpu = t["cpu"]
            print(f"| {scenario} | {who} | {mean(t['rate']):,.0f} | ×{mean(t['ratio']):.2f} "
                  f"({', '.join(f'{x:.2f}' for x in t['ratio'])}) | "
                  f"{mean(cpu['proc']):.0f}, {mean(cpu['server']):.0f}, {mean(cpu['driver']):.0f} |")
        floor, daemon = mean(by_who["floor"]["ratio"]), mean(by_who["daemon"]["ratio"])
        print(f"| {scenario} | daemon ÷ floor | | ×{daemon / floor:.2f} | |")
    print(f"\ncheck: {totals['check']}")


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--likes", type=int, default=20000, help="hot-item likes a round per responder")
    ap.add_argument("--spread-likes", type=int, default=20000, help="spread likes a round per responder")
    ap.add_argument("--spread", type=int, default=10000, help="namespaces the spread likes go over")
    args = ap.parse_args()
    report(asyncio.run(run(args.rounds, args.likes, args.spread_likes, args.spread)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
