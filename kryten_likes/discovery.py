"""Which Kryten services are on the bus, by kryten-py's discovery convention.

Theory of operation: a Kryten service built on kryten-py runs a
``LifecycleEventPublisher`` (kryten/lifecycle_events.py) that listens on
``kryten.service.discovery.poll`` and answers every poll by publishing its
startup announcement again on ``kryten.lifecycle.{service}.startup``, a JSON
object naming the service, its version and host. A poll has no reply
subject and no count of answers, so the only way to hear everyone is to
listen for a while: ``services_on_bus`` subscribes to the announcements,
polls once and keeps what arrives before its deadline. Some services of
the ecosystem that do not use kryten-py answer on ``kryten.service.discovery``
instead; those are heard too.

kryten-py writes these subjects as literals inside the publisher and exports
no constants for them, so they are named once here.

Error handling: a service that answers with something unreadable is
skipped; NATS errors (no connection) propagate to the caller.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import nats.errors

__all__ = [
    "DISCOVERY_POLL",
    "PLAYLIST_SERVICE_NAMES",
    "apply_owner_warning",
    "services_on_bus",
    "warn_about_neighbours",
]

# kryten-py's LifecycleEventPublisher: it subscribes to the poll and answers
# with publish_startup() on kryten.lifecycle.{service}.startup.
DISCOVERY_POLL = "kryten.service.discovery.poll"
STARTUP_ANNOUNCEMENTS = "kryten.lifecycle.*.startup"
# Services that re-register on their own subject rather than kryten-py's.
DISCOVERY_ANSWERS = "kryten.service.discovery"

# kryten-playlist's lifecycle name: its config key `service_name`, default
# "playlist" (kryten-py lower-cases it).
PLAYLIST_SERVICE_NAMES = ("playlist", "kryten-playlist")


async def services_on_bus(nc: Any, timeout: float = 1.0) -> dict[str, dict]:
    """Poll for Kryten services; return each answering service's announcement.

    The key is the service's name (``likes``, ``playlist``, ``robot`` …); the
    value is its last announcement (``version``, ``hostname``,
    ``uptime_seconds`` …) plus ``answers``: how many announcements of that
    name came, so two instances of one service show as 2.
    """
    announcements = await nc.subscribe(STARTUP_ANNOUNCEMENTS)
    answers = await nc.subscribe(DISCOVERY_ANSWERS)
    found: dict[str, dict] = {}
    try:
        await nc.flush()  # both subscriptions are on the server before anyone answers
        poll = {"reason": "kryten-likes asks who is on the bus", "requester": "likes"}
        await nc.publish(DISCOVERY_POLL, json.dumps(poll).encode())
        deadline = time.monotonic() + timeout
        for sub in (announcements, answers):
            # Both filled while we wait on the first: the second is drained at once.
            while (msg := await _next_before(sub, deadline)) is not None:
                _remember(found, msg.subject, msg.data)
    finally:
        for sub in (announcements, answers):
            try:
                await sub.unsubscribe()
            except nats.errors.Error:  # the connection went: the subscription went with it
                pass
    return found


async def _next_before(sub: Any, deadline: float) -> Any:
    """The next message of ``sub``, or None once the deadline has passed."""
    remaining = deadline - time.monotonic()
    try:
        # A message already waiting is taken even at the deadline.
        return await sub.next_msg(timeout=max(remaining, 0.001))
    except nats.errors.TimeoutError:
        return None


def _remember(found: dict[str, dict], subject: str, data: bytes) -> None:
    try:
        announcement = json.loads(data)
    except ValueError:
        return
    if not isinstance(announcement, dict):
        return
    name = announcement.get("service")
    if not isinstance(name, str) or not name:
        parts = subject.split(".")
        if subject == DISCOVERY_ANSWERS or len(parts) != 4:
            return
        name = parts[2]  # kryten.lifecycle.{service}.startup
    earlier = found.get(name, {}).get("answers", 0)
    found[name] = {**announcement, "answers": earlier + 1}


def apply_owner_warning(services: Mapping[str, Mapping[str, Any]], apply_enabled: bool,
                        subject_prefix: str = "kryten") -> str | None:
    """Say so when kryten-playlist answers and our queue applies are on.

    Both services answer ``{prefix}.playlist.cmd.queue_apply``, and NATS
    hands a request to every subscriber: each would enqueue the playlist,
    so every item would land on the channel twice.
    """
    if not apply_enabled:
        return None
    name = next((n for n in PLAYLIST_SERVICE_NAMES if n in services), None)
    if name is None:
        return None
    seen = services[name]
    who = f"service {name!r}"
    if seen.get("version"):
        who += f", version {seen['version']}"
    if seen.get("hostname"):
        who += f", on {seen['hostname']}"
    return (f"kryten-playlist answers on this bus ({who}) and "
            f"kryten-likes's queue applies are on: both answer {subject_prefix}.playlist.cmd.queue_apply, "
            "so every apply would be enqueued twice. Set `[queue] apply_enabled = false` in kryten-likes's "
            "config (kryten-playlist then owns applies), or switch kryten-playlist's applies off.")


async def warn_about_neighbours(nc: Any, apply_enabled: bool, subject_prefix: str) -> None:
    """Ask the bus who is there and warn by name when another service would
    answer our subjects too (at start; advice only: the daemon serves either way)."""
    log = logging.getLogger("kryten_likes.daemon")  # said as the daemon's, where operators look
    try:
        services = await services_on_bus(nc, timeout=2.0)
    except Exception as exc:
        log.info("could not ask the bus which services run: %s", exc)
        return
    warning = apply_owner_warning(services, apply_enabled, subject_prefix)
    if warning:
        log.warning("%s", warning)
