"""The messages of queue applies and queue events: an apply's progress
between the gateway, the apply actor (which asks the bridge) and the
counter writer (which counts what the bridge queued). Frozen, slotted attrs
classes like every message (messages.py, which re-exports them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from .domain import ApplyItem, EventRef, Media

if TYPE_CHECKING:
    from .messages import ReplyTo  # the envelope; messages.py imports this module

frozen = attrs.frozen


@frozen
class ApplyRequested:
    """gateway → apply: enqueue these items on the channel, in order."""

    reply: ReplyTo
    namespace: str
    playlist_id: str
    items: tuple[ApplyItem, ...]
    requested_by: str | None = None


@frozen
class QueueObserved:
    """A ``queue`` event from the bridge: someone (maybe we) queued ``media``."""

    media: Media
    queued_by: str | None = None
    event: EventRef | None = None
    uid: str | None = None  # the playlist entry it made


@frozen
class EnqueueStarted:
    """apply → counter_writer, *before* asking the bridge: a queue event for this
    media may be ours (it may arrive before the bridge's answer)."""

    namespace: str
    media: Media
    enqueue_id: str = ""  # apply id and item index: saying it twice is saying it once


@frozen
class EnqueueRefused:
    """apply → counter_writer: the bridge did not queue it (or did not answer)."""

    namespace: str
    media: Media
    enqueue_id: str = ""


@frozen
class QueueConfirmed:
    """apply → counter_writer: the bridge queued item ``index`` of an apply; count it."""

    apply_id: str
    namespace: str
    playlist_id: str
    index: int
    media: Media


@frozen
class ApplyProgress:
    """counter_writer → apply: item ``index`` of the apply is counted, durably."""

    apply_id: str
    index: int


@frozen
class ApplyFinished:
    """apply → counter_writer: close the apply and answer its requester."""

    reply: ReplyTo
    apply_id: str
    namespace: str
    playlist_id: str
    enqueued_count: int
    failed: tuple = ()  # ({"video_id", "reason"}, ...)


@frozen
class EnqueueAnswered:
    """The apply shell → apply: what the bridge said about one item."""

    apply_id: str
    index: int
    ok: bool
    reason: str | None = None


@frozen
class WriterRestarted:
    """supervisor → apply: the counter writer died; say again what it must know."""


@frozen
class EnqueuesInFlight:
    """apply → counter_writer, answering ``WriterRestarted``: every enqueue of a
    running apply not yet counted, as (namespace, media key, enqueue id)."""

    enqueues: tuple[tuple[str, str, str], ...] = ()
