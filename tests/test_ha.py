"""One writer per namespace, with daemons as real processes on a real
nats-server: two started together give one active and one standby and one
reply per request; kill -9 of the active one mid-storm hands over to the
standby with every like counted once; a paused active daemon that wakes after
its lease was taken writes nothing and steps down."""

from __future__ import annotations

import json
import os
import random
import signal
import time
import urllib.error
import urllib.request

import anyio
import pytest

from support.bus import connect, publish_play, wait_answer
from support.daemon_process import DaemonProcess, Names, daemon_config, free_port
from support.storm import fault_storm, lost_answer_violations
from kryten_likes.embedded import start_nats_server
from kryten_likes.store import LIKES_BUCKET, AtomicBucket, scan

LIKED = "ha-liked"


@pytest.fixture
def bus(tmp_path):
    with start_nats_server(tmp_path / "js", port=None) as server:
        yield server


class Pair:
    """Two daemons of one namespace, each with its own HTTP port."""

    def __init__(self, tmp_path, url: str, names: Names) -> None:
        self.ports = [free_port(), free_port()]
        self.daemons = [DaemonProcess(daemon_config(tmp_path / f"d{i}.toml", [url], names, http_port=port,
                                                   data_dir=tmp_path / f"data{i}"), tmp_path / f"d{i}.log")
                        for i, port in enumerate(self.ports)]

    @property
    def alive(self) -> bool:
        return any(d.alive for d in self.daemons)

    def active(self) -> DaemonProcess:
        serving = [d for d in self.daemons if d.alive and d.serving]
        assert len(serving) == 1, [d.log_tail(20) for d in self.daemons]
        return serving[0]

    def other(self, d: DaemonProcess) -> DaemonProcess:
        return self.daemons[1 - self.daemons.index(d)]

    def health(self, i: int) -> dict:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[i]}/health", timeout=5) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read())

    def log_tail(self) -> str:
        return "\n".join(d.log_tail(30) for d in self.daemons)

    def close(self) -> None:
        for d in self.daemons:
            d.close()


def _start_both(pair: Pair) -> None:
    for d in pair.daemons:
        d.spawn()
    deadline = time.monotonic() + 30
    while not any(d.serving for d in pair.daemons):
        assert time.monotonic() < deadline, pair.log_tail()
        pair.daemons[0]._ready.wait(0.05)  # bounded by the deadline
    pair.other(pair.active()).wait_line("standby: namespace")


def test_two_daemons_started_together_one_active_one_reply_each(bus, tmp_path):
    names = Names("ha1", "hachan1", "hans1")
    pair = Pair(tmp_path, bus.url, names)
    try:
        _start_both(pair)
        roles = sorted(pair.health(i)["role"] for i in (0, 1))
        assert roles == ["active", "standby"]
        active = pair.active()
        standby_log = pair.other(active).log_text()
        assert f"namespace {names.namespace} is served by" in standby_log

        async def storm() -> tuple[dict[str, list[dict]], dict]:
            nc = await connect([bus.url])
            try:
                await publish_play(nc, names, LIKED)
                await wait_answer(nc, names.cmd("now_playing"), {}, lambda r: r.get("video_id") == LIKED)
                replies: dict[str, list[dict]] = {}
                inbox = nc.new_inbox()
                sub = await nc.subscribe(inbox)
                users = [f"user{i:04d}" for i in range(300)]
                for u in users:
                    await nc.publish(names.like_subject, json.dumps({"username": u, "correlation_id": u}).encode(),
                                     reply=inbox)
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    try:
                        m = await sub.next_msg(timeout=1.0)  # a second of quiet after the last reply
                    except Exception:
                        if sum(map(len, replies.values())) >= len(users):
                            break
                        continue
                    r = json.loads(m.data)
                    replies.setdefault(r["correlation_id"], []).append(r)
                stats = await wait_answer(nc, names.cmd("stats"), {"video_id": LIKED}, lambda r: True)
                return replies, stats
            finally:
                await nc.close()

        replies, stats = anyio.run(storm)
        assert len(replies) == 300
        assert {len(rs) for rs in replies.values()} == {1}, "a request got more than one reply"
        assert {rs[0]["status"] for rs in replies.values()} == {"ok"}
        assert stats["item"]["like_count"] == 300

        # Takeover: kill -9 of the active one, then likes until the first ok.
        async def first_ok_after_kill() -> float:
            nc = await connect([bus.url])
            try:
                t0 = time.monotonic()
                await anyio.to_thread.run_sync(active.kill9)
                await wait_answer(nc, names.like_subject, {"username": "after-the-kill"},
                                  lambda r: r["status"] == "ok", timeout=30, per_request=0.25)
                return time.monotonic() - t0
            finally:
                await nc.close()

        takeover = anyio.run(first_ok_after_kill)
        print(f"\ntakeover: kill -9 of the active daemon to the first ok from the standby: {takeover:.2f} s")
        assert takeover <= 5.0 + 2.0, f"takeover took {takeover:.2f} s with a 5 s lease"
    finally:
        pair.close()


