"""Phase 3 ("records"), on a fresh nats-server: a daemon that knows 1 000 000 like records.

What issue 15 asks of the like records (docs/kv-schema.md, "Like records and
user totals"): with 100 000 items, 100 000 users and 1 000 000 records in
KV, the daemon's RSS (≤ 150 MB), the first page of ``likers`` and
``user_likes`` (p99 ≤ 20 ms at 1 in flight), ``top_liked`` with ``window``
``week`` and ``all`` and ``top_curators`` (week) (p99 ≤ 2 ms), and its
start-up time on that data.

The data set (``dataset``, a fixed seed) is one channel's history: skewed
users and items, and every like on a play of its item (one item plays at a
time), the plays back to back over about a year, each queued by a curator.
That matters for memory: the windows count by UTC hour, and a channel's
likes fall in few (item, hour) pairs, however many there are.

The state is written straight into the buckets in the documents' own shapes
(``store.keys`` and ``store.documents``), each as the daemon would have left
it: each record (with its play's curator and its user's totals,
``likes_given`` = their records), each item's likes document (``like_count``
= its records, ``hours``) and item document (``play_count``, ``hours``), each
curator's two documents (``likes_received``, ``plays``), the global
document. JetStream publishes with up to ``INFLIGHT`` acks outstanding
(``Acks``); the streams' message counts are checked before the daemon starts
on them.

Checked (a mismatch fails the bench): the likers of the most liked item
(every page) and of a middling one, the likes of the heaviest user, of a
curator and of another (first page, ``likes_given``, the name as typed, and
the curator totals ``user_likes`` reports), ``top_liked`` and
``top_curators``, ``all`` and ``week``, against what was written. A
``top_curators`` not served yet (no responder, or ``invalid_request``) is
reported as not served, not failed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import random
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import nats.errors

from kryten_likes.clock import iso
from kryten_likes.contract import fold_user
from kryten_likes.store import open_buckets
from kryten_likes.store.documents import curator_value, dump, likes_value, record_value
from kryten_likes.store.keys import (ANALYTICS_BUCKET, LIKES_BUCKET, curator_key, global_key, item_key, likes_key,
                                     record_key)

from .daemon import NAMESPACE, cmd, daemon_ready
from .harness import BenchError, Child, CpuMeter, Miscount, Progress, all_ok, body, drive

INFLIGHT = 4000  # JetStream publishes awaiting their ack while the state is written
BATCH = "bench-records"  # the ``batch`` field of every pre-written document
HOUR = 3600
KEPT = 720 * HOUR  # a document's ``hours`` hold the 30 days before it was written (docs/kv-schema.md)
WEEK_EDGE = 168 * HOUR
GAP = (WEEK_EDGE - 5 * HOUR, WEEK_EDGE + 2 * HOUR)  # ages with no play: the week's edge may pass 2 h of bench
LIKES_PER_PLAY = 40  # an item is played once, and once more for every 40 of its likes
SEED = 15
PAGE = 20  # likers and user_likes' default page
TOP = 10  # the top lists asked for


# --- the data set -------------------------------------------------------------------------


def video_id(i: int) -> str:
    """An 11-character id of YouTube's alphabet, distinct for every i."""
    return base64.urlsafe_b64encode(hashlib.blake2b(i.to_bytes(4, "big"), digest_size=8).digest()).rstrip(b"=") \
        .decode("ascii")


