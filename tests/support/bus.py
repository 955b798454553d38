"""Talking to a daemon over NATS from async test code: requests whose lost
answers are words, not exceptions; plays published to the event stream;
and exact reads of what KV holds.

Nothing here sleeps to synchronise: answers come from request/reply. The
few sleeps are back-off between retries. Every loop is bounded by a deadline.
"""

from __future__ import annotations

import json
from collections import Counter
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import anyio.to_thread
import attrs
import nats
import nats.errors
import nats.js.api
from nats.js.errors import KeyNotFoundError, NotFoundError

from kryten_likes.clock import parse_iso
from kryten_likes.store import AtomicBucket, scan
from kryten_likes.store.keys import (
    ANALYTICS_BUCKET, LIKES_BUCKET, decode_token, encode_token, global_key, likes_key,
)
from support.daemon_process import Names
from support.events import change_media, event_bytes

# Answers after which a like is retried: the request changed nothing (an
# error) or nobody can say (no answer). `not_current` comes from a like that
# raced a play of another item; the item comes back, so the like is retried.
RETRY_ERRORS = frozenset({"unavailable", "internal_error", "not_current", "no_current_item"})
LOST = frozenset({"timeout", "no_responders", "conn"})


# --- talking to the daemon ---------------------------------------------------


async def connect(servers: Sequence[str]) -> Any:
    return await nats.connect(servers=list(servers), name="crash-test-client", max_reconnect_attempts=-1,
                              reconnect_time_wait=0.2, connect_timeout=2, allow_reconnect=True)


async def ask(nc: Any, subject: str, body: dict, timeout: float) -> dict | str:
    """One request: the reply as a dict, or a word for "no answer"."""
    try:
        msg = await nc.request(subject, json.dumps(body).encode(), timeout=timeout)
    except nats.errors.NoRespondersError:
        return "no_responders"
    except nats.errors.TimeoutError:
        return "timeout"
    except (nats.errors.Error, OSError):
        return "conn"  # disconnected, reconnecting, …: nobody can say what happened
    return json.loads(msg.data)


async def wait_answer(nc: Any, subject: str, body: dict, check: Callable[[dict], bool], *,
                      timeout: float = 30.0, per_request: float = 2.0) -> dict:
    """Ask until an answer satisfies ``check``; each ask waits for its reply."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await ask(nc, subject, body, per_request)
        if isinstance(last, dict) and check(last):
            return last
        if not isinstance(last, dict) or last.get("status") == "error":
            await anyio.sleep(0.05)  # back-off between retries
    raise AssertionError(f"no satisfying answer on {subject} within {timeout}s; last: {last!r}")


async def publish_play(nc: Any, names: Names, video_id: str, *, msg_id: str | None = None,
                       deadline: float | None = None) -> None:
    """A changeMedia from currentTime 0 (always a new play), stored in the
    stream. With ``msg_id`` a publish whose ack was lost is retried and the
    stream's duplicate window keeps it stored once."""
    data = event_bytes("changeMedia", change_media(video_id, title=f"title {video_id}", seconds=30), names.channel,
                       correlation_id="crash-test")
    js = nc.jetstream()
    headers = {"Nats-Msg-Id": msg_id} if msg_id else None
    while True:
        try:
            await js.publish(names.changemedia_subject, data, timeout=2.0, headers=headers)
            return
        except (nats.errors.Error, OSError, TimeoutError):
            if msg_id is None or (deadline is not None and time.monotonic() > deadline):
                raise
            await anyio.sleep(0.1)  # the bus is away; retry the same message id


# --- what KV holds -------------------------------------------------------------


@attrs.frozen
class LikeTruth:
    like_count: int | None
    dedupe_users: frozenset[str]
    dedupe_keys: int


async def _patiently(read: Callable[[], Any]) -> Any:
    """Right after a node dies a read may time out while the cluster elects
    new leaders: ask again (a bounded number of times)."""
    for attempt in range(10):
        try:
            return await read()
        except (nats.errors.TimeoutError, TimeoutError):
            if attempt == 9:
                raise
    raise AssertionError("unreachable")


async def like_truth(nc: Any, names: Names, video_id: str, *, answered: int | None = None,
                     timeout: float = 20.0) -> LikeTruth:
    """The item's count and claims in KV. ``answered``: the count the answers
    say; read again until KV holds it or ``timeout`` passes (a journalled
    like is answered before its document and claim are stored, a tick later
    at most: actors/like_journal.py). A like lost never arrives, one counted
    twice is never taken back: either way the last read is returned."""
    deadline = time.monotonic() + timeout
    while True:
        truth = await _patiently(lambda: _like_truth(nc, names, video_id))
        if answered is None or time.monotonic() > deadline or (
                truth.like_count == truth.dedupe_keys == answered):
            return truth
        await anyio.sleep(0.2)  # polling KV for the staged likes' group, bounded by the deadline


