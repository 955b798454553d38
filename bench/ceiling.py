"""The bus's own ceiling: a trivial responder doing the least a like must do,
one request-reply plus one KV create of a unique key. Run as a process of
its own, like the daemon, so both are measured the same way.

    python -m bench.ceiling URL SUBJECT [--serial] [--uvloop] [--replicas=N]

By default every request is handled in its own task, as the daemon handles
many requests at once: the ceiling is what the bus and one Python process
can do, not what one-at-a-time can do. ``--serial`` awaits each request
before the next (nats-py runs a subscription's callbacks one by one), which
is the ceiling the first version of the benchmark measured; it is kept to
show how much of a "ratio above 1" came from that. ``--uvloop`` runs it on
uvloop, as the daemon runs by default: the table shows that ceiling too, so
nobody has to wonder how much of the daemon's ratio is its event loop.
``--replicas=N`` makes its bucket with N replicas, as the daemon's on a
cluster (``bench/cluster.py``).
"""

from __future__ import annotations

import asyncio
import os
import sys

import nats


async def main(url: str, subject: str, serial: bool, replicas: int = 1) -> None:
    nc = await nats.connect(url, name="bench-ceiling")
    kv = await nc.jetstream().create_key_value(bucket="bench_ceiling", history=1, replicas=replicas)
    prefix = f"{os.getpid()}-"
    n = 0
    tasks: set[asyncio.Task] = set()

    async def handle(msg, key: str) -> None:
        await kv.create(key, msg.data)
        await msg.respond(b'{"status":"ok"}')

    async def on_request(msg) -> None:
        nonlocal n
        n += 1
        if serial:
            await handle(msg, f"{prefix}{n}")
            return
        # The requester bounds how many are in flight; so does this set.
        t = asyncio.create_task(handle(msg, f"{prefix}{n}"))
        tasks.add(t)
        t.add_done_callback(tasks.discard)

    await answer_forever(nc, subject, on_request)


async def answer_forever(nc, subject: str, on_request) -> None:
    """A responder's last step: subscribed, it says "ready" and answers until stopped."""
    await nc.subscribe(subject, cb=on_request)
    await nc.flush()
    print("ready", flush=True)
    await asyncio.Event().wait()


def replicas_arg() -> int:
    """``--replicas=N`` of the command line (1 without it): the responder's streams' replicas."""
    given = [int(a.split("=", 1)[1]) for a in sys.argv[1:] if a.startswith("--replicas=")]
    return given[-1] if given else 1


def run_responder(coro) -> None:
    """On uvloop with ``--uvloop``, else on asyncio's loop; quiet on Ctrl-C."""
    try:
        if "--uvloop" in sys.argv:
            import uvloop

            uvloop.run(coro)
        else:
            asyncio.run(coro)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    run_responder(main(args[0], args[1], "--serial" in sys.argv, replicas_arg()))
