"""The README's run command itself: `kryten-likes run` on the embedded
nats-server, one like through the CLI client, a clean stop on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import nats
import anyio


def _cli(*args: str, cwd: Path, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kryten_likes.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def test_run_on_the_embedded_server_and_like_from_the_cli(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text('[nats]\nsubject_prefix = "readme"\n[cytube]\nchannel = "readme"\n'
                   f'[storage]\ndata_dir = "{tmp_path / "data"}"\n')
    daemon = subprocess.Popen([sys.executable, "-m", "kryten_likes.cli", "run", "--config", str(cfg)],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        seen = []
        for line in daemon.stdout:  # wait for the daemon to say it serves
            seen.append(line)
            if "serving namespace" in line:
                break
        else:
            raise AssertionError("daemon exited before serving:\n" + "".join(seen))
        url = (tmp_path / "data" / "nats.url").read_text().strip()

        async def play() -> None:
            nc = await nats.connect(url)
            event = {"event_name": "changeMedia", "channel": "readme", "domain": "cytu.be",
                     "payload": {"id": "rd1", "title": "Readme", "seconds": 10, "type": "yt", "currentTime": 0}}
            await nc.jetstream().publish("kryten.events.cytube.readme.changemedia", json.dumps(event).encode())
            while True:  # each ask waits for its reply
                msg = await nc.request("readme.playlist.cmd.now_playing", b"{}", timeout=5)
                if json.loads(msg.data)["video_id"] == "rd1":
                    break
            await nc.close()

        anyio.run(play)
        out = _cli("like", "Alice", "--config", str(cfg), "--json", cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        reply = json.loads(out.stdout)
        assert (reply["status"], reply["video_id"], reply["like_count"]) == ("ok", "rd1", 1)
        out = _cli("like", "alice", "--config", str(cfg), cwd=tmp_path)
        assert out.returncode == 0 and "duplicate" in out.stdout
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=20)
        assert code == 0, daemon.stdout.read()
    # The embedded server stopped with the daemon: nothing answers any more.
    out = _cli("now-playing", "--config", str(cfg), "--timeout", "1", cwd=tmp_path)
    assert out.returncode == 3


def test_bad_config_names_the_key_and_exits_2(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text('[likes]\nrate_brust = 3\n')
    out = _cli("run", "--config", str(cfg), cwd=tmp_path)
    assert out.returncode == 2 and "likes.rate_brust" in out.stderr
