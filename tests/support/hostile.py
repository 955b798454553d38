"""Hostile input against a running daemon: the contract's limits as the tests
see them, configs with a ``[limits]`` table, a daemon a test may kill, many
requests at once, and the module-scoped daemons several test files share
(import the fixtures ``portal_module`` and ``calm`` into a test module).
"""

from __future__ import annotations

import contextlib
import json

import anyio
import anyio.from_thread
import pytest
from conftest import Harness, playing

from kryten_likes.clock import FakeClock
from kryten_likes.config import parse_config
from kryten_likes.store import AtomicBucket, scan
from support.configs import merged, unique_sections


FUZZED_COMMANDS = ("like", "now_playing", "top_liked", "top_played", "stats")
ITEM_FIELDS = {"video_id", "title", "play_count", "queue_count", "like_count", "last_played_at",
               "last_queued_at", "duration_seconds"}
T0 = 1_767_225_600.0  # FakeClock's start


# --- helpers -----------------------------------------------------------------------------------

def hostile_config(likes: dict | None = None, limits: dict | None = None):
    """``unique_config``, plus a ``[limits]`` table."""
    return parse_config(merged(unique_sections(**(likes or {})), {"limits": dict(limits or {})}))


@contextlib.contextmanager
def own_daemon(portal, nats_server, config):
    """A daemon for a test that may kill it: its death is the test's failure,
    never a teardown error."""
    h = Harness(portal, nats_server.url, config, FakeClock())
    h.start()
    failed = True
    try:
        yield h
        failed = False
    finally:
        try:
            h.stop()
        except BaseException:
            if not failed:
                raise
        finally:
            portal.call(h.nc.close)


def concurrently(h: Harness, command: str, bodies: list[dict], timeout: float = 10.0) -> list[dict]:
    """Send all requests at once; the replies, in the order of ``bodies``."""
    subject = f"{h.config.nats.subject_prefix}.playlist.cmd.{command}"
    out: list = [None] * len(bodies)

    async def run():
        async def one(i: int, body: dict) -> None:
            msg = await h.nc.request(subject, json.dumps(body).encode(), timeout=timeout)
            out[i] = json.loads(msg.data)

        async with anyio.create_task_group() as tg:
            for i, body in enumerate(bodies):
                tg.start_soon(one, i, body)

    h.portal.call(run)
    return out


def all_keys(h: Harness, bucket: str) -> list[str]:
    h.stored()  # journalled likes' claims and records are written by a batch after their answer

    async def keys():
        # The daemon's own start-up scan, not nats-py's ``kv.keys()``: its
        # watcher may say "all keys given" too early (store/buckets.scan_each),
        # and once left a namespace's dedupe claims out of this list.
        kv = await h.nc.jetstream().key_value(bucket)
        return list(await scan(AtomicBucket(h.nc, kv, bucket)))
    return h.portal.call(keys)


@pytest.fixture(scope="module")
def portal_module():
    with anyio.from_thread.start_blocking_portal() as p:
        yield p


@pytest.fixture(scope="module")
def calm(portal_module, nats_server):
    h = Harness(portal_module, nats_server.url, hostile_config(), FakeClock())
    h.start()
    h.change_media("calm-v")
    playing(h, "calm-v")
    yield h
    h.close()
