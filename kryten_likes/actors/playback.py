"""playback: what the channel is playing now, and which changes are new plays.

Theory of operation
-------------------
A ``changeMedia`` is a new play unless it names the item already playing and
its ``currentTime`` is above 0: the bridge re-sends the current media when it
reconnects, mid-item. The same item from ``currentTime`` 0 is a replay and
counts; a different item counts whatever its ``currentTime`` (docs/contract.md).

Events come from the daemon's event stream with their stream sequence. One
already seen (``seq <= last_seq``: redelivered after a slow ack) changes
nothing; it goes to the counter writer as ``EventPassed``, which acks it
unless its first delivery still waits to be stored. If the counter writer
dies with plays unstored, the stream is read again from what KV holds (a new
*epoch*, see ``events.EventFeed``), the supervisor sends ``Rewind`` with the
stored state, and events of the older epoch still in the mailbox are dropped:
they come again, in order, and are judged again.

Transitions::

    state \\ event          same item, t>0    same item, t=0    other item
    nothing playing        play              play              play
    item X playing         pass              play (replay)     play
"""

from __future__ import annotations

import attrs

from .. import wire
from ..messages import (
    EntryPlaying, EntryQueued, EventPassed, LikeAllowed, LikeForItem, LikersAsked, LikersOfItem, Media, MediaChanged, NowPlayingAsked,
    PlayStarted, Rewind, UnlikeAllowed, UnlikeForItem,
)
from ..clock import iso
from .playlist_entries import PlaylistEntries


@attrs.frozen
class NowPlaying:
    media: Media
    started_at: float
    curator: str | None = None  # who queued the entry playing (playlist_entries)


class Playback:
    def __init__(self, namespace: str, current: NowPlaying | None = None, last_seq: int = 0,
                 epoch: int = 0, entries: PlaylistEntries | None = None) -> None:
        self.namespace = namespace
        self.entries = entries if entries is not None else PlaylistEntries()
        self.current = current
        self.last_seq = last_seq
        self.epoch = epoch  # events from an older reading of the stream come again: drop them

    def is_new_play(self, change: MediaChanged) -> bool:
        cur = self.current
        if cur is None:
            return True
        same = cur.media.video_id == change.media.video_id and cur.media.media_type == change.media.media_type
        return not (same and change.current_time > 0)

    def held_requests(self) -> list:
        return []  # each request it takes is answered or passed on in the same step

    def step(self, msg: object, now: float) -> list:
        if isinstance(msg, LikeAllowed):
            return self._like(msg)
        if isinstance(msg, MediaChanged):
            return self._media_changed(msg, now)
        if isinstance(msg, EntryQueued):
            self.entries.queued(msg.uid, msg.media, msg.queued_by)
            return []
        if isinstance(msg, EntryPlaying):
            self.entries.playing(msg.uid)
            return []
        if isinstance(msg, Rewind):
            self.current = NowPlaying(msg.media, msg.started_at, msg.curator) if msg.media is not None else None
            self.last_seq = msg.last_seq
            self.epoch = max(self.epoch, msg.epoch)
            return []
        if isinstance(msg, LikersAsked):
            return self._likers(msg)
        if isinstance(msg, UnlikeAllowed):
            if msg.video_id is not None:  # any item: a like of it may have been given on an earlier play
                return [UnlikeForItem(msg.reply, msg.namespace, msg.user, Media(msg.video_id), msg.username)]
            if self.current is None:
                return [wire.error(msg.reply, "no_current_item", "nothing is playing")]
            return [UnlikeForItem(msg.reply, msg.namespace, msg.user, self.current.media, msg.username)]
        if isinstance(msg, NowPlayingAsked):
            cur = self.current
            if cur is None:
                return [wire.ok(msg.reply, video_id=None, title=None, started_at=None)]
            return [wire.ok(msg.reply, video_id=cur.media.video_id, title=cur.media.title,
                            started_at=iso(cur.started_at))]
        raise TypeError(f"playback cannot take {msg!r}")

    def _like(self, msg: LikeAllowed) -> list:
        cur = self.current
        if cur is None:
            return [wire.error(msg.reply, "no_current_item", "nothing is playing")]
        if msg.video_id is not None and msg.video_id != cur.media.video_id:
            return [wire.error(msg.reply, "not_current", "something else plays now",
                               video_id=cur.media.video_id)]
        return [LikeForItem(msg.reply, msg.namespace, msg.user, cur.media, msg.username, cur.started_at,
                            cur.curator)]

    def _likers(self, msg: LikersAsked) -> list:
        if msg.video_id is not None:
            return [LikersOfItem(msg.reply, msg.namespace, msg.video_id, msg.limit, msg.cursor)]
        if self.current is None:
            return [wire.error(msg.reply, "no_current_item", "nothing is playing")]
        return [LikersOfItem(msg.reply, msg.namespace, self.current.media.video_id, msg.limit, msg.cursor)]

    def _media_changed(self, msg: MediaChanged, now: float) -> list:
        ev = msg.event
        if ev is not None and ev.epoch < self.epoch:
            return []  # the stream is being read again from what is stored; it comes back
        if ev is not None and ev.stream_seq <= self.last_seq:
            return [EventPassed(ev)]
        if ev is not None:
            self.last_seq = ev.stream_seq
        if not self.is_new_play(msg):
            return [EventPassed(ev)] if ev is not None else []
        curator = self.entries.curator_of(msg.media, msg.uid)
        self.current = NowPlaying(msg.media, now, curator)
        return [PlayStarted(self.namespace, msg.media, now, ev, curator)]
