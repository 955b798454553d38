"""Service discovery on a real nats-server: stand-ins answer as kryten-py's
LifecycleEventPublisher makes a service answer (kryten-playlist's name is
"playlist"), and the daemon itself answers as "likes"."""

from __future__ import annotations

import json
import logging

import anyio
import nats
from kryten import LifecycleEventPublisher

from kryten_likes.discovery import DISCOVERY_POLL, apply_owner_warning, services_on_bus


async def _with_stand_in(url: str, name: str, version: str, ask) -> object:
    """Run a kryten-py lifecycle publisher named ``name`` while ``ask`` runs."""
    service_nc = await nats.connect(url)
    stand_in = LifecycleEventPublisher(name, service_nc, logging.getLogger(f"stand-in.{name}"), version=version,
                                       enable_heartbeat=False)
    await stand_in.start()
    await service_nc.flush()  # it listens for polls before anyone polls
    asker = await nats.connect(url)
    try:
        return await ask(asker)
    finally:
        await asker.close()
        await stand_in.stop()
        await service_nc.close()


def test_kryten_playlist_is_found_and_named_in_the_warning(nats_server) -> None:
    services = anyio.run(_with_stand_in, nats_server.url, "playlist", "0.3.2",
                         lambda nc: services_on_bus(nc, timeout=0.5))
    assert services["playlist"]["version"] == "0.3.2"
    assert services["playlist"]["answers"] == 1

    warning = apply_owner_warning(services, apply_enabled=True)
    assert warning is not None
    assert "kryten-playlist" in warning and "version 0.3.2" in warning
    assert "kryten.playlist.cmd.queue_apply" in warning
    assert "[queue] apply_enabled = false" in warning
    # Switched off here, kryten-playlist owns applies: nothing to say.
    assert apply_owner_warning(services, apply_enabled=False) is None


def test_no_warning_without_kryten_playlist(nats_server) -> None:
    services = anyio.run(_with_stand_in, nats_server.url, "robot", "1.12.6",
                         lambda nc: services_on_bus(nc, timeout=0.5))
    assert "robot" in services and "playlist" not in services
    assert apply_owner_warning(services, apply_enabled=True) is None


def test_the_daemon_answers_discovery_as_likes(harness, nats_server) -> None:
    harness()

    async def ask() -> dict:
        nc = await nats.connect(nats_server.url)
        try:
            return await services_on_bus(nc, timeout=0.5)
        finally:
            await nc.close()

    services = anyio.run(ask)
    assert services["likes"]["answers"] >= 1
    assert apply_owner_warning(services, apply_enabled=True) is None


def test_a_service_answering_on_its_own_discovery_subject_is_heard(nats_server) -> None:
    """Some Kryten services re-register on kryten.service.discovery instead."""

    async def scenario() -> dict:
        service_nc = await nats.connect(nats_server.url)

        async def re_register(msg) -> None:
            await service_nc.publish("kryten.service.discovery", json.dumps({"service": "llm"}).encode())

        await service_nc.subscribe(DISCOVERY_POLL, cb=re_register)
        await service_nc.flush()
        nc = await nats.connect(nats_server.url)
        try:
            return await services_on_bus(nc, timeout=0.5)
        finally:
            await nc.close()
            await service_nc.close()

    assert anyio.run(scenario)["llm"]["answers"] == 1
