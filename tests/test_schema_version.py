"""A stored document of a schema this kryten-likes does not know stops the
daemon at start, naming the key and the version, instead of being misread.
On a nats-server of its own: every daemon scans the whole buckets, so such
a document on the shared server would stop every later test's daemon."""

from __future__ import annotations

import json
import subprocess
import sys

import nats
import pytest
from conftest import Harness, unique_config

from kryten_likes.clock import FakeClock
from kryten_likes.embedded import start_nats_server
from kryten_likes.store import ANALYTICS_BUCKET, LIKES_BUCKET
from kryten_likes.store.schema import UnknownSchema, schema_problem
from support.configs import write_config


@pytest.fixture
def own_server(tmp_path):
    with start_nats_server(tmp_path / "js", port=None) as server:
        yield server


def _store(portal, url: str, bucket: str, key: str, value: dict) -> None:
    async def put() -> None:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            try:
                kv = await js.key_value(bucket)
            except Exception:
                kv = await js.create_key_value(bucket=bucket, history=1)
            await kv.put(key, json.dumps(value).encode())
        finally:
            await nc.close()

    portal.call(put)


def test_schema_version_2_stops_the_daemon_naming_key_and_version(portal, own_server):
    config = unique_config()
    ns = config.analytics.namespace
    _store(portal, own_server.url, LIKES_BUCKET, f"ns/{ns}/items/fine/likes",
           {"video_id": "fine", "like_count": 1})  # no schema_version: read as 1
    _store(portal, own_server.url, ANALYTICS_BUCKET, f"ns/{ns}/items/x",
           {"video_id": "x", "play_count": 3, "schema_version": 2})
    h = Harness(portal, own_server.url, config, FakeClock())
    try:
        with pytest.raises(UnknownSchema) as caught:
            h.start()
    finally:
        h.close()
    assert str(caught.value) == (f"ns/{ns}/items/x has schema_version 2; this kryten-likes understands 1: "
                                 "upgrade kryten-likes")


def test_the_run_command_exits_1_with_the_message(own_server, portal, tmp_path):
    _store(portal, own_server.url, ANALYTICS_BUCKET, "ns/default/items/x", {"play_count": 3, "schema_version": 2})
    cfg = write_config(tmp_path / "config.toml", {"nats": {"subject_prefix": "schema"}, "http": {"port": 0}})
    run = subprocess.run([sys.executable, "-m", "kryten_likes.cli", "run", "--config", str(cfg), "--nats-url",
                          own_server.url], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert run.returncode == 1, run.stderr
    assert ("ns/default/items/x has schema_version 2; this kryten-likes understands 1: upgrade kryten-likes"
            in run.stderr), run.stderr
    assert "Traceback" not in run.stderr, run.stderr


def test_documents_of_version_1_or_none_start_the_daemon(portal, own_server):
    config = unique_config()
    ns = config.analytics.namespace
    _store(portal, own_server.url, ANALYTICS_BUCKET, f"ns/{ns}/items/old", {"video_id": "old", "play_count": 4})
    _store(portal, own_server.url, ANALYTICS_BUCKET, "someone-elses/key", {"schema_version": 9})  # not ours
    h = Harness(portal, own_server.url, config, FakeClock())
    try:
        h.start()
        assert h.request("stats", {"video_id": "old"})["item"]["play_count"] == 4
    finally:
        h.close()


@pytest.mark.parametrize("value, verdict", [
    ({}, None),
    ({"schema_version": 1}, None),
    ({"schema_version": 2}, "upgrade kryten-likes"),
    ({"schema_version": 0}, "repair or delete it"),
    ({"schema_version": "1"}, "repair or delete it"),
    ({"schema_version": True}, "repair or delete it"),
    ({"schema_version": 1.0}, "repair or delete it"),
    ({"schema_version": None}, "repair or delete it"),
])
def test_which_versions_are_known(value, verdict):
    problem = schema_problem("ns/a/items/b", value)
    assert (problem is None) if verdict is None else (problem.startswith("ns/a/items/b has schema_version")
                                                     and problem.endswith(verdict)), problem
