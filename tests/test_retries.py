"""A like retried with the same correlation_id (after a timeout, a crash, a
restart) gets its original outcome and never counts twice."""

from __future__ import annotations

import json

import anyio
import pytest
from conftest import playing, unique_config

from kryten_likes.store import LIKES_BUCKET, likes_key


@pytest.mark.parametrize("dedupe", [True, False])
def test_retry_gets_the_original_outcome_also_after_a_restart(harness, dedupe):
    h = harness(unique_config(dedupe_enabled=dedupe))
    h.change_media("v")
    playing(h, "v")
    first = h.request("like", {"username": "Ann", "correlation_id": "req-1"})
    assert (first["status"], first["like_count"]) == ("ok", 1)
    assert h.request("like", {"username": "bob", "correlation_id": "req-2"})["like_count"] == 2
    again = h.request("like", {"username": "ann", "correlation_id": "req-1"})
    assert again == first
    h.stop()
    h.start()
    assert h.request("like", {"username": "ANN", "correlation_id": "req-1"}) == first
    assert h.kv(LIKES_BUCKET, likes_key(h.config.analytics.namespace, "v"))["like_count"] == 2
    # A new request of the same user is judged on its own.
    r = h.request("like", {"username": "ann", "correlation_id": "req-3"})
    assert r["status"] == ("duplicate" if dedupe else "ok")


def test_the_same_request_sent_many_times_at_once_counts_once(harness):
    h = harness(unique_config(dedupe_enabled=False))
    h.change_media("v")
    playing(h, "v")
    subject = f"{h.config.nats.subject_prefix}.playlist.cmd.like"
    body = json.dumps({"username": "carol", "correlation_id": "same"}).encode()

    async def storm():
        out = []
        async with anyio.create_task_group() as tg:
            async def one():
                out.append(json.loads((await h.nc.request(subject, body, timeout=10)).data))
            for _ in range(20):
                tg.start_soon(one)
        return out

    replies = h.portal.call(storm)
    assert {(r["status"], r["like_count"]) for r in replies} == {("ok", 1)}
    assert h.kv(LIKES_BUCKET, likes_key(h.config.analytics.namespace, "v"))["like_count"] == 1


def test_remembered_requests_are_bounded_oldest_forgotten_first():
    from kryten_likes.actors.request_memory import RequestMemory

    memory = RequestMemory(window_seconds=600, max_remembered=3)
    for i in range(5):
        rk = ("ns", f"u{i}", f"c{i}")
        assert memory.arrive(rk, object())
        memory.settled(rk, {"video_id": "v", "like_count": i + 1}, now=float(i))
    assert len(memory.outcomes) == 3 and memory.forgotten == 2
    assert memory.known(("ns", "u0", "c0"), now=10.0) is None  # the oldest went first
    assert memory.known(("ns", "u4", "c4"), now=10.0) == {"video_id": "v", "like_count": 5}


def test_a_retry_older_than_what_is_remembered_still_gets_its_outcome_and_counts_once(harness):
    # Only 2 outcomes in memory: the first request's is forgotten by the third.
    h = harness(unique_config(dedupe_enabled=False, max_remembered_requests=2))
    h.change_media("v")
    playing(h, "v")
    first = h.request("like", {"username": "ann", "correlation_id": "r1"})
    for i, user in enumerate(["bob", "cy", "dee"], 2):
        assert h.request("like", {"username": user, "correlation_id": f"r{i}"})["like_count"] == i
    # Treated as a new like: its request key in KV answers with the original
    # reply (dedupe off, so nothing else stands in the way of a second count).
    assert h.request("like", {"username": "ann", "correlation_id": "r1"}) == first
    assert h.kv(LIKES_BUCKET, likes_key(h.config.analytics.namespace, "v"))["like_count"] == 4
