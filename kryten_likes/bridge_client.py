"""kryten-py's ``KrytenClient`` on the daemon's own NATS connection.

kryten-py does well what the daemon needs of the Kryten ecosystem:
``add_media`` to the bridge, chat, lifecycle events and service discovery.
But its ``connect`` (kryten-py 0.17.5) hands ``nats.connect`` only servers,
user, password and token: a creds file (``[nats] creds_file``,
``KRYTEN_LIKES_NATS_CREDS``), an nkey or TLS never reach it, so against a
server that accepts only creds the daemon could not start. So the client is
given the connection the daemon made with every credential
(``config.nats_options``): one login, one connection, the same credentials
everywhere.

kryten-py has no public way to take a connection, so ``connect`` below does
what its own ``connect`` does after ``nats.connect`` (mark connected,
subscribe to the channel's events, start the lifecycle publisher), through
the same attributes; ``tests/test_auth.py`` checks it against the installed
kryten-py (lifecycle events seen, chat events heard).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from kryten import KrytenClient
from kryten.lifecycle_events import LifecycleEventPublisher


class SharedConnectionKrytenClient(KrytenClient):
    def __init__(self, config: dict[str, Any], nc: Any, logger: logging.Logger | None = None) -> None:
        super().__init__(config, logger=logger)
        self._shared_nc = nc

    async def connect(self) -> None:
        if self._connected:
            return
        self._nats = self._shared_nc
        self._connected = True
        self._connection_time = time.time()
        await self._setup_subscriptions()
        service = self.config.service
        if service:
            self._lifecycle = LifecycleEventPublisher(
                nats_client=self._nats, service_name=service.name, version=service.version,
                heartbeat_interval=service.heartbeat_interval, enable_heartbeat=service.enable_heartbeat,
                enable_discovery=service.enable_discovery, logger=self.logger,
                health_port=service.health_port, health_path=service.health_path,
                metrics_port=service.metrics_port, metrics_path=service.metrics_path)
            await self._lifecycle.start()
            await self._lifecycle.publish_startup()
