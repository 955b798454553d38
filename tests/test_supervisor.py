"""Supervision: one-for-one restarts, internal_error for requests inside a
crashed actor, and giving up when the restart intensity is exceeded."""

from __future__ import annotations

import pytest
from conftest import plays_of, unique_config, wait_until

from kryten_likes.messages import LikeForItem, LikeReserved, StatsAsked, TopAsked
from kryten_likes.supervisor import RestartPolicy, SupervisorGaveUp, backoff, restart_allowed

POLICY = RestartPolicy(max_restarts=3, period_seconds=10.0, backoff_initial_seconds=0.1, backoff_max_seconds=1.0)


def test_restart_window_is_a_pure_function():
    ok, w = restart_allowed((), 100.0, POLICY)
    assert ok and w == (100.0,)
    ok, w = restart_allowed((100.0, 101.0), 102.0, POLICY)
    assert ok and len(w) == 3
    ok, w = restart_allowed(w, 103.0, POLICY)
    assert not ok
    # Old failures leave the window.
    ok, w = restart_allowed((100.0, 101.0, 102.0), 111.5, POLICY)
    assert ok and w == (102.0, 111.5)


def test_backoff_doubles_up_to_its_cap():
    assert [backoff(n, POLICY) for n in (1, 2, 3, 4, 5, 6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


class FailOnce:
    def __init__(self, actor: str, kind: type) -> None:
        self.actor, self.kind, self.fired = actor, kind, 0

    def __call__(self, actor: str, msg: object) -> bool:
        if actor == self.actor and isinstance(msg, self.kind) and not self.fired:
            self.fired += 1
            return True
        return False


@pytest.mark.parametrize("actor,kind", [("dedupe_ledger", LikeForItem), ("counter_writer", LikeReserved)])
def test_crashed_actor_answers_internal_error_and_is_restarted(harness, actor, kind):
    fault = FailOnce(actor, kind)
    h = harness(fault=fault)
    h.change_media("v")
    wait_until(lambda: plays_of(h, "v") == 1)  # stored: a writer restart rewinds to what is stored
    r = h.request("like", {"username": "alice", "correlation_id": "boom"})
    assert (r["status"], r["error"], r["correlation_id"]) == ("error", "internal_error", "boom")
    assert fault.fired == 1
    # The restarted actor serves the next request; the failed like changed nothing.
    r = h.request("like", {"username": "alice"})
    assert (r["status"], r["like_count"]) == ("ok", 1), r
    assert h.daemon.supervisor.restarts[actor] == 1


def test_restart_intensity_exceeded_stops_the_daemon(harness):
    h = harness(unique_config(), fault=lambda actor, msg: actor == "counter_writer" and isinstance(msg, StatsAsked))
    for _ in range(4):  # max_restarts=3 within 5 s in unique_config
        r = h.request("stats", {})
        assert r["error"] == "internal_error"
    with pytest.raises(BaseException) as info:
        h._future.result(timeout=10)
    group = info.value
    assert isinstance(group, BaseExceptionGroup) and group.subgroup(SupervisorGaveUp) is not None
    h.daemon = None


def test_a_restarted_writer_moves_the_journals_fence_before_it_reads_kv(harness):
    """A journal entry its dead predecessor sent that has not reached the
    stream yet must not land after the new writer read KV: no incarnation
    would count it now, and a later start would (a retry counted meanwhile
    would then count twice). So the new writer moves the journal's fence
    first: a write expecting the old fence is refused, and the daemon stays
    the active one (its own writes land). It moves the fence of the other
    buckets it writes too: a batch there would be refused by its
    expectations, or found by the journal's mark, but need not be."""
    import json


    from conftest import playing
    from kryten_likes.store.batch import WRONG_LAST_SEQUENCE
    from kryten_likes.store.keys import JOURNAL_BUCKET

    h = harness(fault=FailOnce("counter_writer", TopAsked))
    h.change_media("v")
    playing(h, "v")
    wait_until(lambda: plays_of(h, "v") == 1)  # stored: a writer restart rewinds to what is stored
    assert h.request("like", {"username": "first"})["like_count"] == 1
    s = h.daemon.surroundings
    journal = s.journal
    before = journal.fence
    others = {b.bucket: b.fence.revision for b in (s.analytics, s.likes)}
    assert h.request("top_liked", {})["error"] == "internal_error"  # the writer dies and is started again
    r = h.request("like", {"username": "second", "correlation_id": "c2"})
    assert r.get("like_count") == 2, r
    assert h.daemon.supervisor.restarts["counter_writer"] == 1
    assert journal.fence.key == before.key and journal.fence.revision > before.revision
    assert all(b.fence.revision > others[b.bucket] for b in (s.analytics, s.likes)), "every bucket it writes"

    async def late_entry() -> dict:
        """What the dead writer would have sent: an entry expecting the fence it knew."""
        ns = h.config.analytics.namespace
        headers = {"Nats-Expected-Last-Subject-Sequence": str(before.revision),
                   "Nats-Expected-Last-Subject-Sequence-Subject": f"$KV.{JOURNAL_BUCKET}.{before.key}"}
        reply = await h.nc.request(f"$KV.{JOURNAL_BUCKET}.ns/{ns}/journal/late", b"{}", headers=headers, timeout=5)
        return json.loads(reply.data)
    assert h.portal.call(late_entry)["error"]["err_code"] == WRONG_LAST_SEQUENCE
    assert h.daemon.role == "active" and not journal.fence_moved
    assert h.request("like", {"username": "third"})["like_count"] == 3
    assert h.kv("kryten_playlist_likes", f"ns/{h.config.analytics.namespace}/items/v/likes")["like_count"] == 3
