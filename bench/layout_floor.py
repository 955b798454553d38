"""The layout's floor: the least I/O the KV layout and the contract ask of a
like, done as cheaply as nats-py allows, with no logic at all. Run as a
process of its own, like the ceiling and the daemon.

    python -m bench.layout_floor URL SUBJECT [--uvloop] [--replicas=N]

The ceiling (``bench/ceiling.py``) stores one message a like. A like of
kryten-likes must store three, each a key or a message other services read:

- its dedupe claim ``ns/{ns}/dedupe/{video_id}/{user}``, created with the
  window as TTL (docs/kv-schema.md, normative);
- its like record ``ns/{ns}/liked.{video_id}.{user}`` (the social likes:
  who liked what, kept after the claim expires; docs/kv-schema.md);
- its event on ``{pfx}.likes.events.{ns}.like`` with ``Nats-Msg-Id``
  (docs/contract-social-web.md), stored by the events stream for the
  daemon's own namespace and published plain past the stream cap, as the
  daemon does;

plus one counter document per namespace a burst names.

Here the requests read in one go are one burst: every message of the burst
goes to the client as one command, only the last asks for an ack, and when
that ack comes every like of the burst is answered, the replies again one
command. That is less than any correct daemon does: no dedupe check, no
journal, no counts but a local integer, no compare-and-set, no rate limit,
one ack for the whole burst (a refused write in the middle would go
unseen). So its ratio to the ceiling bounds from above what a Python daemon
on this layout can reach on this machine; ``python -m bench.floor`` measures
it beside the ceiling and the daemon.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import nats
from nats.js import api

from kryten_likes.compact_json import dump_bytes
from kryten_likes.store.headed_publish import HeadedMessage, publish_headed_many, publish_plain_many
from kryten_likes.store.keys import dedupe_key, likes_key, record_key

from .ceiling import answer_forever, replicas_arg, run_responder

BUCKET = "bench_floor"
EVENTS_STREAM = "BENCH_FLOOR_OUT"
EVENTS = "bench.floor.events"
STORED_NAMESPACE = "default"  # its events are stored; others' go out plain (the daemon's stream cap)
VIDEO = "hot"
WINDOW_S = 600


async def open_store(nc, replicas: int = 1) -> None:
    js = nc.jetstream()
    await js.create_key_value(bucket=BUCKET, history=1, replicas=replicas)
    info = await js.stream_info(f"KV_{BUCKET}")
    info.config.allow_msg_ttl = True  # the claim's TTL, as the daemon's buckets
    await js.update_stream(info.config)
    await js.add_stream(api.StreamConfig(name=EVENTS_STREAM, subjects=[f"{EVENTS}.{STORED_NAMESPACE}.>"],
                                         max_age=7 * 86400, num_replicas=replicas))


def like_writes(ns: str, user: str, at: str, count: int, event_id: str) -> list[HeadedMessage]:
    kv = f"$KV.{BUCKET}."
    claim = dump_bytes({"liked_at": at, "expires_at": at, "schema_version": 1})
    record = dump_bytes({"video_id": VIDEO, "user": user, "username": user, "liked_at": at, "play_at": at,
                         "event_id": event_id, "curator": None, "type": "yt", "like_count": count,
                         "likes_given": 1, "schema_version": 1})
    event = dump_bytes({"event_id": event_id, "kind": "like", "namespace": ns, "channel": "bench",
                        "username": user, "user": user, "video_id": VIDEO, "type": "yt", "title": None,
                        "curator": None, "like_count": count, "play_count": 1, "at": at})
    return [
        (kv + dedupe_key(ns, VIDEO, user), claim,
         {"Nats-TTL": f"{WINDOW_S}s", "Nats-Expected-Last-Subject-Sequence": "0"}, ""),
        (kv + record_key(ns, VIDEO, user), record, {}, ""),
        (f"{EVENTS}.{ns}.like", event, {"Nats-Msg-Id": event_id}, ""),
    ]


async def main(url: str, subject: str, replicas: int = 1) -> None:
    nc = await nats.connect(url, name="bench-layout-floor")
    await open_store(nc, replicas)
    counts: dict[str, int] = {}
    pending: list = []
    bursts: set[asyncio.Task] = set()
    n = 0

    async def burst(msgs: list) -> None:
        nonlocal n
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        out: list[HeadedMessage] = []
        answers: list[tuple[str, bytes]] = []
        docs: dict[str, int] = {}
        for msg in msgs:
            req = json.loads(msg.data)
            ns = req.get("namespace") or STORED_NAMESPACE
            n += 1
            counts[ns] = docs[ns] = counts.get(ns, 0) + 1
            out += like_writes(ns, req["username"], at, docs[ns], f"{os.getpid()}-{n}")
            answers.append((msg.reply, dump_bytes({"status": "ok", "error": None, "video_id": VIDEO,
                                                    "like_count": docs[ns]})))
        for ns, count in docs.items():
            out.append((f"$KV.{BUCKET}.{likes_key(ns, VIDEO)}",
                        dump_bytes({"video_id": VIDEO, "like_count": count, "updated_at": at, "schema_version": 1}),
                        {}, ""))
        last_subject, last_value, last_headers, _ = out.pop()
        await publish_headed_many(nc, out)
        ack = json.loads((await nc.request(last_subject, last_value, headers=last_headers, timeout=10)).data)
        if "error" in ack:
            raise RuntimeError(f"the floor's burst was refused: {ack['error']}")
        await publish_plain_many(nc, answers)  # (as the daemon's shell sends a step's replies)

    def start_burst() -> None:
        msgs = pending[:]
        pending.clear()
        t = asyncio.create_task(burst(msgs))
        bursts.add(t)
        t.add_done_callback(bursts.discard)

    async def on_request(msg) -> None:
        # nats-py hands the subscription's queued messages over one by one
        # without yielding: everything read so far is one burst.
        if not pending:
            asyncio.get_running_loop().call_soon(start_burst)
        pending.append(msg)

    await answer_forever(nc, subject, on_request)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    run_responder(main(args[0], args[1], replicas_arg()))
