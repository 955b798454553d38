"""The README's run command itself: `kryten-likes run` on the embedded
nats-server, one like through the CLI client, a clean stop on SIGTERM."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import nats

from support.configs import write_config
from support.daemon_process import DaemonProcess
from support.events import change_media, event_bytes, event_subject


def _cli(*args: str, cwd: Path, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kryten_likes.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def test_run_on_the_embedded_server_and_like_from_the_cli(tmp_path):
    cfg = write_config(tmp_path / "config.toml", {"nats": {"subject_prefix": "readme"}, "cytube": {"channel": "readme"},
                                                  "storage": {"data_dir": tmp_path / "data"}})
    daemon = DaemonProcess(cfg, tmp_path / "daemon.log", cwd=tmp_path)
    try:
        daemon.start()  # until the daemon says it serves
        url = (tmp_path / "data" / "nats.url").read_text().strip()

        async def play() -> None:
            nc = await nats.connect(url)
            data = event_bytes("changeMedia", change_media("rd1", title="Readme", seconds=10), "readme")
            await nc.jetstream().publish(event_subject("readme", "changeMedia"), data)
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
        code = daemon.terminate(20)  # SIGTERM
        assert code == 0, daemon.log_tail()
    # The embedded server stopped with the daemon: nothing answers any more.
    out = _cli("now-playing", "--config", str(cfg), "--timeout", "1", cwd=tmp_path)
    assert out.returncode == 3


def test_bad_config_names_the_key_and_exits_2(tmp_path):
    cfg = write_config(tmp_path / "config.toml", {"likes": {"rate_brust": 3}})
    out = _cli("run", "--config", str(cfg), cwd=tmp_path)
    assert out.returncode == 2 and "likes.rate_brust" in out.stderr
