"""`kryten-likes demo` run as a person would, against a running test daemon
and on its own; what it prints is checked against what KV holds."""

from __future__ import annotations

import json
import re
from pathlib import Path

import anyio
import nats
import pytest

from kryten_likes.cli import main
from kryten_likes.embedded import start_nats_server
from support.configs import write_config

COUNTED = re.compile(r"^like from (\S+): counted, (.+) has (\d+) likes?$", re.M)
RANKED = re.compile(r"^  \d+\. (.+) \((\S+)\): (\d+) (likes?|plays?)$")


def run_demo(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["demo", "--seconds", "0", *argv])
    out, err = capsys.readouterr()
    return code, out


def top_lists(out: str) -> dict[str, dict[str, int]]:
    """{"liked": {video_id: count}, "played": {...}} as the demo printed them."""
    tops: dict[str, dict[str, int]] = {}
    current = None
    for line in out.splitlines():
        if line.startswith("top "):
            current = tops.setdefault(line[4:].split(":")[0], {})
        elif (m := RANKED.match(line)) and current is not None:
            current[m[2]] = int(m[3])
    return tops


def assert_the_show(out: str) -> dict[str, dict[str, int]]:
    assert "now playing: Big Buck Bunny (aqz-KE-bpKQ)" in out
    assert len(COUNTED.findall(out)) == 7, out
    assert re.search(r"^like from alice\S*: duplicate refused, alice\S* already liked Big Buck Bunny "
                     r"\(still \d+ likes\)$", out, re.M), out
    assert re.search(r"^plays counted: 4 \(items_played \d+ -> \d+\)$", out, re.M), out
    assert re.search(r"^queued items counted: 3 ", out, re.M), out
    assert "unexpected" not in out
    tops = top_lists(out)
    assert set(tops) == {"liked", "played"}
    return tops


def config_file(tmp_path: Path, config) -> Path:
    return write_config(tmp_path / "demo.toml", {"nats": {"subject_prefix": config.nats.subject_prefix},
                                                  "cytube": {"channel": config.cytube.channel}})


def test_the_demo_plays_against_a_running_daemon(harness, nats_server, tmp_path: Path, capsys) -> None:
    h = harness()
    ns = h.config.analytics.namespace
    code, out = run_demo(capsys, "--config", str(config_file(tmp_path, h.config)), "--nats-url", nats_server.url,
                         "--namespace", ns)
    assert code == 0, out
    assert f"demo: against the kryten-likes at {nats_server.url}" in out
    tops = assert_the_show(out)
    # A fresh namespace: the counts are the demo's alone.
    assert tops == {"liked": {"aqz-KE-bpKQ": 4, "eRsGyueVLvQ": 2, "R6MlUcmOul8": 1},
                    "played": {"aqz-KE-bpKQ": 2, "eRsGyueVLvQ": 1, "R6MlUcmOul8": 1}}
    for video_id, likes in tops["liked"].items():
        assert h.kv("kryten_playlist_likes", f"ns/{ns}/items/{video_id}/likes")["like_count"] == likes
    for video_id, plays in tops["played"].items():
        assert h.kv("kryten_playlist_analytics", f"ns/{ns}/items/{video_id}")["play_count"] == plays
    counters = h.kv("kryten_playlist_analytics", f"ns/{ns}/counters/global")
    assert (counters["items_played"], counters["items_queued"]) == (4, 3)
    # Each counted like line said the count after it; the last per video is what KV holds.
    last_said = {title: int(n) for _viewer, title, n in COUNTED.findall(out)}
    assert last_said == {"Big Buck Bunny": 4, "Sintel": 2, "Tears of Steel": 1}

    # Again: new viewers (the daemon remembers the first ones for a day), counts grow.
    code, out = run_demo(capsys, "--config", str(config_file(tmp_path, h.config)), "--nats-url", nats_server.url,
                         "--namespace", ns)
    assert code == 0, out
    assert top_lists(out)["liked"]["aqz-KE-bpKQ"] == 8
    assert h.kv("kryten_playlist_likes", f"ns/{ns}/items/aqz-KE-bpKQ/likes")["like_count"] == 8


