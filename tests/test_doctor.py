"""`kryten-likes doctor` against real nats-servers: the session's (with a
daemon on it: everything holds), one without JetStream, one holding an
old-style bucket made by kryten-py as kryten-playlist makes it, one whose
account has limits and a password; and the judgements no server can be
made to show (clock skew, old versions), on the facts alone."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import anyio
import nats
import pytest
from kryten import LifecycleEventPublisher
from kryten.kv_store import get_or_create_kv_store
from nats.js.api import DiscardPolicy, StreamConfig

from kryten_likes.cli import main
from kryten_likes.doctor_bus import ClockReading
from kryten_likes.doctor_checks import judge_account, judge_clock, judge_owner, judge_version
from kryten_likes.embedded import EmbeddedNats, start_nats_server
from kryten_likes.store import open_buckets
from support.configs import write_config


def doctor(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, tuple[str, str]], str]:
    """Run the command; (exit code, {check: (status, detail)}, the printed text)."""
    code = main(["doctor", *argv])
    out, err = capsys.readouterr()
    assert err == ""
    findings = {}
    for line in out.splitlines():
        status, rest = line.split(None, 1)
        check, _, detail = rest.partition(": ")
        findings[check] = (status, detail)
    return code, findings, out


def test_everything_holds_on_the_session_server(harness, nats_server, capsys) -> None:
    harness()  # a daemon on the bus: its buckets exist, it answers discovery
    code, findings, out = doctor(capsys, "--nats-url", nats_server.url)
    assert code == 0, out
    assert [status for status, _ in findings.values()] == ["ok"] * len(findings), out
    assert set(findings) == {"server", "jetstream", "version", "account", "bucket kryten_playlist_analytics",
                             "bucket kryten_playlist_likes", "owner kryten_playlist_analytics",
                             "owner kryten_playlist_likes", "clock", "services"}
    assert "atomic batches and per-message TTL on" in findings["bucket kryten_playlist_likes"][1]
    assert "made by kryten-likes" in findings["owner kryten_playlist_likes"][1]
    assert findings["services"][1].startswith("likes")

    code, _, out = doctor(capsys, "--nats-url", nats_server.url, "--json")
    report = json.loads(out)
    assert (code, report["exit_code"], report["url"]) == (0, 0, nats_server.url)
    assert {c["status"] for c in report["checks"]} == {"ok"}


def test_no_server_is_exit_3(capsys) -> None:
    code, findings, _ = doctor(capsys, "--nats-url", "nats://127.0.0.1:1")
    assert code == 3
    assert findings["server"][0] == "FAIL" and "cannot connect to nats://127.0.0.1:1" in findings["server"][1]


def test_a_server_without_jetstream_is_named(tmp_path: Path, capsys) -> None:
    with start_nats_server(tmp_path / "js", port=None, extra_args=["-js=false"]) as server:
        code, findings, out = doctor(capsys, "--nats-url", server.url)
    assert code == 1
    status, detail = findings["jetstream"]
    assert status == "FAIL" and "JetStream is off" in detail and "-js" in detail
    assert findings["server"][0] == findings["version"][0] == "ok"
    assert findings["bucket kryten_playlist_likes"] == ("skip", "not checked without JetStream")
    assert findings["clock"][0] == "skip"


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    with start_nats_server(tmp_path / "js", port=None) as server:
        yield server


def test_an_old_style_bucket_fails_and_the_fix_it_names_works(own_server, capsys) -> None:
    async def make_old_style_buckets() -> None:
        nc = await nats.connect(own_server.url)
        # As kryten-playlist makes it: kryten-py on nats-py 2.16 (message TTL on, no atomic batches).
        await get_or_create_kv_store(nc, "kryten_playlist_likes")
        # As a KV bucket was made before nats-py 2.16: neither.
        await nc.jetstream().add_stream(StreamConfig(
            name="KV_kryten_playlist_analytics", subjects=["$KV.kryten_playlist_analytics.>"],
            max_msgs_per_subject=1, allow_rollup_hdrs=True, deny_delete=True, discard=DiscardPolicy.NEW,
            allow_direct=True))
        await nc.close()

    anyio.run(make_old_style_buckets)
    code, findings, out = doctor(capsys, "--nats-url", own_server.url)
    assert code == 1, out
    status, detail = findings["bucket kryten_playlist_analytics"]
    assert status == "FAIL"
    assert "old-style bucket" in detail and "made without allow_atomic and allow_msg_ttl" in detail
    assert "start kryten-likes once" in detail
    status, detail = findings["bucket kryten_playlist_likes"]
    assert status == "FAIL" and "made without allow_atomic." in detail
    owner_status, owner = findings["owner kryten_playlist_likes"]
    assert owner_status == "ok" and "kryten-py" in owner and "kryten-playlist" in owner
    assert findings["owner kryten_playlist_analytics"] == ("ok", "made by kryten-likes, or with its settings")
    assert findings["clock"][0] == "ok"  # a bucket's stream told the time

    async def start_as_the_daemon_does() -> None:
        nc = await nats.connect(own_server.url)
        await open_buckets(nc, 1)
        await nc.close()

    anyio.run(start_as_the_daemon_does)
    code, findings, out = doctor(capsys, "--nats-url", own_server.url)
    assert findings["bucket kryten_playlist_likes"][0] == "ok", out
    assert findings["bucket kryten_playlist_analytics"][0] == "ok"


def test_kryten_playlist_on_the_bus_is_a_warning_until_applies_are_off(own_server, tmp_path: Path,
                                                                      capsys) -> None:
    async def with_kryten_playlist(check) -> None:
        nc = await nats.connect(own_server.url)
        stand_in = LifecycleEventPublisher("playlist", nc, logging.getLogger("stand-in"), version="0.3.2",
                                           enable_heartbeat=False)
        await stand_in.start()
        await nc.flush()
        try:
            await anyio.to_thread.run_sync(check)
        finally:
            await stand_in.stop()
            await nc.close()

    def check() -> None:
        code, findings, out = doctor(capsys, "--nats-url", own_server.url)
        assert code == 1, out
        status, detail = findings["services"]
        assert status == "warn" and "playlist 0.3.2" in detail and "[queue] apply_enabled = false" in detail

        config = write_config(tmp_path / "applies-off.toml", {"queue": {"apply_enabled": False}})
        code, findings, out = doctor(capsys, "--nats-url", own_server.url, "--config", str(config))
        assert code == 0, out
        assert findings["services"][0] == "ok"

    anyio.run(with_kryten_playlist, check)


def test_account_limits_and_credentials(tmp_path: Path, capsys) -> None:
    accounts = tmp_path / "accounts.conf"
    accounts.write_text(
        "accounts {\n"
        "  LIKES { jetstream { max_streams: 1, max_file: 10M, max_mem: 0 }\n"
        "          users [{user: likes, password: secret}] }\n"
        "  PLAIN { users [{user: plain, password: secret}] }\n"
        "}\n")
    config = write_config(tmp_path / "config.toml", {"nats": {"user": "likes", "password": "secret"}}, mode=0o600)
    plain = write_config(tmp_path / "plain.toml", {"nats": {"user": "plain", "password": "secret"}}, mode=0o600)
    with start_nats_server(tmp_path / "js", port=None, extra_args=["-c", str(accounts)]) as server:
        code, findings, out = doctor(capsys, "--nats-url", server.url, "--config", str(config))
        assert code == 1, out
        status, detail = findings["account"]
        assert status == "FAIL" and "room for 1 more stream(s) and kryten-likes makes 3" in detail
        assert "storage 0 B of 9.5 MiB" in detail

        code, findings, out = doctor(capsys, "--nats-url", server.url, "--config", str(plain))
        assert code == 1, out
        assert findings["jetstream"][0] == "FAIL" and "not for the account" in findings["jetstream"][1]

        code, findings, out = doctor(capsys, "--nats-url", server.url)  # no password: refused
        assert code == 3, out


# --- judgements on the facts alone


def test_clock_skew_over_two_seconds_is_a_warning() -> None:
    asked = 1_800_000_000.0
    behind = ClockReading("KV_x", "2027-01-15T08:00:03.5Z", asked, asked + 0.01)  # 3.5 s ahead of us
    finding = judge_clock(ClockReading("KV_x", "2027-01-15T08:00:00Z", asked, asked + 0.01))
    assert finding.status == "ok"
    finding = judge_clock(behind)
    assert finding.status == "warn" and "3.5 s ahead of this machine's" in finding.detail
    # A slow answer widens what can be told apart: 3.5 s within a 4 s round trip is no proof.
    assert judge_clock(ClockReading("KV_x", "2027-01-15T08:00:03.5Z", asked, asked + 4.0)).status == "ok"
    assert judge_clock(None).status == "skip"


def test_a_server_older_than_2_12_fails() -> None:
    assert judge_version("2.11.9").status == "FAIL"
    assert "2.12" in judge_version("2.10.22").detail
    assert judge_version("2.12.0").status == "ok"
    assert judge_version("unknown").status == "warn"


def test_tiered_limits_and_required_max_bytes() -> None:
    tiered = {"streams": 0, "limits": {}, "tiers": {"R3": {"streams": 4, "consumers": 0, "storage": 0, "memory": 0,
                                                           "limits": {"max_streams": 5, "max_storage": -1}}}}
    assert judge_account(tiered, missing_streams=3, replicas=3).status == "FAIL"
    assert judge_account(tiered, missing_streams=1, replicas=3).status == "ok"
    required = {"streams": 0, "limits": {"max_storage": -1, "max_bytes_required": True}}
    finding = judge_account(required, missing_streams=1, replicas=1)
    assert finding.status == "FAIL" and "max_bytes" in finding.detail
    assert judge_account(required, missing_streams=0, replicas=1).status == "ok"
    full = {"storage": 95, "limits": {"max_storage": 100}}
    assert judge_account(full, missing_streams=0, replicas=1).status == "warn"


def test_a_bucket_whose_entries_expire_or_that_lives_in_memory_fails() -> None:
    ours = {"max_msgs_per_subject": 1, "allow_direct": True, "num_replicas": 1, "storage": "file", "max_age": 0}
    assert judge_owner("b", {"config": ours}, replicas=1).status == "ok"
    assert judge_owner("b", {"config": ours}, replicas=3).status == "warn"
    expiring = judge_owner("b", {"config": {**ours, "max_age": 3600 * 10**9}}, replicas=1)
    assert expiring.status == "FAIL" and "expire after 3600 s" in expiring.detail
    assert judge_owner("b", {"config": {**ours, "storage": "memory"}}, replicas=1).status == "FAIL"
    other = judge_owner("b", {"config": {**ours, "max_msgs_per_subject": 5}}, replicas=1)
    assert other.status == "ok" and "another service" in other.detail and "history 5" in other.detail
    marked = judge_owner("b", {"config": {**ours, "metadata": {"owner": "kryten-likes", "_nats.ver": "2.15.1"}}},
                         replicas=1)
    assert marked.detail == "marked owner=kryten-likes"