@dataclass
class Dataset:
    """Who liked what and when, and the plays it happened on (by number;
    ``items``, ``names`` and ``curators`` turn numbers into ids)."""

    now: int  # when the data set was made (seconds); every play ended before
    items: list[str]  # video ids, by item number
    names: list[str]  # usernames as typed, by user number
    curators: list[int]  # user numbers of the curators (who queue), by curator number
    duration: array  # seconds, by item number
    play_item: array  # by play (oldest first): item number
    play_start: array  # by play: when it started
    play_curator: array  # by play: curator number
    rec_item: array  # by record: item number
    rec_user: array  # by record: user number
    rec_time: array  # by record: liked_at (distinct for an item, and for a user)
    rec_play: array  # by record: the play it was given on
    by_item: list[list[int]]  # record numbers, by item number
    like_count: array  # by item number
    given: array  # likes_given, by user number

    @property
    def records(self) -> int:
        return len(self.rec_item)

    def likers(self, i: int) -> list[tuple[str, int]]:
        """Item i's likers newest first: (username as typed, liked_at)."""
        out = sorted(((self.rec_time[k], self.rec_user[k]) for k in self.by_item[i]), reverse=True)
        return [(self.names[u], t) for t, u in out]

    def likes_of(self, u: int) -> list[tuple[str, int]]:
        """User u's likes newest first: (video_id, liked_at)."""
        out = [(t, i) for i, uu, t in zip(self.rec_item, self.rec_user, self.rec_time) if uu == u]
        out.sort(reverse=True)
        return [(self.items[i], t) for t, i in out]

    def top_liked(self, window: str, now: float, limit: int) -> list[list]:
        """``[video_id, count]`` as the daemon ranks them: all-time, or the
        likes of the hours now_hour-167 .. now_hour (``week``)."""
        if window == "all":
            counts = {i: n for i, n in enumerate(self.like_count) if n}
        else:
            counts = {}
            for i, t in zip(self.rec_item, self.rec_time):
                if t // HOUR > now // HOUR - 168:
                    counts[i] = counts.get(i, 0) + 1
        ranked = sorted(counts, key=lambda i: (-counts[i], self.items[i]))[:limit]
        return [[self.items[i], counts[i]] for i in ranked]

    def top_curators(self, window: str, now: float, limit: int) -> list[dict]:
        first = -1 if window == "all" else now // HOUR - 167
        received: dict[int, int] = {}
        for p, t in zip(self.rec_play, self.rec_time):
            if t // HOUR >= first:
                c = self.play_curator[p]
                received[c] = received.get(c, 0) + 1
        plays: dict[int, int] = {}
        for c, t in zip(self.play_curator, self.play_start):
            if t // HOUR >= first:
                plays[c] = plays.get(c, 0) + 1
        name = lambda c: self.names[self.curators[c]]  # noqa: E731
        ranked = sorted(received, key=lambda c: (-received[c], fold_user(name(c))))[:limit]
        return [{"username": name(c), "likes_received": received[c], "plays": plays.get(c, 0)} for c in ranked]


