"""Adjustments (actors/adjustments.py): an operator's correction of a count,
stored by the counter writer's core against the fake KV of
``support.counter_writer_rig`` (which applies batches as the server does:
every expectation holds, or nothing is stored)."""

from __future__ import annotations

import json

from hypothesis import given, settings, strategies as st

from kryten_likes.actors.counter_writer import MAX_CONFLICTS
from kryten_likes.messages import AdjustRequested, CommitFinished, EventRef, PlayStarted, ReplyTo, TopAsked
from kryten_likes.effects import Commit
from kryten_likes.store import Landed, global_key, item_key, likes_key
from support.counter_writer_rig import NS, T0, V1, V2, Rig, replies, reserved, to

AUDIT_FIELDS = {"video_id", "field", "old", "new", "reason", "by", "at", "correlation_id", "schema_version", "batch"}


def adjust(n: int | str, field: str, value: int, video_id: str = "v1", cid: str | None = None) -> AdjustRequested:
    return AdjustRequested(ReplyTo(f"inbox.{n}", cid), NS, video_id, field, value, "bot likes removed", "ops")


def audits(rig: Rig, bucket: str) -> dict[str, dict]:
    return {k: e.value for k, e in rig.kv[bucket].entries.items() if "/audit/" in k}


def test_likes_adjustment_is_one_batch_of_document_and_audit_record():
    rig = Rig()
    rig.seed_likes(V1, 5)
    assert rig.step(adjust(1, "like_count", 2, cid="c-1")) == []  # queued until the flush
    [c] = rig.flush()
    assert c.bucket == "likes"
    doc, record = c.writes
    assert (doc.key, doc.expected_revision) == (likes_key(NS, "v1"), rig.kv["likes"].revision(likes_key(NS, "v1")))
    assert record.key.startswith(f"ns/{NS}/audit/20260101T000000Z-") and record.expected_revision == 0
    assert c.marker_key == record.key  # only this group writes it
    assert json.loads(doc.value)["like_count"] == 2
    [r] = rig.finish(c)
    assert r.body == {"correlation_id": "c-1", "status": "ok", "error": None, "video_id": "v1",
                      "field": "like_count", "old": 5, "new": 2, "audit_key": record.key}
    [(key, value)] = audits(rig, "likes").items()
    assert key == record.key and set(value) == AUDIT_FIELDS
    assert (value["old"], value["new"], value["field"], value["by"], value["reason"], value["schema_version"]) == (
        5, 2, "like_count", "ops", "bot likes removed", 1)
    assert value["at"] == "2026-01-01T00:00:00Z" and value["correlation_id"] == "c-1"
    assert rig.like_doc("v1")["like_count"] == 2 and rig.w.book(NS).like_count("v1") == 2


def test_a_like_after_the_adjustment_counts_from_the_adjusted_value():
    rig = Rig()
    rig.seed_likes(V1, 5)
    rig.step(adjust(1, "like_count", 40))
    [c] = rig.flush()
    rig.finish(c)
    rig.step(reserved(2, V1, "alice"))
    [c2] = rig.flush()
    assert replies(rig.finish(c2))["inbox.2"]["like_count"] == 41
    assert rig.like_doc("v1")["like_count"] == 41


def test_likes_of_the_item_wait_for_an_adjustment_in_flight_and_it_for_them():
    rig = Rig(pipeline_min=1)  # a lone like may go while another group flies
    rig.seed_likes(V1, 5)
    rig.step(adjust(1, "like_count", 10))
    [c] = rig.flush()
    rig.step(reserved(2, V1, "alice"))
    rig.step(reserved(3, V2, "bob"))
    [other] = rig.flush()  # the other item's like goes; v1's waits
    assert likes_key(NS, "v1") not in {w.key for w in other.writes}
    rig.finish(c)
    rig.finish(other)
    [c2] = rig.flush()
    assert replies(rig.finish(c2))["inbox.2"]["like_count"] == 11
    # And the other way round: a correction waits for the likes batch of its document.
    rig.step(reserved(4, V1, "carol"))
    [c3] = rig.flush()
    rig.step(adjust(5, "like_count", 0))
    assert rig.flush() == []
    rig.finish(c3)
    [c4] = rig.flush()
    assert replies(rig.finish(c4))["inbox.5"]["old"] == 12


def test_a_conflict_rereads_and_retries_and_the_reply_says_what_it_replaced():
    rig = Rig()
    rig.seed_likes(V1, 5)
    rig.step(adjust(1, "like_count", 100))
    [c] = rig.flush()
    # A like lands meanwhile (a batch of an earlier life, another writer).
    rig.kv["likes"].put(likes_key(NS, "v1"), {"video_id": "v1", "like_count": 6, "title": "One"})
    assert rig.finish(c) == []  # nothing stored; tried again
    assert rig.w.book(NS).like_count("v1") == 6  # the book took what KV holds
    [c2] = rig.flush()
    assert c2.writes[1].key == c.writes[1].key  # the same audit record, created once
    [r] = rig.finish(c2)
    assert (r.body["old"], r.body["new"]) == (6, 100)
    [record] = audits(rig, "likes").values()
    assert record["old"] == 6 and rig.like_doc("v1")["like_count"] == 100


