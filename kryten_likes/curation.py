"""CyTube's ``setCurrent`` from the bridge: which playlist entry plays.

kryten-py hands it over as a RawEvent (it has no typed event for it); the
uid is the payload itself (CyTube sends a number), or its ``uid`` (or
``data``) field. It
only tells playback which entry's ``queueby`` is the curator of the play
(actors/playlist_entries.py); it counts nothing, so it is heard live, not
from the event stream, and a missed one costs at most a curator credit that
the media's own entry supplies.
"""

from __future__ import annotations

import logging
from typing import Any

from .bridge_events import entry_uid
from .mailboxes import MailboxFull
from .messages import EntryPlaying

log = logging.getLogger(__name__)


async def hear_set_current(event: Any, activation: Any) -> None:
    if activation is None:
        return  # standby: the active daemon hears it
    payload = getattr(event, "payload", None)
    if isinstance(payload, dict):  # a bridge may wrap the bare number CyTube sends
        payload = payload.get("uid", payload.get("data"))
    uid = entry_uid(payload)
    if uid is None:
        return
    try:
        activation.router.send(EntryPlaying(uid))
    except MailboxFull:
        log.info("setCurrent %s dropped: playback is behind", uid)
