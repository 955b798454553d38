"""The client commands against a real nats-server and a stand-in daemon.

The stand-in answers `kryten.playlist.cmd.*` with canned replies shaped as
the wire contract says, and records what it was asked, so each test checks
both what the command sent and what it printed.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio.from_thread
import attrs
import nats
import pytest

from kryten_likes.cli import DEFAULT_NATS_URL, main, resolve_client_url
from kryten_likes.config import Config, NatsSection, StorageSection
from kryten_likes.embedded import EmbeddedNats, start_nats_server
from support.configs import write_config

PLAYING = "dQw4w9WgXcQ"

Cli = Callable[..., tuple[int, str, str]]


def answer(command: str, request: dict[str, Any]) -> dict[str, Any]:
    """What the stand-in daemon replies: a few fixed situations from the contract."""
    common = {"correlation_id": request.get("correlation_id"), "status": "ok", "error": None}
    if command == "like":
        user = request["username"]
        if request.get("video_id", PLAYING) != PLAYING:
            return common | {"status": "error", "error": "not_current", "video_id": PLAYING}
        if user == "spammer":
            return common | {"status": "error", "error": "rate_limited", "retry_after_seconds": 7.5}
        if user == "":
            return common | {"status": "error", "error": "invalid_request",
                             "detail": "username: must not be empty"}
        if user == "bob":
            return common | {"status": "duplicate", "video_id": PLAYING, "like_count": 12}
        return common | {"video_id": PLAYING, "like_count": 12}
    if command == "top_liked":
        items = [
            {"video_id": PLAYING, "title": "Never Gonna Give You Up", "count": 12},
            {"video_id": "abc", "title": None, "count": 9},
            {"video_id": "https://media.example.com/m/abc.json", "title": "Custom", "count": 1},
        ]
        return common | {"items": items[: request["limit"]]}
    if command == "top_played":
        return common | {"items": []}
    if command == "top_curators":
        return common | {"window": request.get("window"),
                         "items": [{"username": "Bob", "likes_received": 12, "plays": 3},
                                   {"username": "Zoë", "likes_received": 1, "plays": 10}]}
    if command == "stats":
        reply = common | {"global": {"items_queued": 3, "items_played": 2}}
        if "video_id" in request:
            reply["item"] = {"video_id": request["video_id"], "title": None, "like_count": 0}
        if "playlist_id" in request:
            reply["playlist"] = None
        return reply
    if command == "now_playing":
        if request.get("namespace") == "empty":
            return common | {"video_id": None, "title": None, "started_at": None}
        return common | {"video_id": PLAYING, "title": "Never Gonna Give You Up",
                         "started_at": "2025-12-18T12:34:56Z"}
    return common | {"status": "error", "error": "unknown_command"}


@attrs.define
class StandIn:
    """The stand-in daemon's record of the requests it answered."""

    requests: list[tuple[str, dict[str, Any]]] = attrs.Factory(list)

    def last(self, command: str) -> dict[str, Any]:
        return next(body for cmd, body in reversed(self.requests) if cmd == command)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    with start_nats_server(tmp_path_factory.mktemp("nats"), port=None) as running:
        yield running


