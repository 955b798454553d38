"""Exactly once across crashes (design.md, "Exactly once, across crashes"):
after a `kill -9` of the daemon at any instant and a restart, no like
answered ok/duplicate and no observed play is lost, and none is counted
twice.

The daemon runs as a real subprocess (`python -m kryten_likes.cli run`)
against a nats-server this module starts (file store, random port). A storm
of likes from thousands of distinct users (64 in flight, 2 s client timeout)
and a stream of plays run while the daemon is killed with SIGKILL at random
moments and restarted; requests that got no answer wait for the restart and
are retried until answered. Then KV must hold exactly what was promised.

Likes are all for one item L and carry ``video_id`` = L; the play stream is
pairs (new item p_i, then L again from currentTime 0), so L is almost always
what plays. A like that races a p_i gets ``not_current`` (an error that
changed nothing) and is retried, which keeps the check exact: every user
ends with L liked once. Every changeMedia is a new play, so L's play_count
is 1 + the number of pairs, each p_i's is 1.

Set CRASH_SEED to replay a run's random kill moments.
"""

from __future__ import annotations

import os
import random
import time

import anyio
import anyio.to_thread
import pytest

from crash_support import (
    DaemonProcess, Gate, Names, StormStats, connect, events_settled, kill_points, like_storm, like_truth,
    lost_answer_violations, play_truth, publish_play, wait_answer, write_config,
)
from kryten_likes.embedded import start_nats_server

LIKED = "liked-item"


@pytest.fixture
def nats_js(tmp_path):
    server = start_nats_server(tmp_path / "js", port=None)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def daemon_proc(tmp_path):
    made: list[DaemonProcess] = []

    def make(config) -> DaemonProcess:
        d = DaemonProcess(config, tmp_path / f"daemon{len(made)}.log")
        made.append(d)
        return d

    try:
        yield make
    finally:
        for d in made:
            d.close()


def _seed() -> int:
    seed = int(os.environ.get("CRASH_SEED") or random.randrange(1 << 30))
    print(f"\nCRASH_SEED={seed}")
    return seed


@pytest.mark.parametrize("n_users,n_kills,budget", [
    pytest.param(3000, 4, 120.0, id="short"),
    pytest.param(30000, 15, 900.0, id="soak", marks=pytest.mark.soak),
])
def test_kill9_during_like_storm_and_plays_loses_and_doubles_nothing(nats_js, daemon_proc, tmp_path,
                                                                     n_users, n_kills, budget):
    rng = random.Random(_seed())
    names = Names("crash", "crashchan", "crashns")
    d = daemon_proc(write_config(tmp_path / "config.toml", [nats_js.url], names))
    users = [f"user{i:06d}" for i in range(n_users)]
    rng.shuffle(users)
    points = kill_points(rng, n_users, n_kills)
    d.start()
    began = time.monotonic()
    deadline = began + budget

    stats = StormStats()
    gate = Gate()
    report: dict = {"kills": 0, "kills_during_start": 0, "pairs": 0, "plays_while_dead": 0}
    new_items: list[str] = []

    async def scenario() -> None:
        nc = await connect([nats_js.url])
        try:
            await publish_play(nc, names, LIKED)
            await wait_answer(nc, names.cmd("now_playing"), {}, lambda r: r.get("video_id") == LIKED)
            storm_done = anyio.Event()

            async def killer() -> None:
                for i, point in enumerate(points):
                    await stats.reached(point)
                    await anyio.sleep(rng.uniform(0, 0.05))  # a random instant, not a sync point
                    gate.close()
                    await anyio.to_thread.run_sync(d.kill9)
                    report["kills"] += 1
                    await anyio.sleep(rng.uniform(0.05, 0.5))  # stays dead a while: plays keep coming
                    if i % 2 == 1:
                        # Killed again while starting (scan, consumer set-up, …).
                        await anyio.to_thread.run_sync(d.spawn)
                        await anyio.sleep(rng.uniform(0.1, 1.5))
                        await anyio.to_thread.run_sync(d.kill9)
                        report["kills"] += 1
                        report["kills_during_start"] += 1
                    await anyio.to_thread.run_sync(d.start)
                    gate.open()

            async def player() -> None:
                while not storm_done.is_set() and time.monotonic() < deadline:
                    vid = f"p{len(new_items):05d}"
                    dead = not d.alive
                    await publish_play(nc, names, vid)
                    new_items.append(vid)
                    await publish_play(nc, names, LIKED)
                    report["pairs"] += 1
                    report["plays_while_dead"] += 2 * dead
                    await anyio.sleep(rng.uniform(0.03, 0.12))  # pacing of the play stream

            async with anyio.create_task_group() as tg:
                tg.start_soon(killer)
                tg.start_soon(player)
                await like_storm(nc, names, users, LIKED, stats, gate=gate, deadline=deadline)
                storm_done.set()
            storm_s = time.monotonic() - began

            assert d.alive, "the daemon died on its own:\n" + d.log_tail()
            await events_settled(nc, names)
            truth = await like_truth(nc, names, LIKED)
            plays, items_played = await play_truth(nc, names)
            item = await wait_answer(nc, names.cmd("stats"), {"video_id": LIKED},
                                     lambda r: r["status"] == "ok")
            print(f"likes: users={n_users} sent={stats.sent} ok={stats.ok} duplicate={stats.duplicate} "
                  f"retries={stats.retries} outcomes={dict(stats.outcomes)}")
            print(f"kills={report['kills']} (during start-up {report['kills_during_start']}) "
                  f"storm={storm_s:.1f}s daemon starts={d.starts}")
            print(f"KV: like_count={truth.like_count} dedupe_keys={truth.dedupe_keys} "
                  f"distinct users={len(set(users))}")
            print(f"plays: pairs={report['pairs']} published while dead={report['plays_while_dead']} "
                  f"{LIKED} play_count={plays.get(LIKED)} items_played={items_played}")

            # Likes: every user answered ok or duplicate, each counted exactly once.
            assert stats.answered == n_users
            assert truth.like_count == truth.dedupe_keys == n_users
            assert truth.dedupe_users == set(users)
            assert max(stats.ok_counts) <= n_users
            assert item["item"]["like_count"] == n_users
            assert lost_answer_violations(stats) == {}
            # Plays: every published play counted exactly once.
            assert plays[LIKED] == 1 + report["pairs"]
            assert {v: n for v, n in plays.items() if v != LIKED} == {v: 1 for v in new_items}
            assert items_played == 1 + 2 * report["pairs"]
            assert item["item"]["play_count"] == 1 + report["pairs"]
            # And the daemon goes on counting.
            fresh = await wait_answer(nc, names.like_subject, {"username": "fresh-user"},
                                      lambda r: r["status"] == "ok")
            assert fresh["like_count"] == n_users + 1
        finally:
            await nc.close()

    anyio.run(scenario)
    assert report["kills"] >= n_kills
    assert d.terminate() == 0, d.log_tail()


