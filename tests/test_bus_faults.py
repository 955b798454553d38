"""The bus goes away under load: nats-server (single node, file store) is
stopped — once cleanly (SIGTERM), once with SIGKILL — and started again on
the same port and store while likes and plays keep coming. The daemon (a
real subprocess) reconnects to the same URL by itself.

Afterwards every like answered ok or duplicate is counted exactly once
(like_count == dedupe keys == distinct users), no play is counted twice,
and the daemon answers again. Requests that got no answer during an outage
(timeout, connection lost, no responders) are retried after the server is
back; plays are published with a Nats-Msg-Id so that a publish whose ack was
lost in the outage can be retried without storing the event twice.
"""

from __future__ import annotations

import random
import time

import anyio
import pytest

from support.daemon_process import DaemonProcess, Names, daemon_config, free_port
from support.storm import fault_storm
from kryten_likes.embedded import start_nats_server

LIKED = "liked-item"


class RestartableServer:
    """nats-server on one fixed loopback port and one store, restartable."""

    def __init__(self, store) -> None:
        self.store = store
        self.port = free_port()
        self.server = None

    def start(self) -> None:
        self.server = start_nats_server(self.store, port=self.port)
        # start_nats_server falls back to a free port when ours is taken;
        # the daemon would then wait for a server that never comes back.
        assert self.server.port == self.port, f"port {self.port} was taken; got {self.server.port}"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def restart(self, how: str, down_seconds: float) -> None:
        if how == "kill":
            self.server.kill()
        else:
            self.server.stop()
        time.sleep(down_seconds)  # the outage itself
        self.start()

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()


@pytest.fixture
def bus(tmp_path):
    s = RestartableServer(tmp_path / "js")
    s.start()
    try:
        yield s
    finally:
        s.close()


def test_nats_server_restarts_mid_load_lose_and_double_nothing(bus, tmp_path):
    rng = random.Random()
    names = Names("bus", "buschan", "busns")
    daemon = DaemonProcess(daemon_config(tmp_path / "config.toml", [bus.url], names), tmp_path / "daemon.log")
    users = [f"user{i:05d}" for i in range(2500)]
    n = len(users)
    faults = [
        (n // 4, "SIGTERM", lambda: bus.restart("stop", rng.uniform(0.5, 1.5))),
        (n * 3 // 5, "SIGKILL", lambda: bus.restart("kill", rng.uniform(0.5, 1.5))),
    ]
    try:
        daemon.start()
        run = anyio.run(lambda: fault_storm([bus.url], names, daemon, users, faults, liked=LIKED, budget=150,
                                            rng=rng))
        code = daemon.terminate()
    finally:
        daemon.close()
    print("\n" + run.summary(LIKED))

    assert len(run.faults) == 2
    run.assert_exact(LIKED, code, daemon, "across a nats-server restart")


def test_likes_resume_at_once_after_a_reconnect(bus, portal):
    """A batch whose answer was lost with the connection is resolved as soon
    as nats-py is back, not after the batch's 5 s timeout: the first ``ok``
    after the reconnect comes within a fraction of a second."""
    import json

    import nats

    from conftest import Harness, playing, unique_config
    from kryten_likes.clock import FakeClock

    h = Harness(portal, bus.url, unique_config(), FakeClock())
    h.start()
    h.change_media("v")
    playing(h, "v")
    subject = f"{h.config.nats.subject_prefix}.playlist.cmd.like"
    oks: list[float] = []

    async def drive(done: anyio.Event) -> None:
        nc = await nats.connect(bus.url, reconnect_time_wait=0.05, max_reconnect_attempts=-1)
        n = 0

        async def liker() -> None:
            nonlocal n
            while not done.is_set():
                n += 1
                try:
                    # A reply the daemon sent just before the kill is lost on the
                    # way to this client too; a short wait keeps this driver from
                    # sitting that out (what is measured is the daemon's stall: a
                    # stalled batch holds every new like of the item behind it).
                    m = await nc.request(subject, json.dumps({"username": f"u{n}"}).encode(), timeout=1.0)
                except Exception:
                    continue  # lost with the connection: the next like goes on
                if json.loads(m.data)["status"] == "ok":
                    oks.append(time.monotonic())
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(8):
                    tg.start_soon(liker)
        finally:
            await nc.close()

    async def run() -> float:
        done = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(drive, done)
            while len(oks) < 50:  # likes flow
                await anyio.sleep(0.01)
            await anyio.to_thread.run_sync(bus.restart, "kill", 0.3)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                back = h.daemon.reconnects.last_at
                if back is not None and any(t > back for t in oks):
                    break
                await anyio.sleep(0.01)
            done.set()
        back = h.daemon.reconnects.last_at
        assert back is not None, "the daemon never reconnected"
        return min(t for t in oks if t > back) - back

    try:
        gap = portal.call(run)
    finally:
        h.close()
    print(f"\nfirst ok {gap * 1000:.0f} ms after the daemon's reconnect")
    assert gap < 3.0, f"likes stalled {gap:.2f} s after the reconnect (a lost batch answer waited out its timeout)"