@pytest.fixture(scope="module")
def stand_in(server: EmbeddedNats) -> Iterator[StandIn]:
    record = StandIn()

    async def respond(msg: Any) -> None:
        command = msg.subject.rsplit(".", 1)[1]
        body = json.loads(msg.data)
        record.requests.append((command, body))
        await msg.respond(json.dumps(answer(command, body)).encode())

    async def garble(msg: Any) -> None:
        await msg.respond(b"this is not json")

    async def serve() -> Any:
        nc = await nats.connect(server.url)
        await nc.subscribe("kryten.playlist.cmd.*", cb=respond)
        await nc.subscribe("silent.playlist.cmd.*")  # listens, never answers
        await nc.subscribe("garbled.playlist.cmd.*", cb=garble)
        await nc.flush()  # subscriptions are on the server before any test asks
        return nc

    with anyio.from_thread.start_blocking_portal() as portal:
        nc = portal.call(serve)
        yield record
        portal.call(nc.close)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def cli(server: EmbeddedNats, stand_in: StandIn, capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run a client command against the stand-in: (exit code, stdout, stderr)."""

    def invoke(*argv: str) -> tuple[int, str, str]:
        return run(capsys, *argv, "--nats-url", server.url)

    return invoke


def test_like_prints_the_count(cli: Cli, stand_in: StandIn) -> None:
    assert cli("like", "alice") == (0, f"liked {PLAYING}: 12 likes\n", "")
    sent = stand_in.last("like")
    assert sent["username"] == "alice"
    assert "video_id" not in sent and "namespace" not in sent
    assert isinstance(sent["correlation_id"], str)


def test_a_duplicate_like_succeeds_and_says_so(cli: Cli) -> None:
    assert cli("like", "bob") == (0, f"duplicate: bob already liked {PLAYING} (12 likes)\n", "")


def test_like_sends_the_video_and_reports_not_current(cli: Cli, stand_in: StandIn) -> None:
    code, out, err = cli("like", "alice", "--video", "other")
    assert stand_in.last("like")["video_id"] == "other"
    assert (code, out) == (1, "")
    assert err == f"error: not_current (now playing: {PLAYING})\n"


def test_rate_limited_and_invalid_request_are_errors(cli: Cli) -> None:
    assert cli("like", "spammer") == (1, "", "error: rate_limited (retry after 7.5 s)\n")
    assert cli("like", "") == (1, "", "error: invalid_request (username: must not be empty)\n")


def test_json_prints_the_reply_as_it_came(cli: Cli, stand_in: StandIn) -> None:
    code, out, err = cli("like", "alice", "--json")
    assert (code, err) == (0, "")
    reply = json.loads(out)
    assert reply["like_count"] == 12
    assert reply["correlation_id"] == stand_in.last("like")["correlation_id"]

    code, out, err = cli("like", "spammer", "--json")
    assert (code, err) == (1, "")
    assert json.loads(out)["error"] == "rate_limited"


def test_namespace_is_sent_only_when_asked_for(cli: Cli, stand_in: StandIn, tmp_path: Path) -> None:
    cli("stats", "--namespace", "other")
    assert stand_in.last("stats")["namespace"] == "other"

    config = write_config(tmp_path / "c.toml", {"analytics": {"namespace": "from-config"}})
    cli("stats", "--config", str(config))
    assert "namespace" not in stand_in.last("stats")
    cli("stats", "--config", str(config), "--namespace")
    assert stand_in.last("stats")["namespace"] == "from-config"


def test_top_liked_prints_an_aligned_table(cli: Cli, stand_in: StandIn) -> None:
    code, out, err = cli("top", "liked", "-n", "3")
    assert stand_in.last("top_liked")["limit"] == 3
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "#  likes  video_id                              title",
        f"1     12  {PLAYING:<36}  Never Gonna Give You Up",
        f"2      9  {'abc':<36}  -",
        "3      1  https://media.example.com/m/abc.json  Custom",
    ]


def test_top_defaults_to_ten_and_says_when_empty(cli: Cli, stand_in: StandIn) -> None:
    assert cli("top", "played") == (0, "nothing played yet\n", "")
    assert stand_in.last("top_played")["limit"] == 10
    assert stand_in.last("top_played")["window"] == "all"


def test_top_curators_prints_likes_received_and_plays(cli: Cli, stand_in: StandIn) -> None:
    code, out, err = cli("top", "curators", "--window", "week")
    assert stand_in.last("top_curators")["window"] == "week"
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "#  likes  plays  curator",
        "1     12      3  Bob",
        "2      1     10  Zoë",
    ]


def test_top_asks_for_a_window(cli: Cli, stand_in: StandIn) -> None:
    assert cli("top", "played", "--window", "week")[0] == 0
    assert stand_in.last("top_played")["window"] == "week"
    code, out, err = cli("top", "liked", "--window", "year")
    assert code == 2 and "--window" in err


def test_stats_prints_key_value_lines(cli: Cli, stand_in: StandIn) -> None:
    code, out, err = cli("stats", "--video", "v1", "--playlist", "p1")
    sent = stand_in.last("stats")
    assert (sent["video_id"], sent["playlist_id"]) == ("v1", "p1")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "global.items_queued: 3",
        "global.items_played: 2",
        "item.video_id: v1",
        "item.title: -",
        "item.like_count: 0",
        "playlist: -",
    ]


def test_now_playing(cli: Cli) -> None:
    assert cli("now-playing") == (
        0, f"now playing: {PLAYING} — Never Gonna Give You Up (since 2025-12-18T12:34:56Z)\n", ""
    )
    assert cli("now-playing", "--namespace", "empty") == (0, "nothing is playing\n", "")


def test_a_reply_that_is_not_json_is_an_error(
    server: EmbeddedNats, stand_in: StandIn, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.toml", {"nats": {"subject_prefix": "garbled"}})
    code, out, err = run(capsys, "stats", "--config", str(config), "--nats-url", server.url)
    assert (code, out) == (1, "")
    assert err.startswith("error: invalid_reply (not a JSON object")


def test_no_responders_is_exit_3_with_a_clear_message(
    server: EmbeddedNats, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.toml", {"nats": {"subject_prefix": "nobody"}})
    code, out, err = run(capsys, "stats", "--config", str(config), "--nats-url", server.url)
    assert (code, out) == (3, "")
    assert (
        f"no answer from kryten-likes at {server.url} on nobody.playlist.cmd.stats"
        " — is the daemon running?" in err
    )
    assert "no responders" in err


def test_a_daemon_that_never_answers_is_exit_3(
    server: EmbeddedNats, stand_in: StandIn, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.toml", {"nats": {"subject_prefix": "silent"}})
    code, out, err = run(
        capsys, "now-playing", "--config", str(config), "--nats-url", server.url, "--timeout", "0.2"
    )
    assert (code, out) == (3, "")
    assert "no reply within 0.2 s" in err


def test_no_server_is_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        url = f"nats://127.0.0.1:{probe.getsockname()[1]}"
    code, out, err = run(capsys, "like", "alice", "--nats-url", url)
    assert (code, out) == (3, "")
    assert f"no answer from kryten-likes at {url}" in err
    assert "cannot connect" in err


def test_config_errors_are_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", {"likes": {"rate_brust": 3}})
    for command in (["like", "alice"], ["run"]):
        code, out, err = run(capsys, *command, "--config", str(config))
        assert (code, out) == (2, "")
        assert err == f"kryten-likes: config error: {config}: unknown key 'likes.rate_brust'\n"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["top", "loved"],
        ["top", "liked", "-n", "0"],
        ["top", "liked", "-n", "101"],
        ["like"],
        ["like", "alice", "--timeout", "0"],
        ["stats", "--namespace", "not/valid"],
    ],
)
def test_usage_errors_are_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert "usage: kryten-likes" in err


def test_client_url_resolution_order(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    bare = Config(storage=StorageSection(data_dir=str(data_dir)))
    assert resolve_client_url(bare, None) == DEFAULT_NATS_URL

    data_dir.mkdir()
    (data_dir / "nats.url").write_text("nats://127.0.0.1:40001\n")
    assert resolve_client_url(bare, None) == "nats://127.0.0.1:40001"

    configured = attrs.evolve(bare, nats=NatsSection(servers=("nats://a:1", "nats://b:2")))
    assert resolve_client_url(configured, None) == "nats://a:1,nats://b:2"
    assert resolve_client_url(configured, "nats://cli:3") == "nats://cli:3"


def test_the_url_written_by_the_daemon_is_found(
    server: EmbeddedNats, stand_in: StandIn, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "nats.url").write_text(server.url + "\n")
    config = write_config(tmp_path / "c.toml", {"storage": {"data_dir": tmp_path}})
    assert run(capsys, "like", "alice", "--config", str(config)) == (
        0, f"liked {PLAYING}: 12 likes\n", ""
    )
