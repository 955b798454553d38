"""Bridge events as kryten-robot publishes them: one builder for every test.

A RawEvent is JSON ``{"event_name", "payload", "channel", "domain",
"timestamp", "correlation_id"}`` on ``kryten.events.cytube.{token}.{name}``
(the bridge's fixed prefix, not the daemon's; ``token`` is the channel
lower-cased without dots, ``name`` the event name lower-cased).
"""

from __future__ import annotations

import json

from kryten_likes.config import event_channel_token

BRIDGE_PREFIX = "kryten.events.cytube"


def event_subject(channel: str, name: str) -> str:
    """Where the bridge publishes event ``name`` of ``channel``."""
    return f"{BRIDGE_PREFIX}.{event_channel_token(channel)}.{name.lower()}"


def bridge_event(name: str, payload: dict, channel: str, *, correlation_id: str = "x") -> dict:
    """The RawEvent the bridge publishes for ``name`` with ``payload``."""
    return {"event_name": name, "payload": payload, "channel": channel, "domain": "cytu.be",
            "timestamp": "2026-01-01T00:00:00Z", "correlation_id": correlation_id}


def event_bytes(name: str, payload: dict, channel: str, *, correlation_id: str = "x") -> bytes:
    """``bridge_event`` as the bytes on the wire."""
    return json.dumps(bridge_event(name, payload, channel, correlation_id=correlation_id)).encode()


def change_media(video_id: str, *, title: str | None = None, seconds: int | None = 60, current_time: float = 0,
                 media_type: str = "yt") -> dict:
    """The payload of a changeMedia (``currentTime`` 0: a new play)."""
    return {"id": video_id, "title": f"title of {video_id}" if title is None else title, "seconds": seconds,
            "type": media_type, "currentTime": current_time}


def queue_item(media_type: str, video_id: str, *, seconds: int = 30, by: str = "bridgebot", uid: int = 0) -> dict:
    """The payload of a queue event: an item someone (``by``) added."""
    return {"item": {"media": {"id": video_id, "type": media_type, "title": f"title of {video_id}",
                               "seconds": seconds}, "queueby": by, "uid": uid}}
