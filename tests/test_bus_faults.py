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

from crash_support import DaemonProcess, Names, fault_storm, free_port, write_config
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
    daemon = DaemonProcess(write_config(tmp_path / "config.toml", [bus.url], names), tmp_path / "daemon.log")
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
