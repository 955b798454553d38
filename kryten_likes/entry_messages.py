"""Messages about playlist entries (who queued what, which entry plays) and
about the bus events of what was counted.

CyTube names each playlist entry by a ``uid``; its ``queueby`` is the curator
credited with the entry's plays and the likes given on them
(docs/contract-social-web.md, "Curators"). Playback keeps the map.
"""

from __future__ import annotations

from attrs import frozen

from .domain import Media


@frozen
class EntryQueued:
    """The bridge's queue event (also counted by the counter writer), or an
    entry of the bridge's playlist read at start: ``uid`` holds ``media``,
    queued by ``queued_by`` (as typed)."""

    uid: str
    media: Media
    queued_by: str | None


@frozen
class EntryPlaying:
    """CyTube's ``setCurrent``: the entry ``uid`` is the one playing."""

    uid: str


@frozen
class EventsPublished:
    """The counter writer's shell → its core: the bus events of a group are
    published (acknowledged by the stream), so their like records may be
    written again (actors/outbox.py)."""

    group_id: str
