"""Unlikes in the counter writer's core (actors/unlikes.py), against the fake KV."""

from __future__ import annotations

from kryten_likes.clock import parse_iso
from kryten_likes.messages import ClaimsSettled, ReplyTo, UnlikeForItem
from kryten_likes.store import likes_key
from kryten_likes.store.keys import dedupe_key, record_key
from support.counter_writer_rig import NS, V1, Rig, replies, reserved


def unlike(n, user: str = "ann", media=V1, cid: str | None = None) -> UnlikeForItem:
    return UnlikeForItem(ReplyTo(f"inbox.{n}", cid), NS, user, media, user.title())


def liked(rig: Rig, n: int, user: str = "ann") -> None:
    rig.step(reserved(n, V1, user))
    [c] = rig.flush()
    assert replies(rig.finish(c))[f"inbox.{n}"]["status"] == "ok"


def test_an_unlike_within_the_window_takes_the_like_back_everywhere_in_one_batch():
    rig = Rig()
    liked(rig, 1)
    liked(rig, 2, "bob")
    rig.now += 60
    assert rig.step(unlike(3)) == []
    [c] = rig.flush()
    assert c.marker_key == record_key(NS, "v1", "ann")
    out = rig.finish(c)
    assert replies(out)["inbox.3"] == {"correlation_id": None, "status": "ok", "error": None, "video_id": "v1",
                                      "like_count": 1}
    [settled] = [e for e in out if isinstance(e, ClaimsSettled)]
    assert [(c.video_id, c.user) for c in settled.withdrawn] == [("v1", "ann")]
    kv = rig.kv["likes"]
    assert kv.value(likes_key(NS, "v1"))["like_count"] == 1
    assert kv.likes_given(NS, "ann") == 0
    assert kv.value(record_key(NS, "v1", "ann"))["likes_given"] == 0  # the totals ride on the record
    assert kv.value(record_key(NS, "v1", "ann"))["unliked_at"] is not None
    claim = kv.value(dedupe_key(NS, "v1", "ann"))
    assert parse_iso(claim["expires_at"]) <= rig.now  # expired: a later like counts again
    assert rig.w.peek(NS).like_count("v1") == 1


def test_never_liked_twice_and_too_late_are_refused_and_change_nothing():
    rig = Rig(unlike_window=600.0)
    assert replies(rig.step(unlike(1)) + rig.flush())["inbox.1"]["error"] == "not_liked"
    liked(rig, 2)
    [c] = rig.step(unlike(3)) + rig.flush()
    rig.finish(c)
    assert replies(rig.step(unlike(4)) + rig.flush())["inbox.4"]["error"] == "not_liked"  # twice
    liked(rig, 5, "bob")
    rig.now += 600
    assert replies(rig.step(unlike(6, "bob")) + rig.flush())["inbox.6"]["error"] == "unlike_window_passed"
    assert rig.kv["likes"].value(likes_key(NS, "v1"))["like_count"] == 1


def test_an_unlike_waits_for_its_like_to_be_stored():
    rig = Rig()
    rig.step(reserved(1, V1, "ann"))
    rig.step(unlike(2))
    [like_batch] = rig.flush()  # the unlike waits: its like is not stored yet
    out = rig.finish(like_batch)
    assert replies(out)["inbox.1"]["like_count"] == 1
    [unlike_batch] = rig.flush()
    assert replies(rig.finish(unlike_batch))["inbox.2"]["like_count"] == 0


def test_a_retried_unlike_gets_the_original_reply_and_counts_nothing():
    rig = Rig()
    liked(rig, 1)
    liked(rig, 2, "bob")
    [c] = rig.step(unlike(3, cid="u-1")) + rig.flush()
    first = replies(rig.finish(c))["inbox.3"]
    again = replies(rig.step(unlike(4, cid="u-1")) + rig.flush())["inbox.4"]
    assert (first["like_count"], again) == (1, {**first, "correlation_id": "u-1"})
    assert rig.kv["likes"].value(likes_key(NS, "v1"))["like_count"] == 1


def test_someone_else_writing_the_count_makes_the_unlike_try_again_from_what_kv_holds():
    rig = Rig()
    liked(rig, 1)
    [c] = rig.step(unlike(2)) + rig.flush()
    rig.kv["likes"].put(likes_key(NS, "v1"), {"video_id": "v1", "like_count": 5, "title": "One"})
    assert rig.finish(c) == []
    [again] = rig.flush()
    assert replies(rig.finish(again))["inbox.2"]["like_count"] == 4
