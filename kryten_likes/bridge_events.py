"""bridge_events: the bridge's (kryten-robot's) events, read into messages.

Theory of operation
-------------------
The event feed (``events.py``) takes the bridge's RawEvents off the durable
stream; these pure functions turn one event's bytes into the message for the
actor that counts it — ``changeMedia`` into ``MediaChanged`` (for playback),
``queue`` into ``QueueObserved`` (for the counter writer) — or None when the
event is not one we can use (bad JSON, no item, an id we could neither key
nor answer about). They never raise on input. An item's id follows the same
rule as a request's (``contract.ID_MAX_LEN``, no control characters, short
enough to key); its free text is bounded and made UTF-8 clean.
"""

from __future__ import annotations

import json
import math

from .contract import ID_MAX_LEN, MEDIA_TYPE_MAX_LEN, TITLE_MAX_LEN, has_control
from .messages import EventRef, Media, MediaChanged, QueueObserved
from .store.keys import fits_key

__all__ = ["entry_uid", "media_changed", "queue_observed"]


def media_changed(raw: bytes, ref: EventRef | None) -> MediaChanged | None:
    """The bridge's changeMedia RawEvent → MediaChanged; None if it is not one.

    kryten-py's ChangeMediaEvent drops ``currentTime``, which tells a re-sent
    item from a new play, so the RawEvent payload is read here directly.
    """
    try:
        payload = json.loads(raw)["payload"]
    except (ValueError, KeyError, TypeError):
        return None
    media = _media(payload)
    if media is None:
        return None
    t = payload.get("currentTime", 0)
    t = float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) else 0.0
    return MediaChanged(media, t, ref, entry_uid(payload.get("uid")))


def entry_uid(raw: object) -> str | None:
    """A playlist entry's uid (CyTube sends a number), bounded; None if absent or odd."""
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        return None
    uid = str(raw).strip()
    return uid if 0 < len(uid) <= 64 and not has_control(uid) else None


def _media(raw: object) -> Media | None:
    if not isinstance(raw, dict):
        return None
    vid = raw.get("id")
    if not isinstance(vid, str) or not 1 <= len(vid) <= ID_MAX_LEN or has_control(vid) or not fits_key(vid):
        return None  # an item we could neither key nor answer about
    secs = raw.get("seconds")
    dur = int(secs) if isinstance(secs, (int, float)) and not isinstance(secs, bool) and math.isfinite(secs) \
        and secs >= 0 else None
    title, mtype = _text(raw.get("title"), TITLE_MAX_LEN), _text(raw.get("type"), MEDIA_TYPE_MAX_LEN)
    return Media(vid, mtype, title, dur)


def _text(v: object, max_len: int) -> str:
    """Free text from the bridge, made safe to store: a string, bounded, UTF-8 clean."""
    if not isinstance(v, str):
        return ""
    return v[:max_len].encode("utf-8", "replace").decode("utf-8")


def queue_observed(raw: bytes, ref: EventRef | None) -> QueueObserved | None:
    """The bridge's queue RawEvent (``payload.item.media``, ``payload.item.queueby``)."""
    try:
        item = json.loads(raw)["payload"]["item"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(item, dict):
        return None
    media = _media(item.get("media"))
    if media is None:
        return None
    by = item.get("queueby")
    by = _text(by, 200) if isinstance(by, str) and by.strip() else None
    return QueueObserved(media, by, ref, entry_uid(item.get("uid")))
