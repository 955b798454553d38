"""The daemon as a child process (`python -m kryten_likes.cli run --config
FILE`) that says when it serves, and the config and names it runs with.

Nothing here sleeps to synchronise: readiness comes from the daemon's own
log line ("serving namespace"). Every wait is bounded by a deadline.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import attrs

from support.configs import NO_LIMITS, merged, write_config
from support.events import event_subject

REPO = Path(__file__).resolve().parents[2]
READY_LINE = "serving namespace"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# --- the daemon as a subprocess ---------------------------------------------


@attrs.frozen
class Names:
    prefix: str
    channel: str
    namespace: str

    @property
    def like_subject(self) -> str:
        return f"{self.prefix}.playlist.cmd.like"

    def cmd(self, command: str) -> str:
        return f"{self.prefix}.playlist.cmd.{command}"

    @property
    def changemedia_subject(self) -> str:
        return event_subject(self.channel, "changeMedia")

    @property
    def stream(self) -> str:
        return f"KRYTEN_LIKES_EVENTS_kryten_{self.channel}"

    @property
    def durable(self) -> str:
        return f"kryten_likes_{self.namespace}_{self.channel}"


def daemon_config(path: Path, servers: Sequence[str], names: Names, *, replicas: int = 1,
                  data_dir: Path | None = None, http_port: int = 0) -> Path:
    """A daemon config file with limits far above any storm (these tests are
    about crashes, not rate limits); HTTP on ``http_port``, else off (port 0)."""
    return write_config(path, merged(NO_LIMITS, {
        "nats": {"servers": list(servers), "subject_prefix": names.prefix},
        "cytube": {"channel": names.channel},
        "analytics": {"namespace": names.namespace},
        "storage": {"data_dir": data_dir or path.parent / "data", "replicas": replicas},
        "http": {"port": http_port},
    }))


class DaemonProcess:
    """`kryten-likes run` in a child process; its output goes to one log file
    across all its lives (a reader thread keeps the pipe drained)."""

    def __init__(self, config: Path, log_path: Path, *, cwd: Path = REPO, env: dict | None = None) -> None:
        self.config = config
        self.log_path = log_path
        self.cwd = cwd
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None
        self._log_lock = threading.Lock()

    def spawn(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "daemon already running"
        self.starts += 1
        self._ready = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kryten_likes.cli", "run", "--config", str(self.config)],
            cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env={**os.environ, **self.env, "PYTHONUNBUFFERED": "1"},
        )
        self._reader = threading.Thread(target=self._read, args=(self.proc, self._ready, self.starts),
                                        daemon=True)
        self._reader.start()

    def _read(self, proc: subprocess.Popen[bytes], ready: threading.Event, life: int) -> None:
        assert proc.stdout is not None
        with proc.stdout, self._log_lock, open(self.log_path, "a", encoding="utf-8") as out:
            out.write(f"----- daemon life {life} (pid {proc.pid}) -----\n")
            out.flush()
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace")
                out.write(line)
                out.flush()
                if READY_LINE in line:
                    ready.set()

    def wait_ready(self, timeout: float = 30.0) -> None:
        if not self.ready_or_exited(timeout):
            raise AssertionError(f"daemon exited with {self.proc.returncode} before serving:\n{self.log_tail()}")

    def ready_or_exited(self, timeout: float = 30.0) -> bool:
        """True once this life says it serves; False if it exited first (its
        exit code in ``proc.returncode``); an AssertionError after ``timeout``."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None:
                self._join_reader()
                if self._ready.is_set():  # it said so before it exited
                    return True
                return False
            if time.monotonic() > deadline:
                raise AssertionError(f"daemon not serving after {timeout}s:\n{self.log_tail()}")
        return True

    def start(self, timeout: float = 30.0) -> None:
        self.spawn()
        self.wait_ready(timeout)

    def wait_line(self, text: str, timeout: float = 30.0) -> None:
        """Until this life has logged a line containing ``text`` (e.g. that it
        is standby). Reads the log file the reader thread keeps writing."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        marker = f"----- daemon life {self.starts} "
        while True:
            text_now = self.log_text()
            life = text_now[text_now.rfind(marker):] if marker in text_now else ""
            if text in life:
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} after {timeout}s:\n{self.log_tail()}")
            self._ready.wait(0.05)  # the log grows meanwhile; bounded by the deadline

    @property
    def serving(self) -> bool:
        """This life has said it serves."""
        return self._ready.is_set()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL: no chance to finish anything."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)
        self._join_reader()

    def terminate(self, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._join_reader()
        return self.proc.returncode

    def close(self) -> None:
        """Whatever state it is in: nothing of it is left running."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._join_reader()

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(10)

    def log_tail(self, n: int = 60) -> str:
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
