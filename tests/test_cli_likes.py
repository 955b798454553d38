"""`kryten-likes likers` and `kryten-likes likes` against a running daemon
(the `harness` fixture on a real nats-server): what they print, page by
page or every page with `--all`, and the exit code of an error reply."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import playing, unique_config, wait_until

from kryten_likes.cli import main
from support.configs import write_config
from support.events import change_media

Cli = Callable[..., tuple[int, str, str]]
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"  # liked_at as the daemon writes it


@pytest.fixture
def cli_for(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Callable[[object], Cli]:
    """The command line, against the daemon of a harness (its subject prefix, its server)."""

    def bind(h) -> Cli:
        config = write_config(tmp_path / f"{h.config.nats.subject_prefix}.toml",
                              {"nats": {"subject_prefix": h.config.nats.subject_prefix}})

        def invoke(*argv: str) -> tuple[int, str, str]:
            code = main([*argv, "--config", str(config), "--nats-url", h.url])
            out, err = capsys.readouterr()
            return code, out, err

        return invoke

    return bind


def _liked_by(h, video_id: str, names: list[str], *, title: str = "") -> None:
    h.change_media(video_id, title=title)
    playing(h, video_id)
    for name in names:
        assert h.request("like", {"username": name})["status"] == "ok"
        h.clock.advance(2)


def _rows(out: str) -> list[list[str]]:
    """The listed lines, split into their time and the rest (header and hint left out)."""
    rows = []
    for line in out.splitlines():
        if re.match(STAMP, line):
            at, rest = line.split("  ", 1)
            rows.append([at, rest])
    return rows


def test_likers_prints_who_liked_what_plays_newest_first(harness, cli_for) -> None:
    h = harness()
    _liked_by(h, "abc", ["Ann", "Bob", "Cat"])
    code, out, err = cli_for(h)("likers")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "abc: 3 likes"
    assert [name for _, name in _rows(out)] == ["Cat", "Bob", "Ann"]
    assert len(lines) == 4  # the last page: no hint of a next one
    times = [at for at, _ in _rows(out)]
    assert all(re.fullmatch(STAMP, at) for at in times) and times == sorted(times, reverse=True)


def test_likers_one_page_says_how_to_get_the_next(harness, cli_for) -> None:
    h = harness()
    _liked_by(h, "abc", ["Ann", "Bob", "Cat"])
    cli = cli_for(h)
    code, out, err = cli("likers", "--limit", "2")
    assert (code, err) == (0, "")
    assert [name for _, name in _rows(out)] == ["Cat", "Bob"]
    hint = out.splitlines()[-1]
    match = re.fullmatch(r"next page: kryten-likes likers abc --limit 2 --cursor (\S+)  \(or --all for every page\)",
                         hint)
    assert match, hint
    code, out, err = cli("likers", "abc", "--limit", "2", "--cursor", match[1])
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == "abc: 3 likes"
    assert [name for _, name in _rows(out)] == ["Ann"]
    assert "next page" not in out


def test_likers_all_follows_the_cursor_to_the_last_page(harness, cli_for) -> None:
    h = harness()
    names = ["Ann", "Bob", "Cat", "Dan", "Eve"]
    _liked_by(h, "abc", names)
    code, out, err = cli_for(h)("likers", "abc", "-n", "2", "--all")
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == "abc: 5 likes"
    assert out.count("abc: 5 likes") == 1 and "next page" not in out
    assert [name for _, name in _rows(out)] == names[::-1]


def test_likers_all_asks_later_pages_of_the_item_it_started_with(harness, cli_for) -> None:
    h = harness()
    _liked_by(h, "abc", ["Ann", "Bob", "Cat"])
    asked: list[dict] = []

    async def spy(msg) -> None:
        asked.append(json.loads(msg.data))

    subject = f"{h.config.nats.subject_prefix}.playlist.cmd.likers"
    sub = h.portal.call(lambda: h.nc.subscribe(subject, cb=spy))
    h.portal.call(h.nc.flush)
    code, out, err = cli_for(h)("likers", "-n", "1", "--all")
    wait_until(lambda: h.portal.call(h.nc.flush) or len(asked) >= 3)  # the spy's callbacks have run
    h.portal.call(sub.unsubscribe)
    assert (code, err) == (0, "")
    assert [name for _, name in _rows(out)] == ["Cat", "Bob", "Ann"]
    # The first page is of what plays now; the next ones name it, so that
    # they stay its pages even if another item starts meanwhile.
    assert [(body.get("video_id"), "cursor" in body) for body in asked] == [
        (None, False), ("abc", True), ("abc", True)]


def test_likes_prints_the_user_their_total_and_their_items(harness, cli_for) -> None:
    h = harness(unique_config(dedupe_enabled=False))
    for vid in ("v1", "v2", "v3"):
        _liked_by(h, vid, ["Zoë"], title=f"Title {vid}")
    h.publish_event("changeMedia", change_media("v4", title=""))  # no title known
    playing(h, "v4")
    assert h.request("like", {"username": "zoë"})["status"] == "ok"
    code, out, err = cli_for(h)("likes", "ZOË")
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == "Zoë: 4 likes given"
    assert [rest for _, rest in _rows(out)] == ["v4", "v3 — Title v3", "v2 — Title v2", "v1 — Title v1"]
    assert len(out.splitlines()) == 5


def test_likes_pages_and_all(harness, cli_for) -> None:
    h = harness(unique_config(dedupe_enabled=False))
    for vid in ("v1", "v2", "v3"):
        _liked_by(h, vid, ["Ann"])
    cli = cli_for(h)
    code, out, err = cli("likes", "Ann", "-n", "2")
    assert (code, err) == (0, "")
    assert [rest for _, rest in _rows(out)] == ["v3 — title of v3", "v2 — title of v2"]
    match = re.search(r"^next page: kryten-likes likes Ann --limit 2 --cursor (\S+)  ", out, re.M)
    assert match, out
    code, out, err = cli("likes", "Ann", "-n", "2", "--cursor", match[1])
    assert [rest for _, rest in _rows(out)] == ["v1 — title of v1"] and "next page" not in out

    code, out, err = cli("likes", "Ann", "-n", "1", "--all")
    assert (code, err) == (0, "")
    assert out.count("Ann: 3 likes given") == 1
    assert [rest.split(" — ")[0] for _, rest in _rows(out)] == ["v3", "v2", "v1"]


def test_likes_of_a_stranger_is_an_empty_list(harness, cli_for) -> None:
    h = harness()
    assert cli_for(h)("likes", "Nobody") == (0, "Nobody: 0 likes given\n", "")


def test_json_prints_the_reply_as_it_came(harness, cli_for) -> None:
    h = harness()
    _liked_by(h, "abc", ["Ann", "Bob"])
    code, out, err = cli_for(h)("likers", "--json", "-n", "1")
    assert (code, err) == (0, "")
    reply = json.loads(out)
    assert (reply["status"], reply["video_id"], reply["like_count"]) == ("ok", "abc", 2)
    assert [u["username"] for u in reply["users"]] == ["Bob"] and isinstance(reply["cursor"], str)


def test_likers_with_nothing_playing_is_an_error_reply_exit_1(harness, cli_for) -> None:
    h = harness()
    cli = cli_for(h)
    assert cli("likers") == (1, "", "error: no_current_item (nothing is playing)\n")
    assert cli("likers", "--all") == (1, "", "error: no_current_item (nothing is playing)\n")
    code, out, err = cli("likers", "--json")
    assert (code, err) == (1, "") and json.loads(out)["error"] == "no_current_item"


def test_a_cursor_the_daemon_did_not_hand_out_is_exit_1(harness, cli_for) -> None:
    h = harness()
    code, out, err = cli_for(h)("likes", "Ann", "--cursor", "not-a-cursor")
    assert (code, out) == (1, "")
    assert err.startswith("error: invalid_request (cursor: ")


@pytest.mark.parametrize("argv", [["likers", "-n", "0"], ["likers", "--limit", "101"], ["likes"],
                                  ["likes", "Ann", "--all", "--json"]])
def test_usage_errors_are_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code = main(argv)
    _, err = capsys.readouterr()
    assert code == 2
    assert err.startswith(("usage: kryten-likes", "kryten-likes: --all"))


def test_unlike_takes_a_like_back_and_says_why_it_cannot(harness, cli_for) -> None:
    h = harness()
    cli = cli_for(h)
    _liked_by(h, "abc", ["Ann", "Bob"])
    code, out, _ = cli("unlike", "ann")
    assert (code, out.strip()) == (0, "unliked abc: 1 like")
    code, _, err = cli("unlike", "ann", "--video", "abc")
    assert code == 1 and "not_liked" in err
    assert h.request("stats", {"video_id": "abc"})["item"]["like_count"] == 1