def test_kill_9_of_the_active_daemon_mid_storm_three_times(bus, tmp_path):
    rng = random.Random()
    names = Names("ha2", "hachan2", "hans2")
    pair = Pair(tmp_path, bus.url, names)
    takeovers: list[float] = []

    def kill_active() -> None:
        active = pair.active()
        standby = pair.other(active)
        t0 = time.monotonic()
        active.kill9()
        standby.wait_ready(30)  # it takes over: "serving namespace"
        takeovers.append(round(time.monotonic() - t0, 2))
        active.spawn()  # and the killed one comes back as standby
        active.wait_line("standby: namespace", 30)

    users = [f"user{i:05d}" for i in range(3000)]
    faults = [(p, "kill -9 active", kill_active) for p in (600, 1400, 2200)]
    try:
        _start_both(pair)
        run = anyio.run(lambda: fault_storm([bus.url], names, pair, users, faults, liked=LIKED, budget=240, rng=rng))
    finally:
        codes = [d.terminate() for d in pair.daemons]
        pair.close()
    print("\n" + run.summary(LIKED) + f"\ntakeover (kill -9 to the standby serving), s: {takeovers}")
    lease = 5.0
    assert len(takeovers) == 3 and max(takeovers) <= lease + 3.0, takeovers
    n = len(users)
    assert run.stats.answered == n
    assert run.truth.like_count == run.truth.dedupe_keys == n
    assert run.truth.dedupe_users == set(users)
    assert lost_answer_violations(run.stats) == {}
    assert (run.fresh["status"], run.fresh["like_count"]) == ("ok", n + 1)
    assert run.plays_exact(LIKED), f"plays: {run.items_played} of {1 + 2 * run.pairs}"
    assert codes == [0, 0]


def test_a_paused_active_daemon_writes_nothing_after_the_takeover_and_steps_down(bus, tmp_path):
    names = Names("ha3", "hachan3", "hans3")
    pair = Pair(tmp_path, bus.url, names)
    try:
        _start_both(pair)
        paused = pair.active()
        other = pair.other(paused)

        async def scenario() -> tuple[dict, dict]:
            nc = await connect([bus.url])
            try:
                await publish_play(nc, names, LIKED)
                await wait_answer(nc, names.cmd("now_playing"), {}, lambda r: r.get("video_id") == LIKED)
                answers: dict[str, dict] = {}

                async def like(u: str) -> None:
                    answers[u] = await wait_answer(
                        nc, names.like_subject, {"username": u, "correlation_id": u},
                        lambda r: r["status"] in ("ok", "duplicate"), timeout=60, per_request=1.0)

                async with anyio.create_task_group() as tg:
                    for i in range(100):
                        tg.start_soon(like, f"early{i}")
                os.kill(paused.proc.pid, signal.SIGSTOP)
                try:
                    async with anyio.create_task_group() as tg:  # sent while it is paused
                        for i in range(200):
                            tg.start_soon(like, f"during{i}")
                    await anyio.to_thread.run_sync(other.wait_ready, 30)
                finally:
                    os.kill(paused.proc.pid, signal.SIGCONT)
                await anyio.to_thread.run_sync(lambda: paused.wait_line("stepping down to standby", 30))
                async with anyio.create_task_group() as tg:
                    for i in range(100):
                        tg.start_soon(like, f"after{i}")
                stats = await wait_answer(nc, names.cmd("stats"), {"video_id": LIKED}, lambda r: True)
                kv = await nc.jetstream().key_value(LIKES_BUCKET)
                last = json.loads((await kv.get(f"ns/{names.namespace}/writer/last")).value)
                return answers, {"stats": stats, "last": last}
            finally:
                await nc.close()

        answers, seen = anyio.run(scenario)
        assert len(answers) == 400
        assert all(a["status"] == "ok" for a in answers.values()), \
            {u: a for u, a in answers.items() if a["status"] != "ok"}
        assert seen["stats"]["item"]["like_count"] == 400  # nothing lost, nothing twice
        assert seen["last"]["epoch"] >= 2  # the last batch stored was the new active's
        assert "stepping down to standby" in paused.log_text()
        health = {pair.daemons.index(d): pair.health(pair.daemons.index(d))["role"] for d in pair.daemons}
        assert sorted(health.values()) == ["active", "standby"]
        assert health[pair.daemons.index(paused)] == "standby"
    finally:
        for d in pair.daemons:
            if d.alive:
                os.kill(d.proc.pid, signal.SIGCONT)
        pair.close()


def _one_like_then_fence_moved(harness, bucket: str):
    """A daemon that has counted one like of ``v``; then someone moves the
    fence in ``bucket``. The harness and the namespace."""
    from conftest import playing

    h = harness()
    h.change_media("v")
    playing(h, "v")
    assert h.request("like", {"username": "first"})["like_count"] == 1
    ns = h.config.analytics.namespace

    async def move_fence() -> None:
        kv = await h.nc.jetstream().key_value(bucket)
        await kv.put(f"ns/{ns}/writer", json.dumps({"holder": "someone else", "epoch": 999}).encode())
    h.portal.call(move_fence)
    return h, ns


