"""The keeper thread of the embedded nats-server: it forks the server,
forwards its log, and reaps it.

Until the server says it is ready, the keeper hands each log line to the
starter (``ServerEvent``s on a queue), which reads them for the client port
and for the reason of a failure; after that, nobody reads the queue and the
lines only go to the ``kryten_likes.nats_server`` logger. The keeper must
drain stderr for the server's whole life: a full pipe would block it.

Why a thread of its own forks the child: on Linux the child gets
``PR_SET_PDEATHSIG = SIGTERM``, which the kernel sends when the *thread*
that forked it ends, not the process. The keeper lives exactly as long as
the child, so starting the server from a short-lived worker thread is safe.
"""

from __future__ import annotations

import collections
import ctypes
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Literal

__all__ = ["READY", "ServerEvent", "StartLog", "die_with_parent_hook", "keep_server"]

# What the keeper says is about the server the daemon started: the starter's logger.
_log = logging.getLogger("kryten_likes.embedded")
_server_log = logging.getLogger("kryten_likes.nats_server")

READY = "Server is ready"
_LEVELS = {"[WRN]": logging.WARNING, "[ERR]": logging.ERROR, "[FTL]": logging.ERROR}
_HEAD_LINES = 3
_TAIL_LINES = 20
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


ServerEvent = (
    tuple[Literal["started"], subprocess.Popen[bytes]]
    | tuple[Literal["spawn_failed"], BaseException]
    | tuple[Literal["line"], str]
    | tuple[Literal["exited"], int]
)


class StartLog:
    """The first and last lines of the start-up log, for error messages.

    Both ends matter: a bad flag is named on the first line (then comes the
    usage text), a failed bind on the last.
    """

    def __init__(self) -> None:
        self._head: list[str] = []
        self._tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self._dropped = 0

    def append(self, line: str) -> None:
        if len(self._head) < _HEAD_LINES:
            self._head.append(line)
            return
        if len(self._tail) == self._tail.maxlen:
            self._dropped += 1
        self._tail.append(line)

    def mentions(self, text: str) -> bool:
        return any(text in line for line in (*self._head, *self._tail))

    def __str__(self) -> str:
        gap = [f"  [... {self._dropped} lines ...]"] if self._dropped else []
        return "\n".join([*self._head, *gap, *self._tail])


def keep_server(argv: list[str], events: queue.Queue[ServerEvent], stopping: threading.Event) -> None:
    """The keeper thread: fork the server, forward its log, reap it."""
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            process_group=0,
            preexec_fn=die_with_parent_hook(),
        )
    except BaseException as exc:  # noqa: BLE001 - handed to the caller, who raises it
        events.put(("spawn_failed", exc))
        return
    events.put(("started", process))
    assert process.stderr is not None
    ready = False
    with process.stderr:
        for raw in process.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            _server_log.log(_level_of(line), "%s", line)
            if not ready:
                # Lines go to the waiting caller only until the server is ready;
                # afterwards nobody reads the queue.
                events.put(("line", line))
                ready = READY in line
    status = process.wait()
    if not ready:
        events.put(("exited", status))
    elif stopping.is_set():
        _log.info("embedded nats-server (pid %d) exited with status %d", process.pid, status)
    else:
        _log.error("embedded nats-server (pid %d) exited unexpectedly with status %d",
                   process.pid, status)


def _level_of(line: str) -> int:
    for tag, level in _LEVELS.items():
        if tag in line:
            return level
    return logging.DEBUG


def die_with_parent_hook() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child when its forking thread dies."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        # Looked up before the fork: loading a library in the child is unsafe.
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def die_with_parent() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return die_with_parent
