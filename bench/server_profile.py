"""Where nats-server's CPU goes for a like, at 256 in flight.

    python -m bench.server_profile [--likes N] [--spread N]

The bench's table gives nats-server's CPU per like as one number (42 µs a
hot like of the daemon against 17 of the ceiling's). This names its parts.
On one nats-server it starts the three responders of ``bench.floor`` (the
ceiling, the layout's floor, the daemon), drives the same likes at each in
turn, and samples nats-server with Linux ``perf record -g`` while it does.
Each part below is the share of samples under a function of nats-server (or
of the kernel), times the server's CPU per like from ``/proc``:

- *batch staging*: an atomic batch's messages stored in the batch's own
  store before it commits (``processJetStreamAtomicBatchMsg`` less what it
  calls to apply them), the batch store's making included;
- *making batch stores*: ``newBatchStore`` alone (a file store a batch,
  its metadata written and synced);
- *stream writes*: messages applied to their stream
  (``processJetStreamMsgWithBatch``, batch or not);
- *client reads*: the connections' read loops (parsing, routing, replies);
- *scheduler*: the kernel's task switches into the server's threads;
- *Go's monitor*: ``runtime.sysmon``, which wakes on a timer: its share per
  like grows with the time a like takes, not with what the like does.

Parts overlap where one calls another (client reads include writes that
are not batched). Needs ``perf`` (Debian's linux-perf) and
``kernel.perf_event_paranoid`` ≤ 2; every like must be answered ``ok`` and
every one of the daemon's counts is checked.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import nats

from kryten_likes.embedded import start_nats_server
from kryten_likes.store import likes_key

from .daemon import NAMESPACE
from .floor import HOT, INFLIGHT, check_daemon_counts, ready_and_warm, start_responders
from .harness import BenchError, Children, CpuMeter, all_ok, body, drive

SERVER = "github.com/nats-io/nats-server/v2/server."
PARTS = {  # part -> the functions whose inclusive share it is (the first less the rest)
    "batch staging": (SERVER + "(*stream).processJetStreamAtomicBatchMsg",
                      SERVER + "(*stream).processJetStreamMsgWithBatch"),
    "making batch stores": (SERVER + "newBatchStore",),
    "stream writes": (SERVER + "(*stream).processJetStreamMsgWithBatch",),
    "client reads": (SERVER + "(*client).readLoop",),
    "scheduler": ("finish_task_switch.isra.0",),
    "Go's monitor": ("runtime.sysmon",),
}
_ROW = re.compile(r"^\s*([\d.]+)%\s+([\d.]+)%\s+\S+\s+\[[.k]\]\s+(\S+)")


def inclusive_shares(data: Path) -> dict[str, float]:
    """Function -> share (0..1) of the samples with it on the stack."""
    out = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--children", "--sort", "dso,symbol",
                          "-g", "none"], capture_output=True, text=True, check=True).stdout
    shares = shares_of_report(out)
    if not shares:
        raise BenchError(f"perf report of {data} gave no samples")
    return shares


def shares_of_report(text: str) -> dict[str, float]:
    """``perf report --children --sort dso,symbol -g none --stdio`` read:
    each row's first column (the share with children) by its symbol."""
    shares: dict[str, float] = {}
    for line in text.splitlines():
        m = _ROW.match(line)
        if m:
            name = m.group(3)
            shares[name] = max(shares.get(name, 0.0), float(m.group(1)) / 100)
    return shares


def parts_us(shares: dict[str, float], server_us: float) -> dict[str, float]:
    got = {}
    for part, (first, *less) in PARTS.items():
        share = shares.get(first, 0.0) - sum(shares.get(f, 0.0) for f in less)
        got[part] = max(0.0, share) * server_us
    return got


