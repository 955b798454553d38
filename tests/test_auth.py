"""NATS credentials from the config file or the environment; a wrong
password stops the daemon at start with a message that says so."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from kryten_likes.config import from_environment, nats_options, parse_config
from kryten_likes.embedded import start_nats_server
from support.configs import write_config
from support.daemon_process import DaemonProcess


@pytest.fixture(scope="module")
def locked_server(tmp_path_factory):
    with start_nats_server(tmp_path_factory.mktemp("locked"), port=None,
                           extra_args=["--user", "likes", "--pass", "s3cret"]) as server:
        yield server


def run_like(tmp_path, server, nats: dict, env: dict | None = None, timeout: float = 30):
    """Start the daemon with ``nats`` in its [nats] section: (0, the exit code of
    a client command, the log) once it serves, or (its exit code, None, the
    log) if it exits first."""
    cfg = write_config(tmp_path / "c.toml", {"nats": {"servers": [server.url], "subject_prefix": "auth", **nats},
                                             "cytube": {"channel": "auth"}, "http": {"port": 0}}, mode=0o600)
    daemon = DaemonProcess(cfg, tmp_path / "daemon.log", env=env)
    daemon.spawn()
    try:
        if not daemon.ready_or_exited(timeout):
            return daemon.proc.returncode, None, daemon.log_text()
        out = subprocess.run([sys.executable, "-m", "kryten_likes.cli", "now-playing", "--config", str(cfg),
                              "--json"], capture_output=True, text=True, timeout=timeout,
                             env={**os.environ, **(env or {})})
        return 0, out.returncode, daemon.log_text()
    finally:
        daemon.terminate(timeout)


@pytest.fixture(scope="module")
def creds_server(tmp_path_factory):
    """A server that accepts only a user with a creds file (operator mode, as
    an nsc-managed Kryten bus is): no password, no token works."""
    from nats_creds import creds_setup

    where = tmp_path_factory.mktemp("creds")
    conf, creds = creds_setup(where)
    with start_nats_server(where / "js", port=None, extra_args=["-c", str(conf)]) as server:
        yield server, creds


def test_creds_file_in_the_config_reaches_every_connection(tmp_path, creds_server):
    server, creds = creds_server
    code, client, log = run_like(tmp_path, server, {"creds_file": creds})
    assert (code, client) == (0, 0), log
    # kryten-py's part (lifecycle, bridge commands) runs on the same login.
    assert "Published startup event to kryten.lifecycle.likes.startup" in log


def test_creds_file_from_the_environment(tmp_path, creds_server):
    server, creds = creds_server
    code, client, log = run_like(tmp_path, server, {}, env={"KRYTEN_LIKES_NATS_CREDS": str(creds)})
    assert (code, client) == (0, 0), log


def test_without_the_creds_the_creds_only_server_refuses(tmp_path, creds_server):
    server, _ = creds_server
    code, client, log = run_like(tmp_path, server, {})
    assert code == 1 and client is None, log


def test_password_in_the_config(tmp_path, locked_server):
    code, client, _ = run_like(tmp_path, locked_server, {"user": "likes", "password": "s3cret"})
    assert (code, client) == (0, 0)


def test_password_from_the_environment(tmp_path, locked_server):
    code, client, _ = run_like(tmp_path, locked_server, {"user": "likes"},
                               env={"KRYTEN_LIKES_NATS_PASSWORD": "s3cret"})
    assert (code, client) == (0, 0)


def test_wrong_password_fails_clearly_and_does_not_log_it(tmp_path, locked_server):
    code, client, log = run_like(tmp_path, locked_server, {"user": "likes", "password": "WRONG-pw"})
    assert code == 1 and client is None
    # nats-server answers -ERR 'Authorization Violation' and closes; the client
    # sees the one or, when the close wins the race, a reset at the handshake.
    assert "authorization" in log.lower() or "check the nats credentials" in log.lower(), log
    assert "WRONG-pw" not in log


def test_environment_overrides_and_options():
    c = from_environment(parse_config({"nats": {"servers": ["nats://a:4222"]}}),
                         {"KRYTEN_LIKES_NATS_URL": "nats://b:4222", "KRYTEN_LIKES_NATS_USER": "u",
                          "KRYTEN_LIKES_NATS_PASSWORD": "p", "KRYTEN_LIKES_NATS_TOKEN": ""})
    assert c.nats.servers == ("nats://b:4222",)
    assert nats_options(c) == {"user": "u", "password": "p"}
    assert "p" not in repr(c.nats).replace("prefix", "")  # the password is not in the repr


def test_world_readable_config_with_a_password_warns(tmp_path, caplog):
    from kryten_likes.config import load_config
    cfg = write_config(tmp_path / "c.toml", {"nats": {"user": "u", "password": "p"}}, mode=0o644)
    load_config(cfg)
    assert "world-readable" in caplog.text
    cfg.chmod(0o600)
    caplog.clear()
    load_config(cfg)
    assert "world-readable" not in caplog.text
