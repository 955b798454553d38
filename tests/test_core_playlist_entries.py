"""Who curated a play (actors/playlist_entries.py) and playback passing it on
with the play and with every like given on it."""

from __future__ import annotations

from kryten_likes.actors.playback import Playback
from kryten_likes.actors.playlist_entries import MAX_ENTRIES, PlaylistEntries
from kryten_likes.messages import (
    EntryPlaying, EntryQueued, LikeAllowed, LikeForItem, Media, MediaChanged, PlayStarted, ReplyTo, Rewind,
)

A, B = Media("a", "yt", "A"), Media("b", "yt", "B")


def test_the_entry_named_then_the_current_one_then_the_newest_of_the_media():
    e = PlaylistEntries([("1", A, "Ann"), ("2", A, "Bob"), ("3", B, "Cy")])
    assert e.curator_of(A) == "Bob"  # newest entry of the media
    e.playing("1")
    assert e.curator_of(A) == "Ann"  # setCurrent names it
    assert e.curator_of(B) == "Cy"  # the current entry holds other media: by media
    assert e.curator_of(A, uid="2") == "Bob"  # the change names its entry
    assert e.curator_of(Media("a", "vm")) is None  # same id, other type: not the same media
    assert e.curator_of(Media("zzz", "yt")) is None


def test_entries_are_bounded_oldest_first():
    e = PlaylistEntries()
    for i in range(MAX_ENTRIES + 5):
        e.queued(str(i), Media(f"v{i}", "yt"), f"u{i}")
    assert len(e.by_uid) == MAX_ENTRIES
    assert e.curator_of(Media("v0", "yt")) is None
    assert e.curator_of(Media(f"v{MAX_ENTRIES + 4}", "yt")) == f"u{MAX_ENTRIES + 4}"


def test_playback_credits_the_play_and_the_likes_given_on_it():
    p = Playback("ns")
    assert p.step(EntryQueued("7", A, "Kim"), 1.0) == []
    assert p.step(EntryPlaying("7"), 1.0) == []
    [play] = p.step(MediaChanged(A), 2.0)
    assert isinstance(play, PlayStarted) and play.curator == "Kim"
    [like] = p.step(LikeAllowed(ReplyTo("inbox.1"), "ns", "x", None, "X"), 3.0)
    assert isinstance(like, LikeForItem) and (like.curator, like.play_at) == ("Kim", 2.0)
    p.step(Rewind(B, 5.0, 0, curator="Lee"), 6.0)  # after a writer restart: what KV holds
    [like] = p.step(LikeAllowed(ReplyTo("inbox.2"), "ns", "x", None, "X"), 7.0)
    assert like.curator == "Lee"
    [play] = p.step(MediaChanged(B), 8.0)  # no entry known for b: no one
    assert play.curator is None
