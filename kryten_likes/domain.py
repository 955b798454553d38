"""The things messages carry: an item as the bridge names it, a user's claim
on liking it, a bus event's place in the event stream, an item to queue.

Frozen, slotted attrs classes, like the messages (messages.py) that carry them.
"""

from __future__ import annotations

import attrs

frozen = attrs.frozen


@frozen
class Media:
    video_id: str
    media_type: str = ""
    title: str = ""
    duration_seconds: int | None = None


@frozen
class EventRef:
    """A bus event held in the daemon's event stream: its sequence and ack subject."""

    stream_seq: int
    ack_subject: str | None = None
    epoch: int = 0  # which reading of the stream delivered it (see events.EventFeed)


@frozen
class Claim:
    """A user's like of an item, as the dedupe ledger reserved it."""

    namespace: str
    video_id: str
    user: str
    liked_at: float
    expires_at: float
    expected_revision: int = 0  # 0: the claim key must be absent


@frozen
class ApplyItem:
    video_id: str
    media_type: str
    title: str | None = None
    duration_seconds: int | None = None