def dataset(n_items: int, n_users: int, n_records: int, now: int) -> Dataset:
    """Who likes what: every user likes at least one item, the other records
    go to users skewed (a few heavy likers); each user's items are distinct
    and skewed towards popular ones. When: one channel plays one item at a
    time (a like counts for what plays now), so the plays are laid back to
    back before ``now``, each item played once and once more for every
    ``LIKES_PER_PLAY`` of its likes, in a shuffled order (some 390 days at
    full size), each by a curator (skewed: a few queue most); every like
    falls on a distinct second of one of its item's plays. No play lies
    within a few hours of the week's edge, so the week's lists cannot move
    while the bench runs (windows count by UTC hour)."""
    rnd = random.Random(SEED)
    items = [video_id(i) for i in range(n_items)]
    if len(set(items)) != n_items:
        raise BenchError("video ids collide: make video_id longer")
    names = [f"Viewer{u}" for u in range(n_users)]
    n_cur = max(5, n_users // 50)
    curators = [c * (n_users // n_cur) for c in range(n_cur)]
    cap = max(1, n_items // 4)  # the heaviest user likes at most a quarter of the items
    per_user = array("l", [1]) * n_users
    extra = n_records - n_users
    if extra < 0 or n_users * cap < n_records:
        raise BenchError(f"{n_records:,} records cannot be spread over {n_users:,} users and {n_items:,} items")
    while extra:
        u = int(n_users * rnd.random() ** 2)  # P(user < k) = sqrt(k/n): a few heavy likers
        if per_user[u] < cap:
            per_user[u] += 1
            extra -= 1
    rec_item, rec_user = array("l"), array("l")
    by_item: list[list[int]] = [[] for _ in range(n_items)]
    for u in range(n_users):
        chosen: set[int] = set()
        while len(chosen) < per_user[u]:
            chosen.add(int(n_items * rnd.random() ** 2.5))  # P(item < k) = (k/n)^0.4: popular items first
        for i in chosen:
            by_item[i].append(len(rec_item))
            rec_item.append(i)
            rec_user.append(u)
    like_count = array("l", (len(r) for r in by_item))

    # The plays, newest laid first, back to back, around the week's edge.
    duration = array("l", (120 + rnd.randrange(301) for _ in range(n_items)))
    order = [i for i in range(n_items) for _ in range(1 + like_count[i] // LIKES_PER_PLAY)]
    rnd.shuffle(order)
    starts: list[int] = []
    end = now - 60
    for i in order:
        start = end - duration[i]
        if start < now - GAP[0] and end > now - GAP[1]:
            end = now - GAP[1]
            start = end - duration[i]
        starts.append(start)
        end = start
    order.reverse()
    starts.reverse()
    play_item, play_start = array("l", order), array("q", starts)
    play_curator = array("l", (int(n_cur * rnd.random() ** 2) for _ in order))
    plays_of: list[list[int]] = [[] for _ in range(n_items)]
    for p, i in enumerate(play_item):
        plays_of[i].append(p)

    # Each like on a distinct second of one of its item's plays.
    rec_time, rec_play = array("q", bytes(8 * len(rec_item))), array("l", bytes(8 * len(rec_item)))
    for i, recs in enumerate(by_item):
        d, mine = duration[i], plays_of[i]
        for k, o in zip(recs, rnd.sample(range(d * len(mine)), len(recs))):
            p = mine[o // d]
            rec_play[k], rec_time[k] = p, play_start[p] + o % d
    return Dataset(now, items, names, curators, duration, play_item, play_start, play_curator, rec_item, rec_user,
                   rec_time, rec_play, by_item, like_count, per_user)


def hour_label(h: int) -> str:
    return time.strftime("%Y-%m-%dT%H", time.gmtime(h * HOUR))


def hours_field(times: list[int]) -> tuple[int, dict[str, int]]:
    """The last of ``times`` and the ``hours`` of a document written then:
    the times by UTC hour, the 30 days before it."""
    last = max(times, default=0)
    hours: dict[int, int] = {}
    for t in times:
        if t > last - KEPT:
            hours[t // HOUR] = hours.get(t // HOUR, 0) + 1
    return last, {hour_label(h): n for h, n in sorted(hours.items())}


def messages(data: Dataset) -> Iterator[tuple[str, bytes]]:
    """Every document to write, as (subject of its key, value), each as the
    daemon would have left it after the last like or play it counts."""
    a, lk = f"$KV.{ANALYTICS_BUCKET}.", f"$KV.{LIKES_BUCKET}."
    plays_of: list[list[int]] = [[] for _ in data.items]
    for p, i in enumerate(data.play_item):
        plays_of[i].append(data.play_start[p])
    for i, vid in enumerate(data.items):
        last, hours = hours_field(plays_of[i])
        yield a + item_key(NAMESPACE, vid), dump(
            {"video_id": vid, "play_count": len(plays_of[i]), "queue_count": 0, "last_played_at": iso(last),
             "last_queued_at": None, "duration_seconds": data.duration[i], "schema_version": 1,
             "title": f"Item number {i}", "hours": hours})
    yield a + global_key(NAMESPACE), dump(
        {"items_queued": 0, "items_played": len(data.play_item), "duration_queued_seconds": 0,
         "duration_played_seconds": sum(data.duration[i] for i in data.play_item),
         "updated_at": iso(data.play_start[-1]), "schema_version": 1})
    received: list[list[int]] = [[] for _ in data.curators]
    for p, t in zip(data.rec_play, data.rec_time):
        received[data.play_curator[p]].append(t)
    curated: list[list[int]] = [[] for _ in data.curators]
    for c, t in zip(data.play_curator, data.play_start):
        curated[c].append(t)
    for c, u in enumerate(data.curators):
        if curated[c]:
            name = data.names[u]
            last, hours = hours_field(curated[c])
            yield a + curator_key(NAMESPACE, fold_user(name)), dump(
                curator_value(fold_user(name), name, "plays", len(curated[c]), last, hours, BATCH))
    for i, vid in enumerate(data.items):
        last, hours = hours_field([data.rec_time[k] for k in data.by_item[i]])
        yield lk + likes_key(NAMESPACE, vid), dump(
            likes_value(vid, data.like_count[i], last or data.play_start[0], f"Item number {i}", BATCH, hours))
    for c, u in enumerate(data.curators):
        if received[c]:
            name = data.names[u]
            last, hours = hours_field(received[c])
            yield lk + curator_key(NAMESPACE, fold_user(name)), dump(
                curator_value(fold_user(name), name, "likes_received", len(received[c]), last, hours, BATCH))
    for k, (i, u, t, p) in enumerate(zip(data.rec_item, data.rec_user, data.rec_time, data.rec_play)):
        vid, name = data.items[i], data.names[u]
        user = fold_user(name)
        yield lk + record_key(NAMESPACE, vid, user), dump(
            record_value(vid, user, name, t, data.play_start[p], f"{BATCH}.{k}", BATCH,
                         curator=data.names[data.curators[data.play_curator[p]]],
                         likes_given=data.given[u], first_seen_as=name))  # each: the user's totals


def documents(data: Dataset) -> dict[str, int]:
    """How many keys each bucket's stream holds once written."""
    curated = set(data.play_curator)
    received = {data.play_curator[p] for p in data.rec_play}
    return {f"KV_{ANALYTICS_BUCKET}": len(data.items) + 1 + len(curated),
            f"KV_{LIKES_BUCKET}": len(data.items) + len(received) + data.records}


class Acks:
    """JetStream publishes with their acks counted on one inbox: at most
    ``window`` unacknowledged at any time (nats-py's ``publish_async`` makes
    a task and a future per message: three times slower here).

    Resource handling: the inbox subscription is the caller's (``open`` /
    ``close``). Error handling: an ack that carries an error is kept, and
    ``publish`` raises once one came back; no ack within ``timeout`` is a
    BenchError.
    """

    def __init__(self, nc: Any, window: int, timeout: float = 60.0) -> None:
        self.nc, self.window, self.timeout = nc, window, timeout
        self.inbox = nc.new_inbox()
        self.sent = self.acked = 0
        self.errors: list[bytes] = []
        self._room = asyncio.Event()

    async def open(self) -> None:
        self._sub = await self.nc.subscribe(self.inbox, cb=self._on_ack)

    async def close(self) -> None:
        await self._sub.unsubscribe()

    async def _on_ack(self, msg: Any) -> None:
        self.acked += 1
        if b'"error"' in msg.data or not msg.data:
            self.errors.append(msg.data)
        if self.sent - self.acked <= self.window // 2 or self.acked == self.sent:
            self._room.set()

    async def _wait(self, until) -> None:
        while not until():
            self._room.clear()
            try:
                await asyncio.wait_for(self._room.wait(), self.timeout)
            except asyncio.TimeoutError:
                raise BenchError(f"pre-write: {self.sent - self.acked:,} publishes unacknowledged for "
                                 f"{self.timeout:g} s") from None
        if self.errors:
            raise BenchError(f"pre-write: {len(self.errors)} publishes refused, e.g. {self.errors[0][:200]!r}")

    async def publish(self, subject: str, payload: bytes) -> None:
        if self.sent - self.acked >= self.window:
            await self._wait(lambda: self.sent - self.acked <= self.window // 2)
        self.sent += 1
        await self.nc.publish(subject, payload, reply=self.inbox)

    async def drain(self) -> None:
        """Until every publish so far is acknowledged."""
        await self.nc.flush()
        await self._wait(lambda: self.acked >= self.sent)


async def prewrite_records(nc: Any, data: Dataset, progress: Progress) -> float:
    """Write the data set into the buckets (made as the daemon makes them);
    returns the seconds it took. Every publish is acknowledged, and the
    streams must then hold exactly the keys written."""
    await open_buckets(nc, 1)
    js = nc.jetstream()
    want = documents(data)
    total = sum(want.values())
    acks = Acks(nc, INFLIGHT)
    await acks.open()
    t0 = time.perf_counter()
    progress.start(f"pre-writing {data.records:,} records, {len(data.names):,} users, {len(data.items):,} items", total)
    try:
        for subject, payload in messages(data):
            await acks.publish(subject, payload)
            if acks.sent % 2000 == 0:
                progress.set(acks.acked)
        await acks.drain()
    finally:
        progress.stop()
        await acks.close()
    seconds = time.perf_counter() - t0
    have = {s: (await js.stream_info(s)).state.messages for s in want}
    if have != want:
        raise BenchError(f"pre-written state incomplete: streams hold {have}, expected {want}")
    return seconds


# --- the daemon on it ----------------------------------------------------------------------


def _mb(kb: dict[str, int]) -> dict[str, float]:
    return {k: round(v / 1024, 1) for k, v in kb.items()}


async def ask(nc: Any, command: str, **fields: Any) -> dict:
    reply = json.loads((await nc.request(cmd(command), body(**fields), timeout=10)).data)
    if reply.get("status") != "ok":
        raise Miscount(f"{command} {fields}: {reply}")
    return reply


async def check_answers(nc: Any, data: Dataset) -> list[str]:
    """What the daemon answers against what was written; Miscount on a difference."""
    done = []
    top = max(range(len(data.items)), key=lambda i: (data.like_count[i], -i))
    counts = sorted(range(len(data.items)), key=lambda i: data.like_count[i])
    mid = counts[len(counts) * 3 // 4]  # a middling item: a handful of likers
    for i, walk in ((top, True), (mid, False)):
        vid = data.items[i]
        want = [{"username": n, "liked_at": iso(t)} for n, t in data.likers(i)]
        got: list[dict] = []
        cursor = None
        while True:
            fields: dict = {"video_id": vid, "limit": 100 if walk else PAGE}
            if cursor:
                fields["cursor"] = cursor
            r = await ask(nc, "likers", **fields)
            if r.get("like_count") != data.like_count[i]:
                raise Miscount(f"likers {vid}: like_count {r.get('like_count')}, KV holds {data.like_count[i]}")
            got += r["users"]
            cursor = r.get("cursor")
            if not walk or not cursor:
                break
        expect = want if walk else want[:PAGE]
        if got != expect:
            first = next((k for k, (a, b) in enumerate(zip(got, expect)) if a != b), min(len(got), len(expect)))
            raise Miscount(f"likers {vid}: {len(got)} answered, {len(expect)} written; first difference at "
                           f"{first}: {got[first:first + 2]} vs {expect[first:first + 2]}")
        done.append(f"likers of {vid}: {'every page, ' if walk else 'first page, '}{len(got)} of "
                    f"{data.like_count[i]} = written")
    heavy = max(range(len(data.names)), key=lambda u: (data.given[u], -u))
    received: dict[int, int] = {}  # by user number: likes received as a curator
    for p in data.rec_play:
        u = data.curators[data.play_curator[p]]
        received[u] = received.get(u, 0) + 1
    curated: dict[int, int] = {}
    for c in data.play_curator:
        curated[data.curators[c]] = curated.get(data.curators[c], 0) + 1
    for u in dict.fromkeys((heavy, data.curators[1], len(data.names) // 2 + 1)):
        name = data.names[u]
        r = await ask(nc, "user_likes", username=name.upper())  # folded by the daemon
        want = [{"video_id": v, "liked_at": iso(t)} for v, t in data.likes_of(u)[:PAGE]]
        got = [{"video_id": x["video_id"], "liked_at": x["liked_at"]} for x in r["items"]]
        if r.get("likes_given") != data.given[u] or r.get("username") != name or got != want:
            raise Miscount(f"user_likes {name}: likes_given {r.get('likes_given')} (KV {data.given[u]}), "
                           f"username {r.get('username')!r}, first page {got[:2]}… vs {want[:2]}…")
        curator = ""
        if "likes_received" in r:  # a curator's totals too, since user_likes says them
            if (r["likes_received"], r.get("plays")) != (received.get(u, 0), curated.get(u, 0)):
                raise Miscount(f"user_likes {name}: likes_received {r['likes_received']}, plays {r.get('plays')}; "
                               f"KV holds {received.get(u, 0)}, {curated.get(u, 0)}")
            curator = f", likes_received {received.get(u, 0)}, plays {curated.get(u, 0)}"
        done.append(f"user_likes of {name}: likes_given {data.given[u]}{curator}, first page = written")
    now = time.time()
    for window in ("all", "week"):
        r = await ask(nc, "top_liked", limit=TOP, window=window)
        got = [[x["video_id"], x["count"]] for x in r["items"]]
        want = data.top_liked(window, now, TOP)
        if r.get("window") != window or got != want:
            raise Miscount(f"top_liked {window}: answered window {r.get('window')!r} {got[:3]}…, KV holds {want[:3]}…")
        done.append(f"top_liked {window} = written ({want[0][1]:,} likes first)")
    if await not_served(nc, "top_curators", body(limit=TOP)) is None:
        for window in ("all", "week"):
            r = await ask(nc, "top_curators", limit=TOP, window=window)
            want = data.top_curators(window, now, TOP)
            if r.get("window") != window or r["items"] != want:
                raise Miscount(f"top_curators {window}: answered window {r.get('window')!r} {r['items'][:2]}…, "
                               f"KV holds {want[:2]}…")
            done.append(f"top_curators {window} = written ({want[0]['likes_received']:,} likes received first)")
    return done


async def not_served(nc: Any, command: str, request: bytes) -> str | None:
    """Why the daemon does not serve a command yet (no responder, or
    ``invalid_request`` naming it), or None when it answers ok."""
    try:
        reply = json.loads((await nc.request(cmd(command), request, timeout=10)).data)
    except nats.errors.NoRespondersError:
        return "no responder on its subject"
    if reply.get("status") == "error" and reply.get("error") == "invalid_request":
        return f"invalid_request ({reply.get('detail', '')})"
    if reply.get("status") != "ok":
        raise Miscount(f"{command}: {reply}")
    return None


async def run_records(nc: Any, daemon: Child, sizes: Any, progress: Progress, data: Dataset,
                      server_pid: int) -> dict:
    size = f"{len(data.items):,} items, {len(data.names):,} users, {data.records:,} records"
    out: dict = {"items": len(data.items), "users": len(data.names), "records": data.records}
    out["startup_seconds"] = round(await daemon_ready(nc, daemon, timeout=900.0), 2)
    await asyncio.sleep(0.5)  # let start-up garbage settle before reading RSS (as phase 2)
    out["rss_loaded_mb"] = _mb(daemon.memory_kb())
    progress.say(f"daemon with {size}: ready in {out['startup_seconds']} s, RSS {out['rss_loaded_mb']}")

    out["checks"] = await check_answers(nc, data)
    for c in out["checks"]:
        progress.say(f"check: {c}")

    rows = []
    k = sizes.query_samples
    rnd = random.Random(SEED + 2)
    n_items, n_users = len(data.items), len(data.names)
    queries = [
        ("now_playing (the floor: one actor hop)", "now_playing", [b"{}"] * k),
        ("likers first page", "likers",
         [body(video_id=data.items[int(n_items * rnd.random() ** 2.5)]) for _ in range(k)]),
        ("user_likes first page", "user_likes", [body(username=data.names[rnd.randrange(n_users)]) for _ in range(k)]),
        (f"top_liked window all limit {TOP}", "top_liked", [body(limit=TOP, window="all")] * k),
        (f"top_liked window week limit {TOP}", "top_liked", [body(limit=TOP, window="week")] * k),
        (f"top_curators window week limit {TOP}", "top_curators", [body(limit=TOP, window="week")] * k),
    ]
    for name, command, bodies in queries:
        r = {"scenario": f"query: {name}, {data.records:,} records", "inflight": 1, "n": len(bodies)}
        refused = await not_served(nc, command, bodies[0]) if command == "top_curators" else None
        if refused:
            r.update(served=False, check=f"not served: {refused}")
            rows.append(r)
            progress.say(f"{r['scenario']}: {r['check']}")
            continue
        with CpuMeter({"proc": daemon.pid, "server": server_pid, "driver": os.getpid()}) as m:
            d = await drive(nc, cmd(command), bodies, 1, progress=progress, label=name, watch=daemon)
        all_ok(d, name)
        r.update(rate=round(d["rate"]), p50_ms=round(d["p50_ms"], 3), p99_ms=round(d["p99_ms"], 3),
                 max_ms=round(d["max_ms"], 2), cpu_us=m.per_request_us(d["n"]), others_pct=round(m.others_pct),
                 check="")
        rows.append(r)
        progress.say(f"{r['scenario']}: p50 {r['p50_ms']} ms p99 {r['p99_ms']} ms max {r['max_ms']} ms")
    out["rows"] = rows
    out["rss_after_queries_mb"] = _mb(daemon.memory_kb())
    progress.say(f"RSS after the queries: {out['rss_after_queries_mb']}")
    return out
