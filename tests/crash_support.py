"""Support for the crash, bus-fault and cluster tests: the daemon as a real
subprocess (`python -m kryten_likes.cli run --config FILE`), a like storm
whose unanswered requests are retried until answered, a play publisher, and
exact checks against what KV holds.

Nothing here sleeps to synchronise: readiness comes from the daemon's own
log line ("serving namespace"), answers from request/reply. The few sleeps
are back-off between retries and the pacing of the play publisher. Every
loop is bounded by a deadline.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import attrs
import nats
import nats.errors
from nats.js.errors import KeyNotFoundError, NotFoundError

from kryten_likes.store import AtomicBucket, scan
from kryten_likes.store.keys import (
    ANALYTICS_BUCKET, LIKES_BUCKET, decode_token, encode_token, global_key, likes_key,
)

REPO = Path(__file__).resolve().parents[1]
READY_LINE = "serving namespace"

# Answers after which a like is retried: the request changed nothing (an
# error) or nobody can say (no answer). `not_current` comes from a like that
# raced a play of another item; the item comes back, so the like is retried.
RETRY_ERRORS = frozenset({"unavailable", "internal_error", "not_current", "no_current_item"})
LOST = frozenset({"timeout", "no_responders", "conn"})


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# --- the daemon as a subprocess ---------------------------------------------


@attrs.frozen
class Names:
    prefix: str
    channel: str
    namespace: str

    @property
    def like_subject(self) -> str:
        return f"{self.prefix}.playlist.cmd.like"

    def cmd(self, command: str) -> str:
        return f"{self.prefix}.playlist.cmd.{command}"

    @property
    def changemedia_subject(self) -> str:
        return f"kryten.events.cytube.{self.channel}.changemedia"

    @property
    def stream(self) -> str:
        return f"KRYTEN_LIKES_EVENTS_kryten_{self.channel}"

    @property
    def durable(self) -> str:
        return f"kryten_likes_{self.namespace}_{self.channel}"


def write_config(path: Path, servers: Sequence[str], names: Names, *, replicas: int = 1,
                 data_dir: Path | None = None, http_port: int = 0) -> Path:
    """A daemon config with limits far above any storm (these tests are about
    crashes, not rate limits)."""
    path.write_text(
        "[nats]\n"
        f"servers = {json.dumps(list(servers))}\n"
        f'subject_prefix = "{names.prefix}"\n'
        "[cytube]\n"
        f'channel = "{names.channel}"\n'
        "[analytics]\n"
        f'namespace = "{names.namespace}"\n'
        "[likes]\n"
        "rate_per_minute = 1000000.0\n"
        "rate_burst = 1000000\n"
        "[limits]\n"
        "global_likes_per_second = 1000000.0\n"
        "global_likes_burst = 1000000\n"
        "[storage]\n"
        f'data_dir = "{data_dir or path.parent / "data"}"\n'
        f"replicas = {replicas}\n"
        + (f"[http]\nport = {http_port}\n" if http_port else _metrics_off())
    )
    return path


def _metrics_off() -> str:
    """The HTTP metrics endpoint, where the daemon has one, off: a fixed
    port would collide with any other daemon on the machine."""
    from kryten_likes.config import Config

    names = {f.name for f in attrs.fields(Config)}
    return "[http]\nport = 0\n" if "http" in names else ""


class DaemonProcess:
    """`kryten-likes run` in a child process; its output goes to one log file
    across all its lives (a reader thread keeps the pipe drained)."""

    def __init__(self, config: Path, log_path: Path) -> None:
        self.config = config
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None
        self._log_lock = threading.Lock()

    def spawn(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "daemon already running"
        self.starts += 1
        self._ready = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kryten_likes.cli", "run", "--config", str(self.config)],
            cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._reader = threading.Thread(target=self._read, args=(self.proc, self._ready, self.starts),
                                        daemon=True)
        self._reader.start()

    def _read(self, proc: subprocess.Popen[bytes], ready: threading.Event, life: int) -> None:
        assert proc.stdout is not None
        with proc.stdout, self._log_lock, open(self.log_path, "a", encoding="utf-8") as out:
            out.write(f"----- daemon life {life} (pid {proc.pid}) -----\n")
            out.flush()
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace")
                out.write(line)
                out.flush()
                if READY_LINE in line:
                    ready.set()

    def wait_ready(self, timeout: float = 30.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None:
                self._join_reader()
                raise AssertionError(f"daemon exited with {self.proc.returncode} before serving:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"daemon not serving after {timeout}s:\n{self.log_tail()}")

    def start(self, timeout: float = 30.0) -> None:
        self.spawn()
        self.wait_ready(timeout)

    def wait_line(self, text: str, timeout: float = 30.0) -> None:
        """Until this life has logged a line containing ``text`` (e.g. that it
        is standby). Reads the log file the reader thread keeps writing."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        marker = f"----- daemon life {self.starts} "
        while True:
            text_now = self.log_text()
            life = text_now[text_now.rfind(marker):] if marker in text_now else ""
            if text in life:
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} after {timeout}s:\n{self.log_tail()}")
            self._ready.wait(0.05)  # the log grows meanwhile; bounded by the deadline

    @property
    def serving(self) -> bool:
        """This life has said it serves."""
        return self._ready.is_set()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL: no chance to finish anything."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)
        self._join_reader()

    def terminate(self, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._join_reader()
        return self.proc.returncode

    def close(self) -> None:
        """Whatever state it is in: nothing of it is left running."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._join_reader()

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(10)

    def log_tail(self, n: int = 60) -> str:
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""


# --- talking to the daemon ---------------------------------------------------


async def connect(servers: Sequence[str]) -> Any:
    return await nats.connect(servers=list(servers), name="crash-test-client", max_reconnect_attempts=-1,
                              reconnect_time_wait=0.2, connect_timeout=2, allow_reconnect=True)


async def ask(nc: Any, subject: str, body: dict, timeout: float) -> dict | str:
    """One request: the reply as a dict, or a word for "no answer"."""
    try:
        msg = await nc.request(subject, json.dumps(body).encode(), timeout=timeout)
    except nats.errors.NoRespondersError:
        return "no_responders"
    except nats.errors.TimeoutError:
        return "timeout"
    except (nats.errors.Error, OSError):
        return "conn"  # disconnected, reconnecting, …: nobody can say what happened
    return json.loads(msg.data)


async def wait_answer(nc: Any, subject: str, body: dict, check: Callable[[dict], bool], *,
                      timeout: float = 30.0, per_request: float = 2.0) -> dict:
    """Ask until an answer satisfies ``check``; each ask waits for its reply."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await ask(nc, subject, body, per_request)
        if isinstance(last, dict) and check(last):
            return last
        if not isinstance(last, dict) or last.get("status") == "error":
            await anyio.sleep(0.05)  # back-off between retries
    raise AssertionError(f"no satisfying answer on {subject} within {timeout}s; last: {last!r}")


def raw_event(names: Names, name: str, payload: dict) -> bytes:
    return json.dumps({"event_name": name, "payload": payload, "channel": names.channel, "domain": "cytu.be",
                       "timestamp": "2026-01-01T00:00:00Z", "correlation_id": "crash-test"}).encode()


async def publish_play(nc: Any, names: Names, video_id: str, *, msg_id: str | None = None,
                       deadline: float | None = None) -> None:
    """A changeMedia from currentTime 0 (always a new play), stored in the
    stream. With ``msg_id`` a publish whose ack was lost is retried and the
    stream's duplicate window keeps it stored once."""
    data = raw_event(names, "changeMedia", {"id": video_id, "title": f"title {video_id}", "seconds": 30,
                                            "type": "yt", "currentTime": 0})
    js = nc.jetstream()
    headers = {"Nats-Msg-Id": msg_id} if msg_id else None
    while True:
        try:
            await js.publish(names.changemedia_subject, data, timeout=2.0, headers=headers)
            return
        except (nats.errors.Error, OSError, TimeoutError):
            if msg_id is None or (deadline is not None and time.monotonic() > deadline):
                raise
            await anyio.sleep(0.1)  # the bus is away; retry the same message id


# --- the like storm ----------------------------------------------------------


@attrs.define
class StormStats:
    users: int = 0
    sent: int = 0          # requests sent, retries included
    ok: int = 0            # final answers ok
    duplicate: int = 0     # final answers duplicate
    retries: int = 0
    outcomes: Counter = attrs.field(factory=Counter)  # every attempt's outcome
    history: dict[str, list[str]] = attrs.field(factory=dict)
    ok_counts: list[int] = attrs.field(factory=list)
    _marks: list[tuple[int, anyio.Event]] = attrs.field(factory=list)

    @property
    def answered(self) -> int:
        return self.ok + self.duplicate

    async def reached(self, answered: int) -> None:
        """Wait until ``answered`` likes have their final answer."""
        if self.answered >= answered:
            return
        event = anyio.Event()
        self._marks.append((answered, event))
        await event.wait()

    def _answered_one(self) -> None:
        for mark in [m for m in self._marks if self.answered >= m[0]]:
            self._marks.remove(mark)
            mark[1].set()


class Gate:
    """Open while the daemon is believed up; workers whose request got no
    answer wait here, so their retry goes to the next life of the daemon."""

    def __init__(self) -> None:
        self._event = anyio.Event()
        self._event.set()

    def close(self) -> None:
        if self._event.is_set():
            self._event = anyio.Event()

    def open(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()


async def like_storm(nc: Any, names: Names, users: Sequence[str], video_id: str, stats: StormStats, *,
                     gate: Gate | None = None, concurrency: int = 64, timeout: float = 2.0,
                     deadline: float) -> None:
    """Every user likes ``video_id`` once; anything but ok/duplicate is retried
    (after the gate opens) until answered or until ``deadline``."""
    stats.users = len(users)
    queue = iter(users)

    async def worker() -> None:
        for user in queue:
            hist = stats.history.setdefault(user, [])
            backoff = 0.02
            while True:
                if time.monotonic() > deadline:
                    raise AssertionError(f"like of {user} unanswered at the deadline; attempts {hist}")
                stats.sent += 1
                reply = await ask(nc, names.like_subject, {"username": user, "video_id": video_id,
                                                           "correlation_id": f"{user}-{len(hist)}"}, timeout)
                word = reply if isinstance(reply, str) else (reply.get("error") or reply["status"])
                hist.append(word)
                stats.outcomes[word] += 1
                if isinstance(reply, dict) and reply["status"] in ("ok", "duplicate"):
                    assert reply["video_id"] == video_id, reply
                    if reply["status"] == "ok":
                        stats.ok += 1
                        stats.ok_counts.append(reply["like_count"])
                    else:
                        stats.duplicate += 1
                    stats._answered_one()
                    break
                if isinstance(reply, dict) and reply.get("error") not in RETRY_ERRORS:
                    raise AssertionError(f"like of {user}: unexpected answer {reply}")
                stats.retries += 1
                if gate is not None and word in LOST:
                    await gate.wait()
                await anyio.sleep(backoff)  # back-off between retries
                backoff = min(backoff * 2, 0.5)

    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)


def lost_answer_violations(stats: StormStats) -> dict[str, list[str]]:
    """Users told `duplicate` in the end although every earlier attempt was
    *answered* with an error: then an error reply changed something (the
    contract says it changes nothing). Users are distinct, so a duplicate is
    only right after an attempt whose answer was lost."""
    return {u: h for u, h in stats.history.items()
            if h and h[-1] == "duplicate" and not any(w in LOST for w in h[:-1])}


# --- what KV holds -------------------------------------------------------------


@attrs.frozen
class LikeTruth:
    like_count: int | None
    dedupe_users: frozenset[str]
    dedupe_keys: int


async def _patiently(read: Callable[[], Any]) -> Any:
    """Right after a node dies a read may time out while the cluster elects
    new leaders: ask again (a bounded number of times)."""
    for attempt in range(10):
        try:
            return await read()
        except (nats.errors.TimeoutError, TimeoutError):
            if attempt == 9:
                raise
    raise AssertionError("unreachable")


async def like_truth(nc: Any, names: Names, video_id: str) -> LikeTruth:
    return await _patiently(lambda: _like_truth(nc, names, video_id))


async def _like_truth(nc: Any, names: Names, video_id: str) -> LikeTruth:
    js = nc.jetstream()
    kv = await js.key_value(LIKES_BUCKET)
    try:
        doc = json.loads((await kv.get(likes_key(names.namespace, video_id))).value)
        count = int(doc["like_count"])
    except KeyNotFoundError:
        count = None
    prefix = f"ns/{names.namespace}/dedupe/{encode_token(video_id)}/"
    entries = await scan(AtomicBucket(nc, kv, LIKES_BUCKET))
    keys = [k for k in entries if k.startswith(prefix)]
    return LikeTruth(count, frozenset(decode_token(k[len(prefix):]) for k in keys), len(keys))


async def play_truth(nc: Any, names: Names) -> tuple[dict[str, int], int]:
    """Every item's play_count (items with one), and the global items_played."""
    return await _patiently(lambda: _play_truth(nc, names))


async def _play_truth(nc: Any, names: Names) -> tuple[dict[str, int], int]:
    js = nc.jetstream()
    kv = await js.key_value(ANALYTICS_BUCKET)
    entries = await scan(AtomicBucket(nc, kv, ANALYTICS_BUCKET))
    prefix = f"ns/{names.namespace}/items/"
    plays = {}
    for key, entry in entries.items():
        if key.startswith(prefix) and "/" not in key[len(prefix):] and entry.value:
            n = int(entry.value.get("play_count", 0))
            if n:
                plays[decode_token(key[len(prefix):])] = n
    glob = entries.get(global_key(names.namespace))
    return plays, int(glob.value.get("items_played", 0)) if glob and glob.value else 0


async def events_settled(nc: Any, names: Names, *, timeout: float = 40.0) -> None:
    """Until the daemon's consumer has nothing pending and nothing unacked.
    Events a killed daemon had fetched come back after the consumer's
    ack_wait (10 s), so this may take that long after the last kill."""
    js = nc.jetstream()
    deadline = time.monotonic() + timeout
    info = None
    while time.monotonic() < deadline:
        try:
            info = await js.consumer_info(names.stream, names.durable, timeout=2)
        except (nats.errors.Error, NotFoundError, TimeoutError):
            info = None
        else:
            if info.num_pending == 0 and info.num_ack_pending == 0:
                return
        await anyio.sleep(0.2)  # polling the consumer's state, bounded by the deadline
    raise AssertionError(f"events not settled within {timeout}s: {info}")


# --- the kill schedule -----------------------------------------------------------


def kill_points(rng: random.Random, n_users: int, kills: int) -> list[int]:
    """Answered-like counts at which to kill: spread over the storm, random
    within their slot, so every kill lands while likes are in flight."""
    slot = n_users / (kills + 1)
    return [int(slot * (i + 0.5) + rng.uniform(0, slot * 0.9)) for i in range(kills)]


# --- a like storm (and a play stream) under faults of the bus ----------------------


@attrs.define
class FaultRun:
    users: list[str]
    stats: StormStats = attrs.field(factory=StormStats)
    faults: list = attrs.field(factory=list)       # (what, seconds) per fault
    pairs: int = 0
    new_items: list[str] = attrs.field(factory=list)
    truth: LikeTruth | None = None
    plays: dict[str, int] = attrs.field(factory=dict)
    items_played: int = 0
    fresh: dict = attrs.field(factory=dict)

    def plays_exact(self, liked: str) -> bool:
        expected = {liked: 1 + self.pairs, **{v: 1 for v in self.new_items}}
        return self.plays == expected and self.items_played == 1 + 2 * self.pairs

    def plays_never_doubled(self, liked: str) -> bool:
        return (self.plays.get(liked, 0) <= 1 + self.pairs and all(self.plays.get(v, 0) <= 1 for v in self.new_items)
                and set(self.plays) <= {liked, *self.new_items} and self.items_played <= 1 + 2 * self.pairs)

    def assert_exact(self, liked: str, code: int, daemon: DaemonProcess, fault: str) -> None:
        """The promise after a fault storm: every like answered ok or duplicate
        counted exactly once, the daemon answering again and stopping cleanly,
        no play twice, none lost."""
        n = len(self.users)
        assert self.stats.answered == n
        assert self.truth.like_count == self.truth.dedupe_keys == n
        assert self.truth.dedupe_users == set(self.users)
        assert lost_answer_violations(self.stats) == {}
        assert (self.fresh["status"], self.fresh["like_count"]) == ("ok", n + 1)
        assert code == 0, daemon.log_tail()
        assert self.plays_never_doubled(liked)
        assert self.plays_exact(liked), f"plays lost {fault}: {self.items_played} of {1 + 2 * self.pairs}"

    def summary(self, liked: str) -> str:
        s = self.stats
        return (f"faults={self.faults}\n"
                f"likes: users={len(self.users)} sent={s.sent} ok={s.ok} duplicate={s.duplicate} "
                f"retries={s.retries} outcomes={dict(s.outcomes)}\n"
                f"KV: like_count={self.truth.like_count if self.truth else None} "
                f"dedupe_keys={self.truth.dedupe_keys if self.truth else None}\n"
                f"plays: published={1 + 2 * self.pairs} items_played={self.items_played} "
                f"{liked} play_count={self.plays.get(liked)} (expected {1 + self.pairs})")


async def fault_storm(servers: Sequence[str], names: Names, daemon: DaemonProcess, users: list[str],
                      faults: Sequence[tuple[int, str, Callable[[], Any]]], *, liked: str,
                      budget: float, rng: random.Random | None = None) -> FaultRun:
    """Likes of ``liked`` by every user and a stream of play pairs (new item,
    ``liked`` again), published with message ids; at each ``(answered, what,
    fault)`` the blocking ``fault()`` runs in a thread while the storm goes
    on. Then the counts are read once the events have settled."""
    rng = rng or random.Random()
    run = FaultRun(users)
    stats, gate = run.stats, Gate()
    deadline = time.monotonic() + budget
    nc = await connect(servers)
    try:
        await publish_play(nc, names, liked, msg_id="play-0", deadline=deadline)
        await wait_answer(nc, names.cmd("now_playing"), {}, lambda r: r.get("video_id") == liked)
        storm_done = anyio.Event()

        async def faulter() -> None:
            for point, what, fault in faults:
                await stats.reached(point)
                await anyio.sleep(rng.uniform(0, 0.05))  # a random instant under load
                gate.close()
                t0 = time.monotonic()
                await anyio.to_thread.run_sync(fault)
                run.faults.append((what, round(time.monotonic() - t0, 2)))
                gate.open()

        async def player() -> None:
            while not storm_done.is_set() and time.monotonic() < deadline:
                vid = f"p{len(run.new_items):05d}"
                await publish_play(nc, names, vid, msg_id=f"play-{vid}", deadline=deadline)
                run.new_items.append(vid)
                await publish_play(nc, names, liked, msg_id=f"play-{vid}-again", deadline=deadline)
                run.pairs += 1
                await anyio.sleep(rng.uniform(0.05, 0.15))  # pacing of the play stream

        async with anyio.create_task_group() as tg:
            tg.start_soon(faulter)
            tg.start_soon(player)
            await like_storm(nc, names, users, liked, stats, gate=gate, deadline=deadline)
            storm_done.set()

        assert daemon.alive, "the daemon died:\n" + daemon.log_tail()
        await events_settled(nc, names)
        run.truth = await like_truth(nc, names, liked)
        run.plays, run.items_played = await play_truth(nc, names)
        run.fresh = await wait_answer(nc, names.like_subject, {"username": "fresh-user"},
                                      lambda r: r["status"] in ("ok", "duplicate"))
    finally:
        await nc.close()
    return run


# --- a kill while the daemon catches up on the event stream -------------------------


@attrs.frozen
class CatchUpKill:
    delivered_seq: int   # the last stream sequence the consumer had delivered
    stored_seq: int      # the highest event sequence the counters record (last_event_seq)
    attempts: int

    @property
    def fetched_unstored(self) -> int:
        """Events the killed life had fetched but not stored (they come back after ack_wait)."""
        return max(0, self.delivered_seq - self.stored_seq)


async def stored_event_seq(nc: Any, names: Names) -> int:
    kv = await nc.jetstream().key_value(ANALYTICS_BUCKET)
    try:
        doc = json.loads((await kv.get(global_key(names.namespace))).value)
    except KeyNotFoundError:
        return 0
    return int(doc.get("last_event_seq", 0))


async def kill_during_catch_up(nc: Any, names: Names, d: DaemonProcess, publish_burst: Callable[[], Any], *,
                               deadline: float, attempts: int = 3) -> CatchUpKill:
    """With the daemon dead: publish a burst of plays, start the daemon and
    SIGKILL it while it has fetched plays it has not stored yet (the
    consumer's delivered sequence is past the stored ``last_event_seq``).
    Tried again (another burst) if a kill came too late."""
    js = nc.jetstream()
    result = CatchUpKill(0, 0, 0)
    for attempt in range(1, attempts + 1):
        await publish_burst()
        await anyio.to_thread.run_sync(d.start)
        while time.monotonic() < deadline:  # each ask waits for its reply
            try:
                info = await js.consumer_info(names.stream, names.durable, timeout=2)
            except NotFoundError:
                continue  # the daemon makes its consumer anew at every start
            if info.delivered.stream_seq > await stored_event_seq(nc, names) and info.num_ack_pending:
                break
        await anyio.to_thread.run_sync(d.kill9)
        try:
            info = await js.consumer_info(names.stream, names.durable, timeout=2)
        except NotFoundError:
            continue  # killed between deleting and making the consumer: try again
        result = CatchUpKill(info.delivered.stream_seq, await stored_event_seq(nc, names), attempt)
        if result.fetched_unstored:
            return result
    return result
