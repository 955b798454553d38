"""Playback: which changeMedia is a new play, what a like is for, and event
sequence filtering; a state machine checks plays per item against a model."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from kryten_likes.actors.playback import NowPlaying, Playback
from kryten_likes.clock import iso
from kryten_likes.messages import (
    EventPassed, EventRef, LikeAllowed, LikeForItem, Media, MediaChanged, NowPlayingAsked, PlayStarted,
    ReplyTo, Rewind,
)
from kryten_likes.effects import Reply

T0 = 1_767_225_600.0
X = Media("x1", "yt", "Song X", 200)
Y = Media("y1", "yt", "Song Y", 100)
X_OTHER_TYPE = Media("x1", "vm", "X on another site", 10)


def ev(seq: int) -> EventRef:
    return EventRef(seq, f"$JS.ACK.{seq}")


def allowed(n: int, video_id: str | None = None, user: str = "alice") -> LikeAllowed:
    return LikeAllowed(ReplyTo(f"inbox.{n}", f"c{n}"), "ns1", user, video_id)


def playing(media: Media | None) -> Playback:
    return Playback("ns1", NowPlaying(media, T0 - 50) if media is not None else None)


# --- the transition table ------------------------------------------------------------------

# (state, event media, current_time, is a new play)
TABLE = [
    (None, X, 0.0, True),     # nothing playing: play
    (None, X, 37.5, True),
    (X, X, 12.0, False),      # same item, t>0: the bridge re-sent it
    (X, X, 0.001, False),
    (X, X, 0.0, True),        # same item from 0: a replay
    (X, Y, 0.0, True),        # other item: play whatever its time
    (X, Y, 80.0, True),
    (X, X_OTHER_TYPE, 5.0, True),  # same id on another media type is another item
]


@pytest.mark.parametrize("state,media,t,new", TABLE)
def test_transition_table(state, media, t, new):
    pb = playing(state)
    out = pb.step(MediaChanged(media, t, ev(7)), T0)
    if new:
        assert out == [PlayStarted("ns1", media, T0, ev(7))]
        assert pb.current == NowPlaying(media, T0)
    else:
        assert out == [EventPassed(ev(7))]
        assert pb.current == NowPlaying(state, T0 - 50)  # started_at kept from the real start
    assert pb.last_seq == 7


@pytest.mark.parametrize("state,media,t,new", TABLE)
def test_transition_table_without_event(state, media, t, new):
    pb = playing(state)
    out = pb.step(MediaChanged(media, t, None), T0)
    assert out == ([PlayStarted("ns1", media, T0, None)] if new else [])
    assert pb.last_seq == 0


# --- likes ----------------------------------------------------------------------------------------


def test_like_with_nothing_playing_is_no_current_item():
    [r] = playing(None).step(allowed(1), T0)
    assert isinstance(r, Reply) and r.to == ReplyTo("inbox.1", "c1")
    assert (r.body["status"], r.body["error"], r.body["correlation_id"]) == ("error", "no_current_item", "c1")
    [r] = playing(None).step(allowed(2, "x1"), T0)
    assert r.body["error"] == "no_current_item"


def test_like_for_something_else_is_not_current_with_what_plays():
    [r] = playing(X).step(allowed(1, "y1"), T0)
    assert (r.body["status"], r.body["error"]) == ("error", "not_current")
    assert r.body["video_id"] == "x1"


@pytest.mark.parametrize("video_id", [None, "x1"])
def test_like_for_what_plays_goes_to_the_ledger(video_id):
    out = playing(X).step(allowed(1, video_id, "bob"), T0)
    # With the play it was given on: the like record keeps when that play started.
    assert out == [LikeForItem(ReplyTo("inbox.1", "c1"), "ns1", "bob", X, play_at=T0 - 50)]


def test_like_follows_the_current_item():
    pb = playing(None)
    pb.step(MediaChanged(X, 0.0, ev(1)), T0)
    assert pb.step(allowed(1), T0)[0].media == X
    pb.step(MediaChanged(Y, 3.0, ev(2)), T0 + 1)
    assert pb.step(allowed(2, "x1"), T0 + 1)[0].body["video_id"] == "y1"
    assert pb.step(allowed(3), T0 + 1)[0].media == Y


# --- now playing ------------------------------------------------------------------------------------


def test_now_playing_reply():
    [r] = playing(None).step(NowPlayingAsked(ReplyTo("inbox.1")), T0)
    assert r.body == {"correlation_id": None, "status": "ok", "error": None,
                      "video_id": None, "title": None, "started_at": None}
    pb = playing(None)
    pb.step(MediaChanged(X, 0.0, ev(1)), T0)
    pb.step(MediaChanged(X, 30.0, ev(2)), T0 + 30)  # a re-send does not move started_at
    [r] = pb.step(NowPlayingAsked(ReplyTo("inbox.2", "q")), T0 + 31)
    assert r.body == {"correlation_id": "q", "status": "ok", "error": None,
                      "video_id": "x1", "title": "Song X", "started_at": iso(T0)}
    assert r.body["started_at"] == "2026-01-01T00:00:00Z"


# --- event sequences ------------------------------------------------------------------------------------


def test_event_already_seen_passes_and_is_not_a_play():
    pb = playing(None)
    pb.step(MediaChanged(X, 0.0, ev(5)), T0)
    # A redelivery of seq 5, or anything older, changes nothing even if it would be a play.
    for seq, media in [(5, X), (3, Y), (1, X)]:
        assert pb.step(MediaChanged(media, 0.0, ev(seq)), T0 + 1) == [EventPassed(ev(seq))]
        assert pb.current == NowPlaying(X, T0) and pb.last_seq == 5
    assert pb.step(MediaChanged(Y, 0.0, ev(6)), T0 + 2) == [
        PlayStarted("ns1", Y, T0 + 2, ev(6))]


def test_event_that_is_no_play_still_advances_last_seq():
    pb = playing(None)
    pb.step(MediaChanged(X, 0.0, ev(1)), T0)
    pb.step(MediaChanged(X, 9.0, ev(2)), T0)
    assert pb.last_seq == 2
    assert pb.step(MediaChanged(Y, 0.0, ev(2)), T0) == [EventPassed(ev(2))]


def test_rewind_resets_state_and_events_are_judged_again():
    pb = playing(None)
    pb.step(MediaChanged(X, 0.0, ev(1)), T0)
    pb.step(MediaChanged(Y, 0.0, ev(2)), T0 + 10)
    pb.step(MediaChanged(X, 0.0, ev(3)), T0 + 20)
    # The writer stored only seq 1: back to X from T0, last_seq 1.
    assert pb.step(Rewind(X, T0, 1), T0 + 21) == []
    assert (pb.current, pb.last_seq) == (NowPlaying(X, T0), 1)
    assert pb.step(MediaChanged(Y, 0.0, ev(2)), T0 + 22) == [
        PlayStarted("ns1", Y, T0 + 22, ev(2))]
    assert pb.step(MediaChanged(X, 0.0, ev(3)), T0 + 22) == [
        PlayStarted("ns1", X, T0 + 22, ev(3))]
    # Rewind to nothing.
    pb.step(Rewind(None, 0.0, 0), T0 + 30)
    assert pb.current is None and pb.last_seq == 0
    assert pb.step(allowed(1), T0 + 30)[0].body["error"] == "no_current_item"


def test_rewind_then_resent_media_is_not_a_play():
    pb = playing(None)
    pb.step(Rewind(X, T0, 4), T0 + 5)
    assert pb.step(MediaChanged(X, 44.0, ev(5)), T0 + 6) == [EventPassed(ev(5))]


def test_unknown_message_raises():
    with pytest.raises(TypeError):
        playing(None).step(object(), T0)


# --- stateful -----------------------------------------------------------------------------------------

MEDIA = [X, Y, X_OTHER_TYPE, Media("z1", "yt", "", None)]
TIMES = [0.0, 0.5, 42.0]


class PlaybackMachine(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.pb = Playback("ns1")
        self.now = T0
        self.next_seq = 1
        self.delivered: list[tuple[int, Media, float]] = []
        # the model
        self.current: tuple[Media, float] | None = None
        self.last_seq = 0
        self.plays: Counter = Counter()
        self.seen_plays: Counter = Counter()
        self.n = 0

    def _judge(self, media: Media, t: float, event: EventRef | None) -> list:
        if event is not None and event.stream_seq <= self.last_seq:
            return [EventPassed(event)]
        if event is not None:
            self.last_seq = event.stream_seq
        cur = self.current
        same = cur is not None and (cur[0].video_id, cur[0].media_type) == (media.video_id, media.media_type)
        if same and t > 0:
            return [EventPassed(event)] if event is not None else []
        self.current = (media, self.now)
        self.plays[(media.video_id, media.media_type)] += 1
        return [PlayStarted("ns1", media, self.now, event)]

    def _send(self, media: Media, t: float, event: EventRef | None) -> None:
        expected = self._judge(media, t, event)
        out = self.pb.step(MediaChanged(media, t, event), self.now)
        assert out == expected, (out, expected)
        for eff in out:
            if isinstance(eff, PlayStarted):
                self.seen_plays[(eff.media.video_id, eff.media.media_type)] += 1

    @rule(media=st.sampled_from(MEDIA), t=st.sampled_from(TIMES), with_event=st.booleans())
    def change_media(self, media: Media, t: float, with_event: bool) -> None:
        event = None
        if with_event:
            event = ev(self.next_seq)
            self.delivered.append((self.next_seq, media, t))
            self.next_seq += 1
        self._send(media, t, event)

    @precondition(lambda self: self.delivered)
    @rule(data=st.data())
    def redeliver(self, data) -> None:
        seq, media, t = data.draw(st.sampled_from(self.delivered))
        self._send(media, t, ev(seq))

    @rule(data=st.data())
    def rewind(self, data) -> None:
        media = data.draw(st.none() | st.sampled_from(MEDIA))
        last = data.draw(st.integers(0, self.next_seq - 1))
        started = self.now - data.draw(st.sampled_from([0.0, 10.0]))
        assert self.pb.step(Rewind(media, started, last), self.now) == []
        self.current = (media, started) if media is not None else None
        self.last_seq = last

    @rule(video_id=st.none() | st.sampled_from(["x1", "y1", "z1", "nope"]))
    def like(self, video_id: str | None) -> None:
        self.n += 1
        [out] = self.pb.step(allowed(self.n, video_id), self.now)
        if self.current is None:
            assert out.body["error"] == "no_current_item"
        elif video_id is not None and video_id != self.current[0].video_id:
            assert out.body["error"] == "not_current"
            assert out.body["video_id"] == self.current[0].video_id
        else:
            assert out == LikeForItem(allowed(self.n).reply, "ns1", "alice", self.current[0],
                                      play_at=self.current[1])

    @rule()
    def now_playing(self) -> None:
        [r] = self.pb.step(NowPlayingAsked(ReplyTo("inbox.np")), self.now)
        if self.current is None:
            assert r.body["video_id"] is None and r.body["started_at"] is None
        else:
            assert r.body["video_id"] == self.current[0].video_id
            assert r.body["title"] == self.current[0].title
            assert r.body["started_at"] == iso(self.current[1])

    @rule(dt=st.sampled_from([0.0, 1.0, 30.0]))
    def advance(self, dt: float) -> None:
        self.now += dt

    @invariant()
    def plays_agree(self) -> None:
        if not hasattr(self, "pb"):
            return
        assert self.seen_plays == self.plays
        assert self.pb.last_seq == self.last_seq
        cur = self.pb.current
        assert (None if cur is None else (cur.media, cur.started_at)) == self.current


PlaybackMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestPlaybackAgainstModel = PlaybackMachine.TestCase
