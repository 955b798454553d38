"""The daemon's one NATS connection: every credential of ``[nats]`` on it
(kryten-py runs on it too: bridge_client), a clear refusal at start, and
reconnection forever once running.
"""

from __future__ import annotations

from typing import Any

import nats
import nats.errors

from .config import Config, nats_options
from .store.reconnects import Reconnects


class StartError(Exception):
    """The daemon cannot start; the message says why (never a secret)."""


async def connect(servers: list[str], config: Config, reconnects: Reconnects | None = None) -> Any:
    """A few tries at start (a wrong password or no server should stop the
    daemon with a clear message), then reconnect forever: once running, the
    daemon outlives nats-server restarts."""
    errors: list[Exception] = []

    async def remember(exc: Exception) -> None:
        errors.append(exc)

    try:
        nc = await nats.connect(servers=servers, name="kryten-likes", max_reconnect_attempts=3,
                                reconnect_time_wait=0.5, allow_reconnect=True, error_cb=remember,
                                reconnected_cb=reconnects.reconnected if reconnects else None,
                                **nats_options(config))
    except Exception as exc:
        # The server closes a refused connection, so the last error may be a
        # reset; the refusal is the news.
        refused = [e for e in errors if isinstance(e, nats.errors.AuthorizationError)]
        cause = refused[-1] if refused else errors[-1] if errors else exc
        hint = ""
        n = config.nats
        if not refused and (n.user or n.token or n.creds_file) and isinstance(cause, ConnectionResetError):
            hint = " (the server closed the connection at the handshake: check the NATS credentials)"
        raise StartError(f"cannot connect to NATS at {', '.join(servers)}: {cause}{hint}") from None
    nc.options["max_reconnect_attempts"] = -1  # nats-py reads this on every reconnect
    return nc
