"""The embedded nats-server: a real process, real JetStream, no orphans."""

from __future__ import annotations

import asyncio
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from kryten_likes.embedded import EmbeddedNats, EmbeddedNatsError, start_nats_server

PROJECT_ROOT = Path(__file__).resolve().parent.parent


async def kv_round_trip(url: str, value: bytes = b"1") -> bytes:
    """Put and get a key in a JetStream KV bucket; proves the server really works."""
    nc = await nats.connect(url, allow_reconnect=False)
    try:
        kv = await nc.jetstream().create_key_value(bucket="probe")
        await kv.put("likes", value)
        return (await kv.get("likes")).value
    finally:
        await nc.close()


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    with start_nats_server(tmp_path / "store", port=None) as running:
        yield running


def test_starts_on_a_free_port_with_jetstream_and_stops(server: EmbeddedNats, tmp_path: Path) -> None:
    assert server.url == f"nats://127.0.0.1:{server.port}"
    assert asyncio.run(kv_round_trip(server.url, b"42")) == b"42"
    assert (tmp_path / "store" / "jetstream").is_dir()

    server.stop()
    assert server.returncode == 0  # SIGTERM: a clean shutdown
    assert gone(server.pid)
    server.stop()  # idempotent


def test_data_survives_a_restart_on_the_same_store(tmp_path: Path) -> None:
    with start_nats_server(tmp_path, port=None) as first:
        asyncio.run(kv_round_trip(first.url, b"kept"))

    async def read(url: str) -> bytes:
        nc = await nats.connect(url, allow_reconnect=False)
        try:
            return (await (await nc.jetstream().key_value("probe")).get("likes")).value
        finally:
            await nc.close()

    with start_nats_server(tmp_path, port=None) as second:
        assert asyncio.run(read(second.url)) == b"kept"


def test_a_taken_port_falls_back_to_a_free_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as squatter:
        taken = squatter.getsockname()[1]
        with caplog.at_level(logging.WARNING, logger="kryten_likes.embedded"):
            with start_nats_server(tmp_path, port=taken) as server:
                assert server.port != taken
                assert asyncio.run(kv_round_trip(server.url)) == b"1"
    assert any(
        record.levelno == logging.WARNING and str(taken) in record.getMessage()
        for record in caplog.records
    )


def test_a_free_fixed_port_is_used(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    with start_nats_server(tmp_path, port=port) as server:
        assert (server.port, server.url) == (port, f"nats://127.0.0.1:{port}")


def test_kill_is_a_crash(server: EmbeddedNats) -> None:
    server.kill()
    assert server.returncode == -signal.SIGKILL
    assert gone(server.pid)
    server.stop()  # nothing left to stop


def test_sync_always_writes_a_config_file_and_works(tmp_path: Path) -> None:
    with start_nats_server(tmp_path, port=None, sync_always=True) as server:
        assert asyncio.run(kv_round_trip(server.url)) == b"1"
    conf = (tmp_path / "nats-server.conf").read_text()
    assert "sync_interval: always" in conf
    assert (tmp_path / "jetstream").is_dir()


def test_a_server_that_exits_while_starting_is_an_error_with_its_log(tmp_path: Path) -> None:
    with pytest.raises(EmbeddedNatsError, match="(?s)exited with status.*bogus"):
        start_nats_server(tmp_path, port=None, extra_args=["--bogus-flag"])


def test_log_lines_go_to_the_nats_server_logger(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="kryten_likes.nats_server"):
        with start_nats_server(tmp_path, port=None):
            pass
    lines = [r.getMessage() for r in caplog.records if r.name == "kryten_likes.nats_server"]
    assert any("Server is ready" in line for line in lines)


# The helper starts the server from a thread that ends at once (PDEATHSIG is
# tied to the forking thread, so this must not stop the server), reports the
# server, then waits to be killed.
HELPER = textwrap.dedent(
    """
    import sys, threading
    from pathlib import Path
    from kryten_likes.embedded import start_nats_server

    started = []
    worker = threading.Thread(target=lambda: started.append(
        start_nats_server(Path(sys.argv[1]), port=None)))
    worker.start()
    worker.join()
    print(started[0].pid, started[0].url, flush=True)
    sys.stdin.read()
    """
)


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs Linux pidfd_open")
def test_the_server_dies_with_its_parent_process(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    with subprocess.Popen(
        [sys.executable, "-c", HELPER, str(tmp_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
    ) as parent:
        assert parent.stdout is not None
        pid_text, url = parent.stdout.readline().split()
        server_pid = int(pid_text)
        server_exit = os.pidfd_open(server_pid)
        try:
            # Alive after the thread that started it has ended.
            assert asyncio.run(kv_round_trip(url)) == b"1"

            parent.kill()
            parent.wait()
            readable, _, _ = select.select([server_exit], [], [], 5.0)
            assert readable, "nats-server outlived the process that started it"
        finally:
            os.close(server_exit)
            if not gone(server_pid):
                os.kill(server_pid, signal.SIGKILL)
