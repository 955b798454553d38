"""`python -m bench --profile`: the like path at 256 in flight under cProfile.

The daemon runs ``kryten_likes.cli run`` under cProfile (bench/profiled_daemon.py,
the same as ``python -m cProfile -o FILE -m kryten_likes.cli run`` except that
the profiler is on only while the measured likes run: SIGUSR1/SIGUSR2); it is
stopped with SIGINT (its clean stop), which writes the file; the 25 functions
first by cumulative and by own (total) time are printed.
cProfile profiles the main thread only, which is where the daemon's event
loop and every actor run. Timings under the profiler are slower than
without it; the profile says where the time goes, not how fast it is.
"""

from __future__ import annotations

import os
import pstats
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import nats

from kryten_likes.embedded import start_nats_server

from .daemon import NAMESPACE, cmd, daemon_ready, play, start_daemon, wait_playing
from .harness import BenchError, Children, CpuMeter, Progress, all_ok, body, drive, wait_for_answer
from .likes import HOT, BusPhase, row

ROOT = Path(__file__).resolve().parent.parent


def _where(key: tuple[str, int, str]) -> str:
    file, line, func = key
    if file == "~":
        return func  # a builtin
    for marker in ("site-packages/", "/lib/python3.", str(ROOT) + "/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            if marker.startswith("/lib/python3."):
                file = "stdlib/" + file.split("/", 1)[1]
            break
    return f"{file}:{line}({func})"


def top_functions(path: Path, sort: str, n: int = 25) -> list[dict]:
    st = pstats.Stats(str(path))
    total = st.total_tt or 1e-9
    idx = 3 if sort == "cumulative" else 2
    rows = sorted(st.stats.items(), key=lambda kv: kv[1][idx], reverse=True)[:n]
    return [{"ncalls": nc, "tottime_s": round(tt, 3), "cumtime_s": round(ct, 3),
             "cum_pct": round(100 * ct / total, 1), "tot_pct": round(100 * tt / total, 1), "function": _where(key)}
            for key, (cc, nc, tt, ct, _callers) in rows]


def print_top(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    print(f"{'ncalls':>9} {'tottime':>8} {'tot%':>5} {'cumtime':>8} {'cum%':>5}  function")
    for r in rows:
        print(f"{r['ncalls']:>9} {r['tottime_s']:>8.3f} {r['tot_pct']:>5.1f} {r['cumtime_s']:>8.3f} "
              f"{r['cum_pct']:>5.1f}  {r['function']}")


async def run_profile(tmp: Path, sizes: Any, progress: Progress, keep_to: Path, inflight: int | None = None,
                      spread: bool = False) -> dict:
    prof = tmp / "daemon.prof"
    c = inflight or max(sizes.inflight)
    with start_nats_server(tmp / "nats-profile", port=None) as server, Children() as children:
        ceiling = children.start("ceiling", [sys.executable, "-m", "bench.ceiling", server.url, "bench.ceiling"],
                                 tmp / "ceiling-profile.log", cwd=ROOT)
        daemon = start_daemon(children, tmp, server.url, "daemon-profiled", profile_to=prof, event_loop=sizes.event_loop)
        nc = await nats.connect(server.url, name="bench-driver")
        try:
            await daemon_ready(nc, daemon)
            await wait_for_answer(nc, "bench.ceiling", child=ceiling)
            phase = BusPhase(nc, {"daemon": daemon, "ceiling": ceiling}, server.pid, sizes, progress)
            await phase.open()
            await play(phase.js, HOT)
            await wait_playing(nc, HOT, daemon)
            n = sizes.profile_likes if c >= 16 else min(sizes.profile_likes, 1000)  # one at a time is slow
            # --profile-spread: one item in each of many namespaces, as the bench's spread row.
            users = [body(username=f"prof-{i}", **({"namespace": f"sp{i % sizes.spread_items}"} if spread else {}))
                     for i in range(n)]
            warm = await drive(nc, cmd("like"), [body(username=f"warm-{i}") for i in range(sizes.warmup)], 16,
                               watch=daemon)
            all_ok(warm, "warm-up likes")
            ceil = await drive(nc, "bench.ceiling", users, c, progress=progress, label=f"ceiling ×{c}", watch=ceiling)
            os.kill(daemon.pid, signal.SIGUSR1)  # profile from here...
            with CpuMeter({"proc": daemon.pid, "server": server.pid, "driver": os.getpid()}) as cpu:
                d = await drive(nc, cmd("like"), users, c, progress=progress, label=f"like ×{c} under cProfile",
                                watch=daemon)
            os.kill(daemon.pid, signal.SIGUSR2)  # ...to here
            all_ok(d, "profiled likes")
            d["cpu_us"], d["others_pct"] = cpu.per_request_us(n), round(cpu.others_pct)
            phase.hot_expected = n * (not spread) + sizes.warmup
            what = "spread over namespaces" if spread else "one hot item"
            r = row(f"like, {what}, daemon under cProfile", d, ceil, check=await phase.check_hot("profiled"),
                    daemon_cpu_s=round(cpu.used["proc"], 2),
                    note=await phase.group_sizes(NAMESPACE, HOT, [f"prof-{i}" for i in range(n)]))
            progress.say(f"under cProfile: {r['rate']:,}/s p99 {r['p99_ms']} ms (ceiling {r['ceiling_rate']:,}/s) | "
                         f"{r['check']}")
        finally:
            await nc.close()
        daemon.stop(signal.SIGINT, timeout=60)  # SIGINT: the daemon stops cleanly, cProfile writes
        if not prof.exists():
            raise BenchError(f"the profiled daemon wrote no profile; its log ends:\n{daemon.tail()}")
    shutil.copyfile(prof, keep_to)
    cum, tot = top_functions(prof, "cumulative"), top_functions(prof, "tottime")
    print_top(f"daemon, {n:,} likes at {c} in flight: top 25 by cumulative time", cum)
    print_top("top 25 by own (total) time", tot)
    print(f"\nprofile kept in {keep_to} (python -m pstats {keep_to})")
    return {"row": r, "profile_file": str(keep_to), "by_cumulative": cum, "by_tottime": tot}


def default_profile_path() -> Path:
    return Path(tempfile.gettempdir()) / "kryten-likes-daemon.prof"
