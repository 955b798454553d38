"""CON-001: counts, rankings and the now-playing item survive a restart;
events that arrive while the daemon is down are counted once when it returns."""

from __future__ import annotations

import json

import anyio
from conftest import playing, plays_of, wait_until


def _likes(h, users):
    subject = f"{h.config.nats.subject_prefix}.playlist.cmd.like"

    async def go():
        out = []
        async with anyio.create_task_group() as tg:
            async def one(u):
                m = await h.nc.request(subject, json.dumps({"username": u}).encode(), timeout=10)
                out.append(json.loads(m.data))
            for u in users:
                tg.start_soon(one, u)
        return out
    return h.portal.call(go)


def test_stop_and_start_keeps_counts_rankings_and_now_playing(harness):
    h = harness()
    h.change_media("a", title="A")
    playing(h, "a")
    assert all(r["status"] == "ok" for r in _likes(h, [f"u{i}" for i in range(7)]))
    h.change_media("b", title="B")
    playing(h, "b")
    assert all(r["status"] == "ok" for r in _likes(h, [f"u{i}" for i in range(3)]))
    h.change_media("a", title="A")
    wait_until(lambda: plays_of(h, "a") == 2)
    before = {c: h.request(c, {}) for c in ("top_liked", "top_played", "now_playing", "stats")}

    h.stop()
    h.start()
    after = {c: h.request(c, {}) for c in ("top_liked", "top_played", "now_playing", "stats")}
    assert after == before
    assert [i["count"] for i in after["top_liked"]["items"]] == [7, 3]
    # Dedupe survives too: the same users are duplicates, a new one counts.
    assert {r["status"] for r in _likes(h, ["u1", "U2"])} == {"duplicate"}
    assert _likes(h, ["new"])[0]["like_count"] == 8
    # The re-sent current item after a restart is still not a new play.
    h.change_media("a", title="A", current_time=12.0)
    h.change_media("c")
    wait_until(lambda: plays_of(h, "c") == 1)
    assert plays_of(h, "a") == 2


def test_plays_published_while_down_are_counted_once_after_restart(harness):
    h = harness()
    h.change_media("a")
    wait_until(lambda: plays_of(h, "a") == 1)
    h.stop()
    for vid in ("b", "c", "b"):
        h.change_media(vid)
    h.start()
    wait_until(lambda: plays_of(h, "b") == 2)
    assert plays_of(h, "c") == 1 and plays_of(h, "a") == 1
    assert h.request("now_playing", {})["video_id"] == "b"
    h.stop()
    h.start()  # nothing is replayed twice
    assert h.request("stats", {})["global"]["items_played"] == 4
    assert plays_of(h, "b") == 2
