"""How much of our CPU one stored event costs, published the way nats-py's
``js.publish`` does it (a request each), the way
``kryten_likes.store.acks.StreamAcks`` does (one inbox, acks matched by
subject), and through ``OutStream`` in chunks of 8 and of 256, an ack per
event or one chain and one ack per stream and chunk (new events). ``python -m bench.event_acks
[N]``; prints µs of CPU per event."""

from __future__ import annotations

import asyncio
import resource
import sys
import tempfile
import time

import nats
from nats.js import api

from kryten_likes.embedded import start_nats_server
from kryten_likes.event_out import OutStream, out_stream_name
from kryten_likes.store.acks import StreamAcks

BODY = b'{"event_id":"g1.0","kind":"like","namespace":"default","video_id":"abc","title":"a title"}'


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as store:
        server = start_nats_server(store, port=None)
        try:
            nc = await nats.connect(server.url)
            js = nc.jetstream()
            await js.add_stream(api.StreamConfig(name="EVENT_ACKS", subjects=["event_acks.>"],
                                                 duplicate_window=600))
            acks = StreamAcks(nc)

            async def requests(tag: str) -> None:
                for i in range(0, n, 256):
                    await asyncio.gather(*(js.publish("event_acks.like", BODY, headers={"Nats-Msg-Id": f"{tag}{j}"})
                                           for j in range(i, min(n, i + 256))))

            async def one_inbox(tag: str) -> None:
                for i in range(0, n, 256):
                    await acks.wait(await acks.publish([("event_acks.like", BODY, {"Nats-Msg-Id": f"{tag}{j}"})
                                                        for j in range(i, min(n, i + 256))]))

            out = OutStream(js, "event_chains", "chan", 1, "ns", nc)

            def chunks(size: int, chained: bool):
                async def publish(tag: str) -> None:
                    for i in range(0, n, size):
                        await out.publish(tuple({"event_id": f"{tag}{j}", "kind": "like", "namespace": "ns"}
                                                for j in range(i, min(n, i + size))), chained=chained)
                return publish

            ways = [("js.publish", requests), ("StreamAcks", one_inbox)]
            for size in (8, 256):
                ways += [(f"OutStream, {size} a chunk, an ack each", chunks(size, False)),
                         (f"OutStream, {size} a chunk, chained", chunks(size, True))]
            for name, way in ways * 2:
                cpu, t = _cpu(), time.perf_counter()
                await way(f"{name}{t}")
                print(f"{name:36} {1e6 * (_cpu() - cpu) / n:6.1f} µs CPU per event, "
                      f"{n / (time.perf_counter() - t):8,.0f} events/s")
            stored = (await js.stream_info("EVENT_ACKS")).state.messages
            chained = (await js.stream_info(out_stream_name("ns"))).state.messages
            print(f"stored {stored:,} of {4 * n:,}; through OutStream {chained:,} of {8 * n:,}, "
                  f"{out.chains_broken} chains broken")
            await nc.close()
        finally:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000))