class ServerSampler:
    """``perf record -g`` of one process, started with its events off and
    turned on through perf's control fifo (``enabled`` returns once perf has
    acknowledged): no sample is lost to perf's own start."""

    def __init__(self, pid: int, data: Path, tmp: Path) -> None:
        self.ctl, self.ack = tmp / "perf-ctl", tmp / "perf-ack"
        for fifo in (self.ctl, self.ack):
            fifo.unlink(missing_ok=True)
            os.mkfifo(fifo)
        self.perf = subprocess.Popen(["perf", "record", "-F", "2000", "-g", "-D", "-1", "-p", str(pid),
                                      "-o", str(data), "--control", f"fifo:{self.ctl},{self.ack}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def __enter__(self) -> ServerSampler:
        return self

    async def enabled(self) -> None:
        def enable() -> str:
            with open(self.ctl, "w") as ctl, open(self.ack) as ack:
                ctl.write("enable\n")
                ctl.flush()
                return ack.readline()
        got = await asyncio.wait_for(asyncio.to_thread(enable), 30)
        if got.strip() != "ack":
            raise BenchError(f"perf did not acknowledge: {got!r}")

    def __exit__(self, *exc: object) -> None:
        self.perf.send_signal(signal.SIGINT)
        _, err = self.perf.communicate(timeout=60)
        if self.perf.returncode not in (0, -signal.SIGINT):
            raise BenchError(f"perf record failed ({self.perf.returncode}): {err.decode()[-500:]}")


async def run(likes: int, spread: int, tmp: Path) -> tuple[dict, str]:
    results: dict = {}
    with start_nats_server(tmp / "nats", port=None) as server, Children() as children:
        responders = start_responders(children, tmp, server.url)
        nc = await nats.connect(server.url, name="bench-server-profile-driver")
        try:
            expected = await ready_and_warm(nc, responders, 500)
            scenarios = {"hot item": [body(username=f"h-{i}") for i in range(likes)]}
            if spread:
                scenarios[f"spread over {spread:,} namespaces"] = [
                    body(username=f"s-{i}", namespace=f"sp-{i % spread}") for i in range(likes)]
                for k in range(min(spread, likes)):
                    expected[likes_key(f"sp-{k}", HOT)] = likes // spread + (k < likes % spread)
            expected[likes_key(NAMESPACE, HOT)] += likes
            for scenario, bodies in scenarios.items():
                for who, (child, subject) in responders.items():
                    data = tmp / f"{who}-{len(results)}.perf"
                    with ServerSampler(server.pid, data, tmp) as sampler:
                        await sampler.enabled()
                        with CpuMeter({"proc": child.pid, "server": server.pid, "driver": os.getpid()}) as cpu:
                            d = await drive(nc, subject, bodies, INFLIGHT, watch=child)
                    all_ok(d, f"{who}, {scenario}")
                    us = {k: 1e6 * v / d["n"] for k, v in cpu.used.items()}
                    results[(scenario, who)] = {"rate": d["rate"], "us": us,
                                                "parts": parts_us(inclusive_shares(data), us["server"])}
                    print(f"{scenario}, {who}: {d['rate']:,.0f}/s, server {us['server']:.1f} µs a like",
                          flush=True)
            check = await check_daemon_counts(nc, expected, "the daemon's counts")
        finally:
            await nc.close()
    return results, check


def report(results: dict, check: str) -> None:
    print("\nnats-server's CPU µs a like, and its parts (at 256 in flight):\n")
    print("| scenario | responder | likes/s | server | " + " | ".join(PARTS) + " |")
    print("|---|---|---:|---:|" + "---:|" * len(PARTS))
    for (scenario, who), r in results.items():
        print(f"| {scenario} | {who} | {r['rate']:,.0f} | {r['us']['server']:.1f} | "
              + " | ".join(f"{r['parts'][p]:.1f}" for p in PARTS) + " |")
    print(f"\ncheck: {check}")


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.server_profile", description=__doc__.splitlines()[0])
    ap.add_argument("--likes", type=int, default=40000, help="likes a scenario per responder")
    ap.add_argument("--spread", type=int, default=10000, help="namespaces of the spread scenario (0: none)")
    args = ap.parse_args()
    if shutil.which("perf") is None:
        print("perf is not installed (Debian: apt-get install linux-perf)")
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="bench-server-profile-"))
    try:
        report(*asyncio.run(run(args.likes, args.spread, tmp)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
