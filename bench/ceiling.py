"""The bus's own ceiling: a trivial responder doing the least a like must do,
one request-reply plus one KV create of a unique key. Run as a process of
its own, like the daemon, so both are measured the same way."""

from __future__ import annotations

import asyncio
import sys

import nats


async def main(url: str, subject: str) -> None:
    nc = await nats.connect(url)
    kv = await nc.jetstream().create_key_value(bucket="bench_ceiling", history=1)
    n = 0

    async def on_request(msg):
        nonlocal n
        n += 1
        await kv.create(f"k{n}", msg.data)
        await msg.respond(b'{"status":"ok"}')

    await nc.subscribe(subject, cb=on_request)
    await nc.flush()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
