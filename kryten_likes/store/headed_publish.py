"""Publishing a message with headers for a few string joins.

nats-py's ``publish`` walks the header dict of every message: it strips,
regex-checks, translates and encodes each name and value, then builds the
command from bytearray pieces, about 20 µs for a batch message's three
headers. A like sends three headed messages (its claim and its record in the
atomic batch, its event), so that walk was the largest single cost of a
like in the daemon (``python -m bench --profile``). Our header names and
values are our own ASCII words, ids and numbers (no CR or LF), and our
subjects are built from validated tokens, so here the header block is one
f-string and the command is handed to the client exactly as its own
``publish`` ends: ``_send_command``, then ``_flush_pending`` when no flush
is queued.

Those are nats-py internals (its public ``publish`` takes no prepared
header block). Whenever the client is not plainly connected (reconnecting,
draining, closed), a payload is over the server's limit, or the internals
are not there (another nats-py), ``nc.publish`` does it with all its checks;
tests/test_headed_publish.py compares both on the wire.
"""

from __future__ import annotations

from typing import Any

from nats.aio.client import Client


def plainly_connected(nc: Any) -> bool:
    return getattr(nc, "_status", None) == Client.CONNECTED and hasattr(nc, "_send_command") \
        and hasattr(nc, "_flush_pending")


HeadedMessage = tuple[str, bytes, dict[str, str], str]  # subject, payload, headers, reply ("" for none)


async def publish_headed_many(nc: Any, messages: list[HeadedMessage]) -> None:
    """In order, as one command in the client's buffer (a batch of 128
    likes is some 260 messages: one hand-over, not 260)."""
    if not _short_way(nc, messages):
        for subject, payload, headers, reply in messages:
            await nc.publish(subject, payload, reply=reply, headers=headers)
        return
    parts: list[bytes] = []
    for subject, payload, headers, reply in messages:
        hdr = ("NATS/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()
        parts += (f"HPUB {subject} {reply} {len(hdr)} {len(hdr) + len(payload)}\r\n".encode(), hdr, payload, b"\r\n")
    await _hand_over(nc, b"".join(parts), messages)


async def publish_plain_many(nc: Any, messages: list[tuple[str, bytes]]) -> None:
    """Messages without headers or reply subject (a step's replies), in
    order, as one command: nats-py's ``publish`` checks and buffers each on
    its own (a few µs a reply). Its own ``publish`` does it whenever the
    client is not plainly connected or a payload is over the limit."""
    if not _short_way(nc, messages):
        for subject, payload in messages:
            await nc.publish(subject, payload)
        return
    await _hand_over(nc, b"".join(b"PUB %s %d\r\n%s\r\n" % (subject.encode(), len(payload), payload)
                                  for subject, payload in messages), messages)


def _short_way(nc: Any, messages: list) -> bool:
    """Plainly connected, and every payload within the server's limit."""
    return plainly_connected(nc) and all(len(m[1]) <= nc._max_payload for m in messages)


async def _hand_over(nc: Any, command: bytes, messages: list) -> None:
    """One command into the client's buffer, counted as its messages, as
    nats-py's own ``publish`` ends."""
    nc.stats["out_msgs"] += len(messages)
    nc.stats["out_bytes"] += sum(len(m[1]) for m in messages)
    await nc._send_command(command)
    if nc._flush_queue is not None and nc._flush_queue.empty():
        await nc._flush_pending()
