"""What every scenario uses: child processes that cannot outlive the bench,
a bounded request driver with latency percentiles, progress on stderr, and
small helpers to read KV and wait for an answer.

Resource handling: every child is started through `Children`, a context
manager that stops (SIGTERM, then SIGKILL) whatever is still running when the
bench leaves it, on success or failure. On Linux children also get
PR_SET_PDEATHSIG, so a bench killed with SIGKILL takes them along.

Error handling: a scenario that cannot do what it promises raises `BenchError`;
a miscount is a `Miscount` (a subclass), which makes the bench exit non-zero.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import nats
import nats.errors
from nats.js.errors import KeyNotFoundError


class BenchError(Exception):
    """A scenario could not run as it should (a child died, nobody answered)."""


class Miscount(BenchError):
    """A count stored in KV is not the count the replies promised."""


# --- progress -------------------------------------------------------------------


class Progress:
    """One line on stderr per step; while a step runs, its count now and then.

    On a terminal the running line is rewritten every half second; elsewhere
    (CI logs) a line is printed every 5 s, so logs stay short.
    """

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.t0 = time.monotonic()
        self._label = ""
        self._done = 0
        self._total = 0
        self._since = 0.0
        self._task: asyncio.Task | None = None

    def say(self, text: str) -> None:
        self._clear()
        print(f"[{time.monotonic() - self.t0:6.1f}s] {text}", file=sys.stderr, flush=True)

    def start(self, label: str, total: int) -> None:
        self._label, self._done, self._total, self._since = label, 0, total, time.monotonic()
        if self._task is None:
            try:
                self._task = asyncio.get_running_loop().create_task(self._ticker())
            except RuntimeError:
                self._task = None

    def advance(self, k: int = 1) -> None:
        self._done += k

    def set(self, done: int) -> None:
        self._done = done

    def stop(self) -> None:
        self._label = ""
        self._clear()

    async def close(self) -> None:
        self.stop()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def _line(self) -> str:
        dt = max(1e-9, time.monotonic() - self._since)
        return f"  … {self._label}: {self._done}/{self._total} ({self._done / dt:,.0f}/s)"

    def _clear(self) -> None:
        if self.tty:
            print("\r\033[K", end="", file=sys.stderr, flush=True)

    async def _ticker(self) -> None:
        last_line = time.monotonic()
        while True:
            await asyncio.sleep(0.5)
            if not self._label:
                continue
            if self.tty:
                print("\r\033[K" + self._line(), end="", file=sys.stderr, flush=True)
            elif time.monotonic() - last_line >= 5.0:
                last_line = time.monotonic()
                print(self._line(), file=sys.stderr, flush=True)


# --- measuring --------------------------------------------------------------------


def pct(sorted_values: Sequence[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))]


class Drive(dict):
    """The outcome of one drive: n, seconds, rate, p50_ms, p99_ms, max_ms, statuses
    (and, not for JSON, kept and the sorted latencies)."""


async def drive(nc: Any, subject: str, bodies: Sequence[bytes], inflight: int, *,
                progress: Progress | None = None, label: str = "", timeout: float = 15.0,
                keep: Callable[[dict], Any] | None = None, watch: Child | None = None) -> Drive:
    """Send every body as a request, `inflight` at a time; time each one.

    Bounded: exactly len(bodies) requests, each with its own timeout. A reply
    whose status is not ok (or no reply) is counted by kind; the first few are
    kept as examples. `keep(reply)` may collect something from every reply.
    If the `watch`ed child dies meanwhile, the drive stops at once (BenchError).
    """
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    examples: list[dict] = []
    kept: list[Any] = []
    it = iter(bodies)
    if progress is not None:
        progress.start(label or subject, len(bodies))

    async def worker() -> None:
        for body in it:
            t = time.perf_counter()
            try:
                msg = await nc.request(subject, body, timeout=timeout)
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as exc:
                statuses["no_reply"] += 1
                if len(examples) < 3:
                    examples.append({"error": type(exc).__name__})
                continue
            latencies.append(time.perf_counter() - t)
            reply = json.loads(msg.data)
            status = reply.get("status")
            word = status if status in ("ok", "duplicate") else f"error:{reply.get('error')}"
            statuses[word] += 1
            if word != "ok" and len(examples) < 3:
                examples.append(reply)
            if keep is not None:
                kept.append(keep(reply))
            if progress is not None:
                progress.advance()

    t0 = time.perf_counter()
    workers = asyncio.gather(*(worker() for _ in range(max(1, min(inflight, len(bodies))))))
    if watch is not None:
        async def watchdog() -> None:
            while True:
                await asyncio.sleep(0.25)  # polling the child's liveness
                watch.check_alive()

        dog = asyncio.ensure_future(watchdog())
        await asyncio.wait({workers, dog}, return_when=asyncio.FIRST_COMPLETED)
        if dog.done():
            workers.cancel()
            if progress is not None:
                progress.stop()
            await asyncio.gather(workers, return_exceptions=True)
            dog.result()  # raises the child's death as BenchError
        dog.cancel()
    await workers
    elapsed = time.perf_counter() - t0
    if progress is not None:
        progress.stop()
    return _drive(len(bodies), inflight, elapsed, latencies, statuses, examples, kept)


def _drive(n: int, inflight: int, seconds: float, latencies: list[float], statuses: Counter[str],
           examples: list, kept: list) -> Drive:
    latencies.sort()
    return Drive(n=n, inflight=inflight, seconds=seconds, rate=n / seconds,
                 p50_ms=pct(latencies, 0.50) * 1e3, p99_ms=pct(latencies, 0.99) * 1e3,
                 max_ms=(latencies[-1] if latencies else float("nan")) * 1e3,
                 statuses=dict(statuses), examples=examples, kept=kept, latencies=latencies)


def pooled(drives: list[Drive]) -> Drive:
    """Several drives of one kind as one: every request, the time they all took."""
    n = sum(d["n"] for d in drives)
    statuses: Counter[str] = Counter()
    for d in drives:
        statuses.update(d["statuses"])
    out = _drive(n, drives[0]["inflight"], sum(d["seconds"] for d in drives),
                 [x for d in drives for x in d["latencies"]], statuses,
                 [e for d in drives for e in d["examples"]][:3], [k for d in drives for k in d["kept"]])
    if all("cpu_us" in d for d in drives):
        out["cpu_us"] = {k: round(sum(d["cpu_us"][k] * d["n"] for d in drives) / n) for k in drives[0]["cpu_us"]}
        out["others_pct"] = round(max(d["others_pct"] for d in drives))
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_seconds() -> float:
    """CPU time the whole machine has been busy, all cores (from /proc/stat)."""
    try:
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    # user nice system idle iowait irq softirq steal
    return (f[0] + f[1] + f[2] + f[5] + f[6] + (f[7] if len(f) > 7 else 0)) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU used by some processes while a step runs: `with CpuMeter({"daemon": pid}) as m: ...; m.used`.

    Also how busy the machine was with anything else (other users' work on a
    shared machine disturbs a benchmark; the table says so): `others_pct` is
    the share of all cores that processes not listed used meanwhile.
    """

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.used: dict[str, float] = {}
        self.others_pct = 0.0

    def __enter__(self) -> CpuMeter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> CpuMeter:
        self._t0 = {k: cpu_seconds(p) for k, p in self.pids.items()}
        self._busy0, self._wall0 = busy_seconds(), time.monotonic()
        return self

    def stop(self) -> None:
        self.used = {k: cpu_seconds(p) - self._t0[k] for k, p in self.pids.items()}
        wall = max(1e-9, time.monotonic() - self._wall0)
        others = busy_seconds() - self._busy0 - sum(self.used.values())
        self.others_pct = max(0.0, 100 * others / (wall * (os.cpu_count() or 1)))

    def per_request_us(self, n: int) -> dict[str, int]:
        return {k: round(1e6 * v / max(1, n)) for k, v in self.used.items()}