def test_an_adjustment_gives_up_after_max_conflicts():
    rig = Rig()
    rig.seed_likes(V1, 5)
    rig.step(adjust(1, "like_count", 100))
    out: list = []
    for i in range(MAX_CONFLICTS):
        [c] = rig.flush()
        rig.kv["likes"].put(likes_key(NS, "v1"), {"video_id": "v1", "like_count": 6 + i})
        out = rig.finish(c)
    [r] = out
    assert (r.body["status"], r.body["error"]) == ("error", "internal_error")
    assert rig.flush() == [] and audits(rig, "likes") == {}


def test_plays_adjustment_moves_the_item_not_the_global_counters():
    rig = Rig()
    rig.step(PlayStarted(NS, V1, T0, EventRef(1)))
    [p] = rig.flush()
    rig.finish(p)
    global_before = rig.kv["analytics"].value(global_key(NS))
    rig.step(adjust(1, "play_count", 7))
    rig.step(PlayStarted(NS, V2, T0 + 1, EventRef(2)))
    [c] = rig.flush()  # the correction takes the analytics slot: the play waits
    assert c.bucket == "analytics" and [w.key for w in c.writes][0] == item_key(NS, "v1")
    assert global_key(NS) not in {w.key for w in c.writes}
    [r] = rig.finish(c)
    assert (r.body["field"], r.body["old"], r.body["new"]) == ("play_count", 1, 7)
    assert rig.kv["analytics"].value(global_key(NS)) == global_before  # items_played counts events
    item = rig.kv["analytics"].value(item_key(NS, "v1"))
    assert item["play_count"] == 7 and item["last_played_at"] == "2026-01-01T00:00:00Z"
    [top] = rig.step(TopAsked(to(9), NS, "played", 10))
    assert top.body["items"][0] == {"video_id": "v1", "title": "One", "count": 7}
    [p2] = rig.flush()
    rig.finish(p2)
    rig.step(PlayStarted(NS, V1, T0 + 2, EventRef(3)))
    [p3] = rig.flush()
    rig.finish(p3)
    assert rig.kv["analytics"].value(item_key(NS, "v1"))["play_count"] == 8


def test_rankings_follow_an_adjustment_down():
    rig = Rig()
    rig.seed_likes(V1, 9)
    rig.seed_likes(V2, 4)
    rig.step(adjust(1, "like_count", 1))
    [c] = rig.flush()
    rig.finish(c)
    [top] = rig.step(TopAsked(to(2), NS, "liked", 10))
    assert [(i["video_id"], i["count"]) for i in top.body["items"]] == [("v2", 4), ("v1", 1)]


def test_corrections_not_answered_are_held_for_the_supervisor():
    rig = Rig()
    rig.seed_likes(V1, 1)
    rig.step(adjust(1, "like_count", 3))
    rig.step(adjust(2, "like_count", 4))  # waits behind the first: the same document
    [c] = rig.flush()
    assert [a.reply.subject for a in rig.w.held_adjusts()] == ["inbox.2", "inbox.1"]
    rig.finish(c)
    [c2] = rig.flush()
    assert [a.reply.subject for a in rig.w.held_adjusts()] == ["inbox.2"]
    assert replies(rig.finish(c2))["inbox.2"]["old"] == 3
    assert rig.w.held_adjusts() == []


# --- a property: whatever the interleaving, no write is lost --------------------------------------

ops = st.lists(st.one_of(
    st.tuples(st.just("like"), st.integers(1, 3)),       # n likes of v1 by new users
    st.tuples(st.just("adjust"), st.integers(0, 30)),    # set like_count
    st.tuples(st.just("external"), st.integers(0, 30)),  # someone else writes the document
    st.tuples(st.just("finish"), st.integers(0, 5)),     # one commit in flight ends
), max_size=30)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_likes_adjustments_and_foreign_writes_interleaved(script):
    rig = Rig()
    rig.seed_likes(V1, 3)
    key = likes_key(NS, "v1")
    truth = 3  # the count, following every write in the order KV stored it
    flying: list[Commit] = []
    answered: dict[str, dict] = {}
    users = iter(range(10**6))

    def land(commit: Commit) -> None:
        nonlocal truth
        outcome = rig.kv["likes"].apply(commit)
        if isinstance(outcome, Landed) and key in outcome.revisions:
            written = rig.kv["likes"].value(key)["like_count"]
            record = next((json.loads(w.value) for w in commit.writes if "/audit/" in w.key), None)
            if record is not None:  # a correction replaced exactly what was there
                assert record["old"] == truth and written == record["new"]
            else:  # likes added to exactly what was there
                assert written == truth + sum("/dedupe/" in w.key for w in commit.writes)
            truth = written
        effects = rig.step(CommitFinished(commit.group_id, outcome))
        flying.extend(e for e in effects if isinstance(e, Commit))
        answered.update(replies(effects))

    for op, n in script:
        if op == "like":
            for _ in range(n):
                rig.step(reserved(f"l{next(users)}", V1, f"u{next(users)}"))
        elif op == "adjust":
            rig.step(adjust(f"a{next(users)}", "like_count", n))
        elif op == "external":
            rig.kv["likes"].put(key, {"video_id": "v1", "like_count": n})
            truth = n
        else:
            flying.extend(rig.flush())
            if flying:
                land(flying.pop(n % len(flying)))
    for _ in range(1000):  # drain
        flying.extend(rig.flush())
        if not flying:
            break
        land(flying.pop(0))
    assert rig.like_doc("v1")["like_count"] == truth
    assert rig.w.held_adjusts() == [] and not rig.w.likes.pending
    for subject, body in answered.items():
        if subject.startswith("inbox.a") and body["status"] == "ok":
            assert audits(rig, "likes")[body["audit_key"]]["old"] == body["old"]
