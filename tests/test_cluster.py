"""The daemon on a 3-node JetStream cluster (scripts/nats_cluster.py) with
``[storage] replicas = 3`` and all three servers configured. A like storm
(and a play stream) runs while the node the daemon's connection is on is
killed with SIGKILL; the daemon reconnects to another node, the buckets and
the event stream keep a quorum, and afterwards every like answered ok or
duplicate is counted exactly once (like_count == dedupe keys == distinct
users) and no play is counted twice.
"""

from __future__ import annotations

import importlib.util
import random
import sys

import anyio
import pytest

from support.daemon_process import DaemonProcess, Names, REPO, daemon_config
from support.storm import fault_storm

LIKED = "liked-item"


def _load_cluster_module():
    spec = importlib.util.spec_from_file_location("nats_cluster", REPO / "scripts" / "nats_cluster.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("nats_cluster", module)
    spec.loader.exec_module(module)
    return module


nats_cluster = _load_cluster_module()


@pytest.fixture
def cluster(tmp_path):
    c = nats_cluster.start_cluster(tmp_path / "cluster")
    try:
        yield c
    finally:
        c.stop()


def test_cluster_script_starts_three_ready_nodes_on_loopback(cluster):
    assert len(cluster.urls) == 3 and all(u.startswith("nats://127.0.0.1:") for u in cluster.urls)
    assert cluster.meta_leader() in {n.name for n in cluster.nodes}
    for node in cluster.nodes:
        conf = node.conf.read_text()
        assert "0.0.0.0" not in conf and conf.count("127.0.0.1") >= 4  # client, http, cluster, 2 routes


def test_killing_the_daemons_node_mid_storm_loses_and_doubles_no_like(cluster, tmp_path):
    rng = random.Random()
    names = Names("clu", "cluchan", "cluns")
    daemon = DaemonProcess(daemon_config(tmp_path / "config.toml", cluster.urls, names, replicas=3),
                           tmp_path / "daemon.log")
    users = [f"user{i:05d}" for i in range(2500)]
    n = len(users)
    killed: list[str] = []

    def kill_the_daemons_node() -> None:
        i = cluster.node_of_client("kryten-likes")
        if i is None:  # cannot tell: any node will do
            i = rng.randrange(3)
        killed.append(f"{cluster.nodes[i].name} (meta leader {cluster.meta_leader()})")
        cluster.kill(i)

    try:
        daemon.start(timeout=60)
        run = anyio.run(lambda: fault_storm(cluster.urls, names, daemon, users,
                                            [(n // 3, "kill node", kill_the_daemons_node)],
                                            liked=LIKED, budget=150, rng=rng))
        code = daemon.terminate()
    finally:
        daemon.close()
    print(f"\nkilled {killed}\n" + run.summary(LIKED))

    assert len(killed) == 1
    run.assert_exact(LIKED, code, daemon, "when a node died")


def test_fenced_journal_writes_in_flight_together_all_land_on_a_replicated_stream(cluster):
    """nats-server refuses a second write expecting the fence while the first
    is still being stored on an R3 stream (err_code 10164, "wrong last
    sequence" without a number); nothing of it was stored, so the store sends
    it again rather than failing the group (which crashed the writer)."""
    import nats

    from kryten_likes.store import open_journal
    from kryten_likes.store.values import Fence, KvWrite, Landed

    async def main() -> list:
        nc = await nats.connect(cluster.urls[0])
        try:
            journal = await open_journal(nc, 3)
            fence_key = "ns/clu/writer"
            revision = await journal.write_if(fence_key, b'{"epoch":1}', 0)
            journal.fence = Fence(fence_key, revision, f"{fence_key}/last", b"{}")
            outcomes: list = [None] * 40

            async def one(i: int) -> None:
                key = f"ns/clu/journal/g{i}"
                outcomes[i] = await journal.commit(f"g{i}", (KvWrite(key, b'{"likes":[]}', None),), key)

            async with anyio.create_task_group() as tg:
                for i in range(len(outcomes)):
                    tg.start_soon(one, i)
            return outcomes
        finally:
            await nc.close()

    outcomes = anyio.run(main)
    assert all(isinstance(o, Landed) for o in outcomes), outcomes
    assert len({o.revisions[f"ns/clu/journal/g{i}"] for i, o in enumerate(outcomes)}) == len(outcomes)