def _fence_moved_then_like_retried(harness, bucket: str, like: dict, command: str = "like"):
    """A daemon that has counted one like of ``v``; someone moves the fence in
    ``bucket``; ``like`` (a ``command`` request) is refused as unavailable
    (nothing stored), then sent again until the daemon, active again, answers
    it. The harness and that answer."""
    from conftest import wait_until
    import nats.errors

    h, _ = _one_like_then_fence_moved(harness, bucket)
    r = h.request(command, like)
    assert (r["status"], r["error"]) == ("error", "unavailable"), r

    def retry() -> dict | None:
        try:  # between stepping down and serving again nobody answers
            r = h.request(command, like, timeout=1)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            return None
        return r if r.get("status") == "ok" else None

    return h, wait_until(retry, timeout=15)


def test_a_fence_moved_under_an_active_daemon_refuses_its_writes_truly_and_it_takes_over_again(harness):
    """Someone moved the fence (by hand, or a daemon we cannot see): nothing
    of ours may be stored. The like in hand is answered unavailable (true:
    nothing stored), the daemon steps down, finds the lease still its own and
    becomes active again with a fence of its own; the request retried counts
    once. (An unlike: it is stored in the likes bucket whatever it carries,
    where a lone like, even with a correlation_id, goes to the journal's.)"""
    h, retried = _fence_moved_then_like_retried(harness, LIKES_BUCKET, {"username": "first", "correlation_id": "c2"},
                                                command="unlike")
    assert retried["like_count"] == 0
    assert h.request("stats", {"video_id": "v"})["item"]["like_count"] == 0


def test_a_journalled_like_whose_documents_meet_a_moved_fence_counts_once_after_the_takeover(harness):
    """The likes bucket's fence moved after a lone like's journal entry
    landed (answered ``ok``): the group that stores it is refused, the daemon
    steps down and, active again, stores it from the journal. Once."""
    from conftest import wait_until
    from kryten_likes.store.keys import LIKES_BUCKET as bucket

    h, ns = _one_like_then_fence_moved(harness, bucket)
    r = h.request("like", {"username": "second", "correlation_id": "c2"})
    assert (r["status"], r["like_count"]) == ("ok", 2), r

    def stored() -> int | None:
        try:
            doc = h.kv(bucket, f"ns/{ns}/items/v/likes")
        except Exception:  # (stepped down meanwhile: nobody answers the harness's round trip)
            return None
        return doc["like_count"] if doc else None
    assert wait_until(lambda: stored() == 2, timeout=15)
    again = h.request("like", {"username": "second", "correlation_id": "c2"})
    assert (again["status"], again["like_count"]) == ("ok", 2), "a retry hears its original answer"
    assert h.request("stats", {"video_id": "v"})["item"]["like_count"] == 2


def test_a_lone_like_checks_the_fence_of_the_journal_it_is_written_to(harness):
    """A lone like is one write to the journal bucket (actors/like_journal.py),
    fenced by that bucket's own ``writer`` key: moved there alone, it refuses
    the like truly (nothing stored), and the retried like counts once."""
    from kryten_likes.store.keys import JOURNAL_BUCKET

    # Alone, without a correlation_id: the journal's path.
    h, retried = _fence_moved_then_like_retried(harness, JOURNAL_BUCKET, {"username": "second"})
    assert retried["like_count"] == 2
    assert h.request("stats", {"video_id": "v"})["item"]["like_count"] == 2
    assert h.kv(LIKES_BUCKET, f"ns/{h.config.analytics.namespace}/items/v/likes")["like_count"] == 2


def test_a_lone_like_is_answered_from_the_journal_and_stored_within_a_tick(harness):
    """The lone like's path as the daemon runs it: the journal holds it when it
    is answered, the daemon counts it at once, its document follows."""
    from conftest import playing
    from kryten_likes.store.keys import JOURNAL_BUCKET

    h = harness()
    h.change_media("v")
    playing(h, "v")
    assert h.request("like", {"username": "alone"})["like_count"] == 1
    ns = h.config.analytics.namespace

    async def journal_revisions() -> list[int]:
        # store.scan, not kv.keys(): nats-py's watcher may end its list early.
        kv = await h.nc.jetstream().key_value(JOURNAL_BUCKET)
        entries = await scan(AtomicBucket(h.nc, kv, JOURNAL_BUCKET))
        return [e.revision for k, e in entries.items() if k.startswith(f"ns/{ns}/journal/")]
    assert h.request("stats", {"video_id": "v"})["item"]["like_count"] == 1  # counted at once
    assert h.kv(LIKES_BUCKET, f"ns/{ns}/items/v/likes")["like_count"] == 1  # (waits until stored)
    mark = h.kv(LIKES_BUCKET, f"ns/{ns}/journal_mark")
    assert mark is not None and mark["revision"] >= 1, "the like went through the journal"
    assert h.portal.call(h.daemon.activation.likes_unstored) == 0
    # Entries not purged yet are all stored: none above the mark.
    assert all(rev <= mark["revision"] for rev in h.portal.call(journal_revisions))
