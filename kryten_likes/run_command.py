"""The ``kryten-likes run`` command as a process: logging, the embedded
nats-server when none is configured, the daemon (daemon.py) until SIGTERM
or SIGINT, a clean stop (``Daemon.drain``, then the rest), and the exit
code."""

from __future__ import annotations

import logging
import signal
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from .config import Config
from .connection import StartError
from .daemon import Daemon, serve
from .startup import collect_less_often, loop_options

log = logging.getLogger(__name__)


def run_daemon(config: Config) -> int:
    """The ``kryten-likes run`` command: embedded nats-server when none is
    configured, the daemon until SIGTERM/SIGINT; returns the exit code."""
    from .embedded import EmbeddedNatsError, start_nats_server

    collect_less_often()
    # One line per event; credentials are never put in a log line.
    logging.basicConfig(level=config.logging.level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = None
    url = None  # None: serve() uses every configured server
    if not config.nats.servers:
        data_dir = Path(config.storage.data_dir)
        try:
            server = start_nats_server(data_dir, port=4222)
        except EmbeddedNatsError as exc:
            log.error("cannot start the embedded nats-server: %s", exc)
            return 1
        url = server.url
        (data_dir / "nats.url").write_text(url + "\n")
        log.info("embedded nats-server at %s (store %s)", url, server.store_dir)

    async def main() -> int:
        running: list[Daemon] = []  # once it serves (or stands by)

        async with anyio.create_task_group() as tg:
            async def stop_on_signal() -> None:
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for sig in signals:
                        log.info("%s: stopping", signal.Signals(sig).name)
                        for daemon in running:
                            await daemon.drain()
                        tg.cancel_scope.cancel()
                        return

            tg.start_soon(stop_on_signal)
            running.append(await tg.start(partial(serve, config, nats_url=url)))
        return 0

    try:
        return _exit_code(lambda: anyio.run(main, backend_options=loop_options(config)))
    finally:
        if server is not None:
            server.stop()


def _exit_code(run: Any) -> int:
    """0 after a clean stop; 1, with one clear log line, for every way the daemon ends badly."""
    from .store import StoreError  # buckets unusable, or a document of a later schema (store/schema.py)
    from .supervisor import SupervisorGaveUp

    try:
        return run()
    except SupervisorGaveUp as exc:
        log.error("giving up: %s", exc)
    except BaseExceptionGroup as eg:  # the task group wraps what ended it
        known = eg.subgroup((SupervisorGaveUp, StartError, StoreError))
        while isinstance(known, BaseExceptionGroup):  # activations nest a task group of their own
            known = known.exceptions[0]
        log.error("daemon stopped: %s", known or eg, exc_info=not known)
    except (StartError, StoreError) as exc:
        log.error("%s", exc)
    except Exception as exc:
        log.error("daemon failed: %s", exc, exc_info=True)
    return 1
