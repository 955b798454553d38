"""Every message that travels between actors, and where each goes.

All are frozen, slotted attrs classes whose reprs are valid Python, so a Hypothesis failure prints
as a program you can paste. A core returns the messages it sends; ``routes.MAILBOX`` says which actor takes each.
A request travels in one envelope (``ReplyTo``: reply subject, correlation
id, command, arrival time) from actor to actor, like a pykka envelope:
whoever decides its outcome answers it, and if the actor holding it dies, the supervisor answers
it with ``internal_error``. Effects (a reply, an ack, a batch to store) are not messages: they are in ``effects.py``.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from .domain import ApplyItem, Claim, EventRef, Media  # what messages carry

frozen = attrs.frozen  # slots=True, frozen=True, eq, repr


# --- the envelope ---------------------------------------------------------------


@frozen
class ReplyTo:
    """Where a request's answer goes: a NATS reply subject (None: nobody waits
    on the bus), or a chat user to answer in the channel."""

    subject: str | None
    correlation_id: str | None = None
    command: str | None = None  # for metrics and chat: which command this answers
    received: float = 0.0  # monotonic time of arrival, for the latency histogram
    chat_user: str | None = None
    ticket: int | None = None  # an HTTP request waiting in this process (http_asks)


# --- requests ----------------------------------------------------------------


@frozen
class Inbound:
    """bus → gateway: a raw request as it came, in its envelope (the envelope's
    correlation_id is set once the gateway has read and checked it)."""

    reply: ReplyTo
    data: bytes

    @classmethod
    def of(cls, command: str, data: bytes, reply_subject: str | None, received: float = 0.0) -> Inbound:
        return cls(ReplyTo(reply_subject, None, command, received), data)

    @property
    def command(self) -> str:
        return self.reply.command or ""


@frozen
class LikeRequested:
    reply: ReplyTo
    namespace: str
    user: str  # already folded (NFKC + casefold)
    video_id: str | None = None
    username: str = ""  # as typed: like records keep both


@frozen
class UnlikeRequested:
    """gateway → rate_buckets: take back a counted like (an unlike takes a token too)."""

    reply: ReplyTo
    namespace: str
    user: str  # folded
    video_id: str | None = None
    username: str = ""


@frozen
class UnlikeAllowed:
    """rate_buckets → playback: the user had a token; the item is next."""

    reply: ReplyTo
    namespace: str
    user: str
    video_id: str | None = None
    username: str = ""


@frozen
class UnlikeForItem:
    """playback → counter_writer: the unlike with its item (given, or what plays now)."""

    reply: ReplyTo
    namespace: str
    user: str
    media: Media
    username: str = ""


@frozen
class LikersAsked:
    """gateway → playback: who liked an item (None: what plays now), a page at a time."""

    reply: ReplyTo
    namespace: str
    video_id: str | None
    limit: int
    cursor: str | None = None


@frozen
class LikersOfItem:
    """playback → counter_writer: ``LikersAsked`` with its item known."""

    reply: ReplyTo
    namespace: str
    video_id: str
    limit: int
    cursor: str | None = None


@frozen
class UserLikesAsked:
    """gateway → counter_writer: what a user liked, a page at a time."""

    reply: ReplyTo
    namespace: str
    user: str  # folded
    limit: int
    cursor: str | None = None
    username: str = ""  # as asked: the answer's name for a user never seen


@frozen
class NowPlayingAsked:
    reply: ReplyTo


@frozen
class TopAsked:
    reply: ReplyTo
    namespace: str
    ranking: Literal["liked", "played", "curators"]
    limit: int = 10
    window: Literal["all", "day", "week", "month"] = "all"


@frozen
class ActivityAsked:
    """HTTP → counter writer: the channel's likes and plays by UTC hour, the
    last ``hours`` of them (the dashboard's chart; no NATS command asks it)."""

    reply: ReplyTo
    namespace: str
    hours: int = 168


@frozen
class StatsAsked:
    reply: ReplyTo
    namespace: str
    video_id: str | None = None
    playlist_id: str | None = None


@frozen
class AdjustRequested:
    """gateway → counter_writer: an operator sets one count of an item (and says why)."""

    reply: ReplyTo
    namespace: str
    video_id: str
    field: Literal["like_count", "play_count"]
    value: int
    reason: str
    by: str | None = None


# --- the like path --------------------------------------------------------------


@frozen
class LikeAllowed:
    """rate_buckets → playback: the user had a token."""

    reply: ReplyTo
    namespace: str
    user: str
    video_id: str | None = None
    username: str = ""


@frozen
class LikeForItem:
    """playback → dedupe_ledger: the like is for what plays now."""

    reply: ReplyTo
    namespace: str
    user: str
    media: Media
    username: str = ""
    play_at: float = 0.0  # when the play it is given on started
    curator: str | None = None  # who queued that play (as typed), if known


@frozen
class LikeReserved:
    """dedupe_ledger → counter_writer: count this like (claim None: dedupe is off)."""

    reply: ReplyTo
    namespace: str
    media: Media
    claim: Claim | None = None
    user: str = ""
    username: str = ""
    play_at: float = 0.0
    curator: str | None = None


@frozen
class LikeDuplicate:
    """dedupe_ledger → counter_writer: answer ``duplicate`` with the current count."""

    reply: ReplyTo
    namespace: str
    media: Media
    user: str = ""


@frozen
class ClaimsSettled:
    """counter_writer → dedupe_ledger: which reservations became durable claims."""

    confirmed: tuple[Claim, ...] = ()
    released: tuple[Claim, ...] = ()
    withdrawn: tuple[Claim, ...] = ()  # unliked: stored as expired, a later like counts again


# --- plays, and the counter writer's own outcomes ------------------------------


@frozen
class MediaChanged:
    """A ``changeMedia`` seen on the bus (or replayed from the event stream)."""

    media: Media
    current_time: float = 0.0
    event: EventRef | None = None
    uid: str | None = None  # the playlist entry, when the bridge's event names it


@frozen
class PlayStarted:
    """playback → counter_writer: a new start of an item; count it once."""

    namespace: str
    media: Media
    at: float
    event: EventRef | None = None
    curator: str | None = None  # who queued the entry (as typed), if known


@frozen
class EventPassed:
    """playback → counter_writer: an event that counts nothing; ack it when safe."""

    event: EventRef


@frozen
class Rewind:
    """supervisor → playback, when counter_writer died: forget plays that were
    not stored and start again from what KV holds (their events come back)."""

    media: Media | None
    started_at: float
    last_seq: int
    epoch: int = 0  # events of older readings of the stream are dropped
    curator: str | None = None


@frozen
class CommitFinished:
    """A commit task → its counter_writer: how a group's atomic batch ended."""

    group_id: str
    outcome: Any  # store.Landed | store.Conflict


@frozen
class Tick:
    """Time passed: expire, evict, materialise."""


# The queue applies' and the playlist entries' messages live in modules of
# their own; every message is importable from here.
from .entry_messages import EntryPlaying, EntryQueued, EventsPublished  # noqa: E402
from .queue_messages import (  # noqa: E402
    ApplyFinished, ApplyProgress, ApplyRequested, EnqueueAnswered, EnqueueRefused, EnqueuesInFlight, EnqueueStarted,
    QueueConfirmed, QueueObserved, WriterRestarted,
)

__all__ = [
    "AdjustRequested", "ApplyFinished", "ApplyItem", "ApplyProgress", "ApplyRequested", "Claim", "ClaimsSettled",
    "CommitFinished", "EnqueueAnswered", "EnqueueRefused", "EnqueueStarted", "EnqueuesInFlight", "EntryPlaying",
    "EntryQueued", "EventPassed", "EventsPublished", "EventRef", "Inbound", "LikeAllowed", "LikeDuplicate",
    "LikeForItem", "LikeRequested", "LikeReserved", "LikersAsked", "LikersOfItem", "Media", "MediaChanged",
    "NowPlayingAsked", "PlayStarted", "QueueConfirmed", "QueueObserved", "ReplyTo", "Rewind", "StatsAsked", "Tick", "TopAsked",
    "UnlikeAllowed", "UnlikeForItem", "UnlikeRequested", "UserLikesAsked", "WriterRestarted",
]
