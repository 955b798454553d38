"""Next to kryten-playlist: with ``[queue] apply_enabled = false`` the daemon
leaves queue_apply to it (nobody here answers) yet counts its queue events once
each; with applies on, the daemon warns by name when kryten-playlist is on
the bus."""

from __future__ import annotations

import logging

import nats
import nats.errors
import pytest
from conftest import StandInBridge, unique_config, wait_until
from kryten import LifecycleEventPublisher


def test_with_applies_off_queue_apply_is_left_to_kryten_playlist(harness):
    h = harness(unique_config())
    h.stop()
    import attrs
    h.config = attrs.evolve(h.config, queue=attrs.evolve(h.config.queue, apply_enabled=False))
    h.start()
    with pytest.raises(nats.errors.NoRespondersError):
        h.request("queue_apply", {"playlist_id": "p", "items": [{"video_id": "a", "type": "yt"}]})
    # kryten-playlist's own applies reach the channel as queue events: counted once each.
    bridge = StandInBridge(h)
    try:
        bridge.foreign("yt", "a")
        bridge.foreign("yt", "b")
        wait_until(lambda: h.request("stats", {})["global"]["items_queued"] == 2)
        assert h.request("stats", {"video_id": "a"})["item"]["queue_count"] == 1
    finally:
        bridge.close()


def test_the_daemon_warns_by_name_when_kryten_playlist_runs_and_applies_are_on(harness, portal, nats_server, caplog):
    async def playlist_on_bus():
        nc = await nats.connect(nats_server.url)
        service = LifecycleEventPublisher("playlist", nc, logging.getLogger("stand-in"), version="0.3.2",
                                          enable_heartbeat=False)
        await service.start()
        await nc.flush()
        return nc, service

    nc, service = portal.call(playlist_on_bus)
    try:
        with caplog.at_level(logging.WARNING, logger="kryten_likes.daemon"):
            harness()
            wait_until(lambda: "kryten-playlist answers on this bus" in caplog.text, timeout=10)
        assert "[queue] apply_enabled = false" in caplog.text
    finally:
        portal.call(service.stop)
        portal.call(nc.close)