async def _like_truth(nc: Any, names: Names, video_id: str) -> LikeTruth:
    js = nc.jetstream()
    kv = await js.key_value(LIKES_BUCKET)
    try:
        doc = json.loads((await kv.get(likes_key(names.namespace, video_id))).value)
        count = int(doc["like_count"])
    except KeyNotFoundError:
        count = None
    prefix = f"ns/{names.namespace}/dedupe/{encode_token(video_id)}/"
    entries = await scan(AtomicBucket(nc, kv, LIKES_BUCKET))
    now = time.time()
    # A claim an unlike stored as expired (its key goes with a 1 s TTL) claims nothing.
    keys = [k for k, e in entries.items() if k.startswith(prefix) and e.value
            and parse_iso(e.value["expires_at"]) > now]
    return LikeTruth(count, frozenset(decode_token(k[len(prefix):]) for k in keys), len(keys))


async def play_truth(nc: Any, names: Names) -> tuple[dict[str, int], int]:
    """Every item's play_count (items with one), and the global items_played."""
    return await _patiently(lambda: _play_truth(nc, names))


async def _play_truth(nc: Any, names: Names) -> tuple[dict[str, int], int]:
    js = nc.jetstream()
    kv = await js.key_value(ANALYTICS_BUCKET)
    entries = await scan(AtomicBucket(nc, kv, ANALYTICS_BUCKET))
    prefix = f"ns/{names.namespace}/items/"
    plays = {}
    for key, entry in entries.items():
        if key.startswith(prefix) and "/" not in key[len(prefix):] and entry.value:
            n = int(entry.value.get("play_count", 0))
            if n:
                plays[decode_token(key[len(prefix):])] = n
    glob = entries.get(global_key(names.namespace))
    return plays, int(glob.value.get("items_played", 0)) if glob and glob.value else 0


async def events_settled(nc: Any, names: Names, *, timeout: float = 40.0) -> None:
    """Until the daemon's consumer has nothing pending and nothing unacked.
    Events a killed daemon had fetched come back after the consumer's
    ack_wait (10 s), so this may take that long after the last kill."""
    js = nc.jetstream()
    deadline = time.monotonic() + timeout
    info = None
    while time.monotonic() < deadline:
        try:
            info = await js.consumer_info(names.stream, names.durable, timeout=2)
        except (nats.errors.Error, NotFoundError, TimeoutError):
            info = None
        else:
            if info.num_pending == 0 and info.num_ack_pending == 0:
                return
        await anyio.sleep(0.2)  # polling the consumer's state, bounded by the deadline
    raise AssertionError(f"events not settled within {timeout}s: {info}")


async def stored_event_seq(nc: Any, names: Names) -> int:
    kv = await nc.jetstream().key_value(ANALYTICS_BUCKET)
    try:
        doc = json.loads((await kv.get(global_key(names.namespace))).value)
    except KeyNotFoundError:
        return 0
    return int(doc.get("last_event_seq", 0))


@attrs.frozen
class BusEventTruth:
    """The daemon's bus events (KRYTEN_LIKES_OUT_{ns}) as a consumer that
    dedupes on ``event_id`` sees them."""

    messages: int  # in the stream (the server drops republishes inside its duplicate window)
    likes: Counter  # video_id -> like events
    unlikes: Counter
    plays: Counter
    like_users: dict  # video_id -> set of users with a like event
    ids_repeated: int  # messages whose event_id came before


async def bus_event_truth(nc: Any, names: Names) -> BusEventTruth:
    js = nc.jetstream()
    stream = f"KRYTEN_LIKES_OUT_{names.namespace}"
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        return BusEventTruth(0, Counter(), Counter(), Counter(), {}, 0)
    total = info.state.messages
    assert info.config.subjects == [f"{names.prefix}.likes.events.{names.namespace}.*"], info.config.subjects
    sub = await js.pull_subscribe(info.config.subjects[0], stream=stream,
                                  config=nats.js.api.ConsumerConfig(ack_policy=nats.js.api.AckPolicy.NONE))
    seen: set[str] = set()
    kinds: dict[str, Counter] = {"like": Counter(), "unlike": Counter(), "play": Counter()}
    users: dict[str, set] = {}
    got = repeated = 0
    try:
        while got < total:
            for m in await sub.fetch(min(1000, total - got), timeout=5):
                got += 1
                body = json.loads(m.data)
                assert (m.headers or {}).get("Nats-Msg-Id") == body["event_id"], body
                if body["event_id"] in seen:
                    repeated += 1
                    continue
                seen.add(body["event_id"])
                kinds[body["kind"]][body["video_id"]] += 1
                if body["kind"] == "like":
                    users.setdefault(body["video_id"], set()).add(body["user"])
    finally:
        await sub.unsubscribe()
    return BusEventTruth(total, kinds["like"], kinds["unlike"], kinds["play"], users, repeated)
