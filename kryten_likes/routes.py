"""Where each message goes: one table from message class to mailbox.

A core returns the messages it sends; ``Router.send`` (mailboxes.py) reads
the mailbox here. The table is the whole map of what each actor hears.
"""

from __future__ import annotations

from .messages import (
    ActivityAsked, AdjustRequested, ApplyFinished, ApplyProgress, ApplyRequested, ClaimsSettled, CommitFinished, EnqueueAnswered,
    EnqueueRefused, EnqueueStarted, EnqueuesInFlight, EntryPlaying, EntryQueued, EventPassed, EventsPublished,
    Inbound, LikeAllowed, LikeDuplicate, LikeForItem, LikeRequested, LikeReserved, LikersAsked, LikersOfItem, MediaChanged, NowPlayingAsked,
    PlayStarted, QueueConfirmed, QueueObserved, Rewind, StatsAsked, TopAsked, UnlikeAllowed, UnlikeForItem,
    UnlikeRequested, UserLikesAsked, WriterRestarted,
)


# Each actor's inbox: the message classes it takes. A core returns the
# messages it sends and the router looks the mailbox up here. (A Tick is the
# one message sent to several: the ticker addresses it, Router.tick.)
INBOXES: dict[str, tuple[type, ...]] = {
    "gateway": (Inbound,),
    "rate_buckets": (LikeRequested, UnlikeRequested),
    "playback": (LikeAllowed, NowPlayingAsked, MediaChanged, Rewind, LikersAsked, UnlikeAllowed, EntryQueued,
                 EntryPlaying),
    "dedupe_ledger": (LikeForItem, ClaimsSettled),
    "counter_writer": (ActivityAsked, LikeReserved, LikeDuplicate, TopAsked, StatsAsked, AdjustRequested, CommitFinished,
                       PlayStarted, EventPassed, QueueObserved, EnqueueStarted, EnqueueRefused, QueueConfirmed,
                       ApplyFinished, EnqueuesInFlight, LikersOfItem, UserLikesAsked, UnlikeForItem, EventsPublished),
    "apply": (ApplyRequested, ApplyProgress, EnqueueAnswered, WriterRestarted),
}
MAILBOX: dict[type, str] = {cls: actor for actor, classes in INBOXES.items() for cls in classes}

# Requests: each carries its envelope (``reply``) from actor to actor; whoever
# holds one when it dies has it answered by the supervisor.
REQUESTS = (Inbound, LikeRequested, NowPlayingAsked, TopAsked, StatsAsked, AdjustRequested, LikeAllowed,
            LikeForItem, LikeReserved, LikeDuplicate, ApplyRequested, ApplyFinished, LikersAsked, LikersOfItem,
            UserLikesAsked, UnlikeRequested, UnlikeAllowed, UnlikeForItem, ActivityAsked)


def mailbox_of(message: object) -> str:
    try:
        return MAILBOX[type(message)]
    except KeyError:
        raise TypeError(f"no actor takes {type(message).__name__}") from None


def is_request(message: object) -> bool:
    return isinstance(message, REQUESTS)
