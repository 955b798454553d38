"""`kryten-likes export` against a real nats-server, with a running daemon
that made the documents: items (joined with their likes), playlists and
likes, in CSV and JSON lines, an id that is not key-safe (an `=` token),
more keys than the reader's window, and the exit code without a server."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import nats
import pytest
from conftest import StandInBridge, plays_of, wait_until

from kryten_likes import export
from kryten_likes.store import bulk
from kryten_likes.cli import main
from kryten_likes.store import ANALYTICS_BUCKET, LIKES_BUCKET, encode_token, item_key, likes_key
from support.configs import write_config

UNSAFE = "https://media.example.com/m/abc.json"  # a custom-manifest id: its key token is =…
UNSAFE_PLAYLIST = "friday night/🎵"


def _run(h, tmp_path: Path, capsys, *argv: str) -> tuple[int, str, str]:
    cfg = write_config(tmp_path / "config.toml", {"analytics": {"namespace": h.config.analytics.namespace}})
    code = main([*argv, "--config", str(cfg), "--nats-url", h.url])
    out, err = capsys.readouterr()
    return code, out, err


def _rows(fmt: str, out: str) -> list[dict]:
    if fmt == "json":
        return [json.loads(line) for line in out.splitlines()]
    return list(csv.DictReader(io.StringIO(out)))


def _typed(row: dict) -> dict:
    """A CSV row as JSON would give it: numbers as numbers, empty as null."""
    return {k: None if v == "" else int(v) if v.isdigit() else v for k, v in row.items()}


@pytest.fixture
def counted(harness):
    """A daemon whose namespace holds known counts."""
    h = harness()
    bridge = StandInBridge(h)
    try:
        for vid, plays, users in (("exp-a", 2, ["u1", "u2", "u3"]), (UNSAFE, 1, ["u1"]), ("exp-quiet", 1, [])):
            for _ in range(plays):
                h.change_media(vid, title=f"T {vid}", seconds=30)
                wait_until(lambda: h.request("now_playing", {})["video_id"] == vid)
            for u in users:
                assert h.request("like", {"username": u})["status"] == "ok"
        wait_until(lambda: plays_of(h, "exp-quiet") == 1)
        # Liked, never seen played: a likes document without an item document.
        r = h.request("adjust", {"video_id": "exp-liked-only", "like_count": 5, "reason": "import"})
        assert r["status"] == "ok", r
        for pid in ("exp-pl", UNSAFE_PLAYLIST, "exp-pl"):
            r = h.request("queue_apply", {"playlist_id": pid, "items": [{"video_id": "exp-q", "type": "yt"}]},
                          timeout=20)
            assert r["status"] == "ok", r
    finally:
        bridge.close()
    ns = h.config.analytics.namespace
    assert h.kv(ANALYTICS_BUCKET, item_key(ns, UNSAFE)) is not None
    assert encode_token(UNSAFE).startswith("=")
    return h


ITEMS = {
    "exp-a": {"video_id": "exp-a", "title": "T exp-a", "play_count": 2, "queue_count": 0, "like_count": 3,
              "last_queued_at": None, "duration_seconds": 30},
    UNSAFE: {"video_id": UNSAFE, "title": f"T {UNSAFE}", "play_count": 1, "queue_count": 0, "like_count": 1,
             "last_queued_at": None, "duration_seconds": 30},
    "exp-quiet": {"video_id": "exp-quiet", "title": "T exp-quiet", "play_count": 1, "queue_count": 0,
                  "like_count": 0, "last_queued_at": None, "duration_seconds": 30},
    "exp-q": {"video_id": "exp-q", "play_count": 0, "queue_count": 3, "like_count": 0, "last_played_at": None},
    "exp-liked-only": {"video_id": "exp-liked-only", "title": None, "play_count": 0, "queue_count": 0,
                       "like_count": 5, "last_played_at": None, "last_queued_at": None, "duration_seconds": None},
}


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_export_items_playlists_and_likes(counted, tmp_path, capsys, fmt):
    h = counted
    code, out, err = _run(h, tmp_path, capsys, "export", "items", "--format", fmt)
    assert code == 0, err
    if fmt == "csv":
        assert out.splitlines()[0] == ",".join(export.COLUMNS["items"])
    rows = [_typed(r) if fmt == "csv" else r for r in _rows(fmt, out)]
    assert all(list(r) == list(export.COLUMNS["items"]) for r in rows)
    by_id = {r["video_id"]: r for r in rows}
    assert len(by_id) == len(rows) == len(ITEMS)
    for vid, want in ITEMS.items():
        assert {k: by_id[vid][k] for k in want} == want, by_id[vid]
    assert by_id["exp-a"]["last_played_at"].endswith("Z") and by_id["exp-q"]["last_queued_at"].endswith("Z")

    code, out, err = _run(h, tmp_path, capsys, "export", "playlists", "--format", fmt)
    assert code == 0, err
    rows = [_typed(r) if fmt == "csv" else r for r in _rows(fmt, out)]
    assert sorted((r["playlist_id"], r["apply_count"]) for r in rows) == [("exp-pl", 2), (UNSAFE_PLAYLIST, 1)]
    assert all(r["last_applied_at"].endswith("Z") for r in rows)

    code, out, err = _run(h, tmp_path, capsys, "export", "likes", "--format", fmt)
    assert code == 0, err
    rows = [_typed(r) if fmt == "csv" else r for r in _rows(fmt, out)]
    assert sorted((r["video_id"], r["like_count"]) for r in rows) == [
        ("exp-a", 3), ("exp-liked-only", 5), (UNSAFE, 1)]
    assert all(list(r) == list(export.COLUMNS["likes"]) and r["updated_at"].endswith("Z") for r in rows)


def test_export_of_another_namespace_and_of_an_empty_one(counted, tmp_path, capsys):
    code, out, _ = _run(counted, tmp_path, capsys, "export", "likes", "--namespace", "nobody-here")
    assert (code, out) == (0, ",".join(export.COLUMNS["likes"]) + "\n")
    code, out, _ = _run(counted, tmp_path, capsys, "export", "items", "--format", "json", "--namespace",
                        "nobody-here")
    assert (code, out) == (0, "")


def test_export_streams_more_keys_than_its_window_and_chunk(harness, tmp_path, capsys):
    h = harness()
    ns = h.config.analytics.namespace
    n = 2 * bulk.WINDOW + 7  # and many chunks (bulk.CHUNK) of batched gets

    async def fill() -> None:
        js = h.nc.jetstream()
        analytics, likes = await js.key_value(ANALYTICS_BUCKET), await js.key_value(LIKES_BUCKET)
        for i in range(n):
            vid = f"bulk-{i}"
            await analytics.put(item_key(ns, vid), json.dumps(
                {"video_id": vid, "play_count": i, "queue_count": 0, "last_played_at": None,
                 "last_queued_at": None, "duration_seconds": None, "schema_version": 1}).encode())
            if i % 3 == 0:
                await likes.put(likes_key(ns, vid), json.dumps(
                    {"video_id": vid, "like_count": i + 1, "updated_at": None, "schema_version": 1}).encode())

    h.portal.call(fill)
    code, out, err = _run(h, tmp_path, capsys, "export", "items", "--format", "json")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == n and len({r["video_id"] for r in rows}) == n
    for r in rows:
        i = int(r["video_id"].split("-")[1])
        assert (r["play_count"], r["like_count"]) == (i, i + 1 if i % 3 == 0 else 0), r
    code, out, err = _run(h, tmp_path, capsys, "export", "likes")
    assert code == 0 and len(out.splitlines()) == 1 + len(range(0, n, 3)), err
    # Each read leaves no consumer behind.
    info = h.portal.call(lambda: h.nc.jetstream().stream_info(f"KV_{ANALYTICS_BUCKET}"))
    assert info.state.consumer_count == 0


def test_export_without_a_server_is_exit_3(capsys):
    code = main(["export", "items", "--nats-url", "nats://127.0.0.1:1", "--timeout", "1"])
    assert code == 3 and "cannot export" in capsys.readouterr().err


def test_batched_gets_leave_out_absent_and_deleted_keys_and_work_without_direct_gets(portal, nats_server):
    async def main() -> None:
        nc = await nats.connect(nats_server.url)
        try:
            js = nc.jetstream()
            for name, direct in (("bulk_direct", True), ("bulk_plain", False)):
                kv = await js.create_key_value(bucket=name, history=1, direct=direct)
                for i in range(5):
                    await kv.put(f"k/{i}", json.dumps({"i": i}).encode())
                await kv.put("k/odd", b"not json")
                await kv.delete("k/3")
                keys = [f"k/{i}" for i in range(7)] + ["k/odd"]
                assert await bulk.last_values(nc, name, keys) == {f"k/{i}": {"i": i} for i in (0, 1, 2, 4)}, name
                assert await bulk.last_values(nc, name, ["k/none"]) == {}
                assert await bulk.last_values(nc, name, []) == {}
                await js.delete_key_value(name)
        finally:
            await nc.close()

    portal.call(main)


def test_a_read_ends_when_its_last_keys_vanish_before_they_are_sent(portal, nats_server, monkeypatch):
    """No message then says "none left" (num_pending 0): the consumer is asked."""
    monkeypatch.setattr(bulk, "WINDOW", 1)  # one message at a time: the last one is still unsent
    monkeypatch.setattr(bulk, "CHUNK", 1)
    monkeypatch.setattr(bulk, "IDLE", 0.2)

    async def main() -> list:
        nc = await nats.connect(nats_server.url)
        try:
            js = nc.jetstream()
            await js.create_key_value(bucket="bulk_vanish", history=1)
            kv = await js.key_value("bulk_vanish")
            for i in range(4):
                await kv.put(f"k/{i}", json.dumps({"i": i}).encode())
            taken: list = []

            async def take(docs):
                taken.extend(docs)
                if docs[0][0] == "k/2":  # as TTL would: the last key goes while k/2 is being written
                    await js.purge_stream("KV_bulk_vanish", subject="$KV.bulk_vanish.k/3")

            await bulk.each_chunk(js, "bulk_vanish", take)
            await js.delete_key_value("bulk_vanish")
            return taken
        finally:
            await nc.close()

    assert portal.call(main) == [(f"k/{i}", {"i": i}) for i in range(3)]