def test_plays_published_while_the_daemon_is_dead_count_once_after_restart(nats_js, daemon_proc, tmp_path):
    rng = random.Random(_seed())
    names = Names("dead", "deadchan", "deadns")
    d = daemon_proc(write_config(tmp_path / "config.toml", [nats_js.url], names))
    d.start()
    first = [f"a{i:03d}" for i in range(150)]
    second = [f"b{i:03d}" for i in range(100)]

    async def scenario() -> None:
        nc = await connect([nats_js.url])
        try:
            await publish_play(nc, names, "start")
            await wait_answer(nc, names.cmd("now_playing"), {}, lambda r: r.get("video_id") == "start")
            await anyio.to_thread.run_sync(d.kill9)
            for vid in first:  # the daemon is dead: only the stream sees these
                await publish_play(nc, names, vid)
            await publish_play(nc, names, "start")  # a replay counts again
            # Restart, and kill it again while it catches up.
            await anyio.to_thread.run_sync(d.start)
            await anyio.sleep(rng.uniform(0.0, 0.3))
            seen = (await wait_answer(nc, names.cmd("stats"), {}, lambda r: r["status"] == "ok"))["global"]
            await anyio.to_thread.run_sync(d.kill9)
            for vid in second:
                await publish_play(nc, names, vid)
            await anyio.to_thread.run_sync(d.start)
            await events_settled(nc, names)
            plays, items_played = await play_truth(nc, names)
            print(f"\nplays counted when killed mid catch-up: {seen.get('items_played')}; "
                  f"after: items_played={items_played}")
            expected = {"start": 2, **{v: 1 for v in first + second}}
            assert plays == expected
            assert items_played == 1 + len(first) + 1 + len(second)
            now = await wait_answer(nc, names.cmd("now_playing"), {}, lambda r: r["status"] == "ok")
            assert now["video_id"] == second[-1]

            # One more kill and restart: nothing is replayed twice.
            await anyio.to_thread.run_sync(d.kill9)
            await anyio.to_thread.run_sync(d.start)
            await events_settled(nc, names)
            assert await play_truth(nc, names) == (expected, items_played)
            stats = await wait_answer(nc, names.cmd("stats"), {"video_id": "start"}, lambda r: r["status"] == "ok")
            assert stats["global"]["items_played"] == items_played
            assert stats["item"]["play_count"] == 2
        finally:
            await nc.close()

    anyio.run(scenario)
    assert d.terminate() == 0, d.log_tail()
