"""N live streams in a process of their own (as browsers would be: not in
the process that drives the likes); K of them count the likes they read.

    python -m bench.live_listeners PORT N K

Prints ``ready`` once all N streams are open (HTTP 200). Then, for each
line ``count`` on stdin, prints a JSON object ``{"likes": [...], "ended":
n}``: the likes each of the K counting streams read so far, and how many of
all N streams the daemon ended. The other N - K read every byte and throw
it away: on a machine of 2 cores, 200 streams all inflating would take the
daemon's CPU (real browsers are elsewhere); the daemon's work is the same. Exits when stdin closes. Plain asyncio sockets, HTTP/1.0 (a body without chunk framing), large reads: the
counting costs little beside the bytes themselves. Each asks for gzip, as
browsers do, and inflates what it reads.
"""

from __future__ import annotations

import asyncio
import json
import sys
import zlib

MARK = b"event: like\n"


class Stream:
    def __init__(self) -> None:
        self.likes = 0
        self.ended = False


async def listen(port: int, s: Stream, ready: asyncio.Future, counting: bool) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    writer.write(f"GET /api/v1/stream HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
                 "Accept-Encoding: gzip\r\n\r\n".encode())
    status = await reader.readline()
    if b" 200 " not in status:
        ready.set_exception(RuntimeError(f"stream refused: {status!r}"))
        return
    headers = []
    while (line := await reader.readline()) not in (b"\r\n", b""):
        headers.append(line.lower())
    if b"transfer-encoding: chunked\r\n" in headers:
        ready.set_exception(RuntimeError("a chunked stream: this reader reads only a plain body"))
        return
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if b"content-encoding: gzip\r\n" in headers else None
    ready.set_result(None)
    tail = b""
    while True:
        chunk = await reader.read(1 << 18)
        if not chunk:
            s.ended = True
            return
        if not counting:
            continue
        data = tail + (inflate.decompress(chunk) if inflate is not None else chunk)
        s.likes += data.count(MARK)
        # Keep what could be the start of a mark cut by the read (never a whole one).
        tail = data[-(len(MARK) - 1):]


async def main(port: int, n: int, k: int) -> None:
    loop = asyncio.get_running_loop()
    streams = [Stream() for _ in range(n)]
    ready = [loop.create_future() for _ in range(n)]
    tasks = [asyncio.create_task(listen(port, s, r, i < k)) for i, (s, r) in enumerate(zip(streams, ready))]
    await asyncio.gather(*ready)
    print("ready", flush=True)
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    while (line := await stdin.readline()):
        if line.strip() == b"count":
            print(json.dumps({"likes": [s.likes for s in streams[:k]], "ended": sum(s.ended for s in streams)}),
                  flush=True)
    for t in tasks:
        t.cancel()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
