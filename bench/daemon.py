"""The daemon under test as a child process, and the bridge events that drive it.

The daemon runs exactly as deployed: ``python -m kryten_likes.cli run
--config FILE`` against the bench's nats-server, with limits generous enough
that the rate limiter never answers (it is measured, not tuned away: every
like still takes a token from its user's bucket and from the global one).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from .harness import BenchError, Child, Children, wait_for_answer

PREFIX = "bench"
CHANNEL = "bench"
NAMESPACE = "default"


def cmd(command: str) -> str:
    return f"{PREFIX}.playlist.cmd.{command}"


def write_config(path: Path, url: str, event_loop: str = "uvloop", http_port: int = 0, replicas: int = 1) -> Path:
    path.write_text(
        "[nats]\n"
        f'servers = ["{url}"]\n'
        f'subject_prefix = "{PREFIX}"\n'
        "[cytube]\n"
        f'channel = "{CHANNEL}"\n'
        "[analytics]\n"
        f'namespace = "{NAMESPACE}"\n'
        "[likes]\n"
        "rate_per_minute = 60000.0\n"
        "rate_burst = 100000\n"
        "[limits]\n"
        "global_likes_per_second = 10000000.0\n"
        "global_likes_burst = 10000000\n"
        "[runtime]\n"
        f'event_loop = "{event_loop}"\n'
        "[http]\n"
        f"port = {http_port}\n"  # 0: none (the live-stream scenario gives one)
        "[storage]\n"
        f"replicas = {replicas}\n"
    )
    return path


def start_daemon(children: Children, workdir: Path, url: str, name: str,
                 profile_to: Path | None = None, event_loop: str = "uvloop", http_port: int = 0,
                 replicas: int = 1) -> Child:
    cfg = write_config(workdir / f"{name}.toml", url, event_loop, http_port, replicas)
    if profile_to is None:
        argv = [sys.executable, "-m", "kryten_likes.cli", "run", "--config", str(cfg)]
    else:  # cProfile, enabled by SIGUSR1 and disabled by SIGUSR2 (bench/profiled_daemon.py)
        argv = [sys.executable, str(Path(__file__).with_name("profiled_daemon.py")), str(profile_to),
                "run", "--config", str(cfg)]
    # cwd: the daemon's ./data default is never used (servers are given), but
    # keep whatever it might write inside the bench's temp dir.
    return children.start(name, argv, workdir / f"{name}.log", cwd=workdir)


async def daemon_ready(nc: Any, child: Child, timeout: float = 120.0) -> float:
    """Seconds until the daemon answers its first request."""
    t0 = time.monotonic()
    await wait_for_answer(nc, cmd("now_playing"), timeout=timeout, child=child)
    return time.monotonic() - t0


def change_media(video_id: str, *, title: str | None = None, seconds: int = 60, current_time: float = 0) -> bytes:
    """The bridge's changeMedia RawEvent."""
    return json.dumps({"event_name": "changeMedia", "channel": CHANNEL, "domain": "cytu.be",
                       "payload": {"id": video_id, "title": title or f"Title of {video_id}", "seconds": seconds,
                                   "type": "yt", "currentTime": current_time}}).encode()


CHANGEMEDIA_SUBJECT = f"kryten.events.cytube.{CHANNEL}.changemedia"  # the bridge's prefix


async def play(js: Any, video_id: str, **kw: Any) -> None:
    await js.publish(CHANGEMEDIA_SUBJECT, change_media(video_id, **kw))


async def wait_playing(nc: Any, video_id: str, child: Child, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        child.check_alive()
        reply = json.loads((await nc.request(cmd("now_playing"), b"{}", timeout=5)).data)
        if reply.get("video_id") == video_id:
            return
        if time.monotonic() > deadline:
            raise BenchError(f"the daemon did not start playing {video_id} within {timeout:g} s")
        await asyncio.sleep(0.002)  # polling the daemon's now_playing


async def stats(nc: Any, **fields: Any) -> dict:
    return json.loads((await nc.request(cmd("stats"), json.dumps(fields).encode(), timeout=10)).data)
