"""A like storm whose unanswered requests are retried until answered (also
under faults of the bus, with a play stream), the kill schedule, and a kill
while the daemon catches up on the event stream: the crash, bus-fault and
cluster tests' drivers.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import anyio.to_thread
import attrs
from nats.js.errors import NotFoundError

from support.bus import (
    LOST, RETRY_ERRORS, LikeTruth, ask, connect, events_settled, like_truth, play_truth, publish_play,
    stored_event_seq, wait_answer,
)
from support.daemon_process import DaemonProcess, Names

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
    unliked: set = attrs.field(factory=set)  # users whose unlike was answered ok
    unlike_outcomes: Counter = attrs.field(factory=Counter)  # every unlike attempt's outcome
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
                     deadline: float, unlikers: frozenset = frozenset()) -> None:
    """Every user likes ``video_id`` once; anything but ok/duplicate is retried
    (after the gate opens) until answered or until ``deadline``. Each of
    ``unlikers`` then takes the like back (``unlike``, retried with one
    correlation_id until answered)."""
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
                    if user in unlikers:
                        await _unlike(nc, names, user, video_id, stats, gate, timeout, deadline)
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


async def _unlike(nc: Any, names: Names, user: str, video_id: str, stats: StormStats, gate: Gate | None,
                  timeout: float, deadline: float) -> None:
    """The user's like was counted: the unlike must come back ok, a retry
    (same correlation_id) with the original answer."""
    backoff = 0.02
    while True:
        if time.monotonic() > deadline:
            raise AssertionError(f"unlike of {user} unanswered at the deadline")
        reply = await ask(nc, names.cmd("unlike"), {"username": user, "video_id": video_id,
                                                    "correlation_id": f"{user}-unlike"}, timeout)
        word = reply if isinstance(reply, str) else (reply.get("error") or reply["status"])
        stats.unlike_outcomes[word] += 1
        if isinstance(reply, dict) and reply["status"] == "ok":
            stats.unliked.add(user)
            return
        if isinstance(reply, dict) and reply.get("error") not in RETRY_ERRORS:
            raise AssertionError(f"unlike of {user}: unexpected answer {reply}")
        if gate is not None and word in LOST:
            await gate.wait()
        await anyio.sleep(backoff)  # back-off between retries
        backoff = min(backoff * 2, 0.5)


def lost_answer_violations(stats: StormStats) -> dict[str, list[str]]:
    """Users told `duplicate` in the end although every earlier attempt was
    *answered* with an error: then an error reply changed something (the
    contract says it changes nothing). Users are distinct, so a duplicate is
    only right after an attempt whose answer was lost."""
    return {u: h for u, h in stats.history.items()
            if h and h[-1] == "duplicate" and not any(w in LOST for w in h[:-1])}


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
        run.truth = await like_truth(nc, names, liked, answered=len(users))
        run.plays, run.items_played = await play_truth(nc, names)
        # One ask, waited for: a client that gives up after 2 s and asks again
        # hears ``duplicate`` when its first ask was counted (a write can take
        # seconds on a cluster that just lost a node), and this checks ``ok``.
        run.fresh = await wait_answer(nc, names.like_subject, {"username": "fresh-user"},
                                      lambda r: r["status"] in ("ok", "duplicate"), per_request=15.0)
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
