"""Effects: what a core asks its shell to do, beside sending messages.

A core never performs I/O; it returns these, and the shell (actors/shell.py
and the shells beside it) performs them: a reply on the bus, an ack of a bus
event, a batch to store atomically, a plain write, an enqueue at the bridge.
"""

from __future__ import annotations

from typing import Literal

import attrs

from .domain import ApplyItem, EventRef
from .messages import ReplyTo

frozen = attrs.frozen


@frozen
class Reply:
    to: ReplyTo
    body: dict = attrs.field(hash=False)


@frozen
class AckEvent:
    event: EventRef


@frozen
class Commit:
    """Store ``writes`` as one atomic batch in ``bucket`` (one unconditional
    write: as a plain write); report a CommitFinished."""

    bucket: Literal["analytics", "likes", "journal"]
    group_id: str
    writes: tuple = ()
    marker_key: str = ""


@frozen
class PutDocument:
    """A plain write where the last writer wins by design (materialised rankings)."""

    bucket: Literal["analytics", "likes"]
    key: str
    value: dict = attrs.field(hash=False)


@frozen
class PurgeJournal:
    """Remove the namespace's journal entries up to ``revision`` (stored: actors/like_journal.py)."""

    namespace: str
    revision: int


@frozen
class PublishEvents:
    """Publish these bus events (actors/outbox.py); report ``EventsPublished``.
    ``fresh``: none of them was ever sent (a group that just landed), so they
    may go as one chain per stream (event_out.py); a republish may not."""

    group_id: str
    events: tuple = attrs.field(hash=False)
    fresh: bool = False


@frozen
class Enqueue:
    """Effect of apply: ask the bridge to queue ``item`` (kryten-py ``add_media``)."""

    apply_id: str
    index: int
    item: ApplyItem