def test_the_demo_runs_on_its_own_rather_than_into_a_daemons_namespace(harness, nats_server, tmp_path: Path,
                                                                      capsys) -> None:
    h = harness()
    store = tmp_path / "kept"
    code, out = run_demo(capsys, "--config", str(config_file(tmp_path, h.config)), "--nats-url", nats_server.url,
                         "--store", str(store))
    assert code == 0, out
    ns = h.config.analytics.namespace
    assert f"counts channel '{h.config.cytube.channel}' into namespace '{ns}'" in out
    assert f"--namespace {ns}" in out
    assert "starting a nats-server and a kryten-likes of its own" in out
    tops = assert_the_show(out)
    assert "stopped; its store is kept in" in out
    # The running daemon's counts were not touched.
    assert h.kv("kryten_playlist_analytics", f"ns/{ns}/counters/global") is None
    assert h.request("now_playing", {})["video_id"] is None

    async def stored() -> tuple[dict, dict]:
        with start_nats_server(store / "jetstream", port=None) as server:
            nc = await nats.connect(server.url)
            try:
                likes = await nc.jetstream().key_value("kryten_playlist_likes")
                analytics = await nc.jetstream().key_value("kryten_playlist_analytics")
                liked = {v: json.loads((await likes.get(f"ns/demo/items/{v}/likes")).value)["like_count"]
                         for v in tops["liked"]}
                played = {v: json.loads((await analytics.get(f"ns/demo/items/{v}")).value)["play_count"]
                          for v in tops["played"]}
                return liked, played
            finally:
                await nc.close()

    assert anyio.run(stored) == (tops["liked"], tops["played"])


def test_with_no_server_at_all_the_demo_brings_its_own(capsys) -> None:
    code, out = run_demo(capsys, "--nats-url", "nats://127.0.0.1:1")
    assert code == 0, out
    assert "demo: no server answers at nats://127.0.0.1:1 (ConnectionRefusedError)." in out
    assert_the_show(out)
    assert "its temp dir is removed" in out
    temp = re.search(r"^demo: starting a nats-server and a kryten-likes of its own in (\S+)$", out, re.M)[1]
    assert not Path(temp).exists()


def test_the_demos_own_daemon_shows_its_likes_live_on_the_dashboard(tmp_path: Path) -> None:
    """The URL the demo prints serves the page, and its live stream carries
    the show's likes as they are counted (read by a thread, as a browser would)."""
    import threading
    import urllib.request

    from kryten_likes.config import parse_config
    from kryten_likes.demo import demo

    lines: list[str] = []
    seen: dict = {"page": None, "likes": []}

    def watch(base: str) -> None:
        with urllib.request.urlopen(base, timeout=10) as page:
            seen["page"] = page.read()
        try:
            with urllib.request.urlopen(base + "api/v1/stream", timeout=30) as stream:
                for raw in stream:  # until the demo stops its daemon
                    line = raw.decode()
                    if line.startswith("data: ") and '"kind":"like"' in line:
                        seen["likes"].append(json.loads(line[6:]))
        except OSError:
            pass  # the connection ended with the daemon

    watcher: list[threading.Thread] = []

    def say(line: str) -> None:
        lines.append(line)
        if m := re.search(r"dashboard: (http://127\.0\.0\.1:\d+/)$", line):
            watcher.append(threading.Thread(target=watch, args=(m[1],), daemon=True))
            watcher[0].start()

    config = parse_config({"nats": {"subject_prefix": "demo-live"}})
    code = anyio.run(demo, "nats://127.0.0.1:1", config, "demo", 3.0, None, say)
    assert code == 0, lines
    assert watcher, lines
    watcher[0].join(timeout=10)
    assert b"/static/dashboard.js" in seen["page"]
    out = "\n".join(lines)
    counted = {(m[1], int(m[3])) for m in COUNTED.finditer(out)}
    live = {(e["username"], e["like_count"]) for e in seen["likes"]}
    # The page opened as the show began: it saw the likes counted after (most of them), each as counted.
    assert len(live) >= 4 and live <= counted, (live, counted)