def all_ok(d: Drive, what: str) -> None:
    bad = {k: v for k, v in d["statuses"].items() if k != "ok"}
    if bad:
        raise Miscount(f"{what}: {sum(bad.values())} of {d['n']} not ok {bad}, e.g. {d['examples'][:2]}")


# --- child processes -------------------------------------------------------------------


def _die_with_parent():
    """Children die with us (PR_SET_PDEATHSIG): the daemon's own helper."""
    from kryten_likes.embedded_keeper import die_with_parent_hook

    return die_with_parent_hook()


class Child:
    """A child process whose output goes to a log file (a full pipe would block it)."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, cwd: Path | None = None) -> None:
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=cwd, preexec_fn=_die_with_parent())

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            raise BenchError(f"{self.name} exited with status {self.proc.returncode}; its log ends:\n{self.tail()}")

    def memory_kb(self) -> dict[str, int]:
        """VmRSS (now) and VmHWM (peak) from /proc, in kB."""
        out: dict[str, int] = {}
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(rest.split()[0])
        except OSError:
            pass
        return out

    def tail(self, n: int = 25) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


class Children:
    """Every child a phase starts; all stopped when the phase ends, whatever happens."""

    def __init__(self) -> None:
        self._all: list[Child] = []

    def start(self, name: str, argv: Sequence[str], log_path: Path, cwd: Path | None = None) -> Child:
        c = Child(name, argv, log_path, cwd)
        self._all.append(c)
        return c

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc: object) -> None:
        for c in reversed(self._all):
            c.stop()


# --- bus helpers ---------------------------------------------------------------------------


async def wait_for_answer(nc: Any, subject: str, *, timeout: float = 60.0, body: bytes = b"{}",
                          child: Child | None = None) -> dict:
    """Ask until someone answers (bounded by `timeout`); fail early if `child` died."""
    deadline = time.monotonic() + timeout
    while True:
        if child is not None:
            child.check_alive()
        try:
            return json.loads((await nc.request(subject, body, timeout=1.0)).data)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            if time.monotonic() > deadline:
                raise BenchError(f"nobody answered on {subject} within {timeout:g} s") from None
            await asyncio.sleep(0.05)  # polling a process that is still starting


async def kv_json(kv: Any, key: str) -> dict | None:
    try:
        entry = await kv.get(key)
    except KeyNotFoundError:
        return None
    return json.loads(entry.value) if entry.value else None


async def kv_json_many(kv: Any, keys: Iterable[str], inflight: int = 128) -> dict[str, dict | None]:
    out: dict[str, dict | None] = {}
    it = iter(keys)

    async def worker() -> None:
        for k in it:
            out[k] = await kv_json(kv, k)

    await asyncio.gather(*(worker() for _ in range(inflight)))
    return out


async def kv_settled(kv: Any, want: dict[str, int], field: str = "like_count",
                     within: float = 5.0) -> tuple[dict[str, dict | None], float]:
    """The documents once each holds ``want[key]`` in ``field`` (or, after
    ``within`` seconds, as they are), and how long after the call they did.
    A like answered alone is stored in its item's document a few ms after its
    answer (its record is its journal, kryten_likes/actors/like_journal.py),
    so a reader of the documents waits for that, not for the replies."""
    t0 = time.perf_counter()
    while True:
        docs = await kv_json_many(kv, want)
        if all((docs[k] or {}).get(field, 0) == n for k, n in want.items()) or time.perf_counter() - t0 > within:
            return docs, time.perf_counter() - t0
        await asyncio.sleep(0.01)  # polling an outside reader's view: nothing signals "stored"


def body(**fields: Any) -> bytes:
    return json.dumps(fields, separators=(",", ":")).encode()
