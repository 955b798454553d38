"""store/headed_publish: the same message on the wire as nats-py's own
``publish`` (subject, reply, headers, payload), whether it takes the short
way (connected) or hands over to ``nc.publish`` (a payload over the limit);
a step's replies likewise (``publish_plain_many``).
Against a real nats-server."""

from __future__ import annotations

import asyncio

import nats
import pytest

from kryten_likes.store.headed_publish import publish_headed_many, publish_plain_many


async def _received(nc, subjects: str, n: int, send) -> list[tuple]:
    """What ``send()`` publishes on ``subjects``: the first ``n`` messages as
    (subject, reply, headers or None, payload), in the order they came."""
    got: list[tuple] = []
    all_in = asyncio.Event()

    async def keep(msg):
        got.append((msg.subject, msg.reply, dict(msg.headers) if msg.headers else None, msg.data))
        if len(got) == n:
            all_in.set()

    sub = await nc.subscribe(subjects, cb=keep)
    await send()
    await asyncio.wait_for(all_in.wait(), 10)
    await sub.unsubscribe()
    return got


def test_a_headed_message_arrives_as_nats_py_would_send_it(portal, nats_server):
    async def run():
        nc = await nats.connect(nats_server.url)
        headers = {"Nats-Batch-Id": "g12-0a1b2c3d", "Nats-Batch-Sequence": "7", "Nats-TTL": "5s"}

        async def send():
            for payload in (b'{"like_count":1}', b"", "é ✓".encode()):
                await publish_headed_many(nc, [("headed.fast", payload, headers, "inbox.1")])
                await nc.publish("headed.fast", payload, reply="inbox.1", headers=headers)
            await publish_headed_many(nc, [("headed.none", b"x", {}, "")])
            await nc.publish("headed.none", b"x", headers={})

        got = await _received(nc, "headed.>", 8, send)
        with pytest.raises(nats.errors.MaxPayloadError):  # over the limit: nats-py's own refusal
            await publish_headed_many(nc, [("headed.big", b"x" * (nc.max_payload + 1), headers, "")])
        assert nc.stats["out_msgs"] >= 8
        await nc.close()
        with pytest.raises(nats.errors.ConnectionClosedError):  # closed: nats-py says so
            await publish_headed_many(nc, [("headed.closed", b"x", headers, "")])
        return got

    got = portal.call(run)
    assert len(got) == 8
    for ours, theirs in zip(got[0::2], got[1::2]):
        assert ours == theirs
    assert got[0] == ("headed.fast", "inbox.1", {"Nats-Batch-Id": "g12-0a1b2c3d", "Nats-Batch-Sequence": "7",
                                                 "Nats-TTL": "5s"}, b'{"like_count":1}')


def test_replies_sent_as_one_command_arrive_in_order_as_nats_py_would_send_them(portal, nats_server):
    async def run():
        nc = await nats.connect(nats_server.url)
        payloads = [b'{"status":"ok","like_count":1}', b"", "é ✓".encode(), b"\r\nPUB x 1\r\n"]

        async def send():
            await publish_plain_many(nc, [(f"plain.{i}", p) for i, p in enumerate(payloads)])
            for i, p in enumerate(payloads):
                await nc.publish(f"plain.{i}", p)

        got = await _received(nc, "plain.>", 8, send)
        sent = nc.stats["out_msgs"]
        with pytest.raises(nats.errors.MaxPayloadError):  # over the limit: nats-py's own refusal
            await publish_plain_many(nc, [("plain.ok", b"x"), ("plain.big", b"x" * (nc.max_payload + 1))])
        await nc.close()
        with pytest.raises(nats.errors.ConnectionClosedError):  # closed: nats-py says so
            await publish_plain_many(nc, [("plain.closed", b"x")])
        return got, sent

    got, sent = portal.call(run)
    assert sent >= 8
    assert got[:4] == got[4:]  # ours, then nats-py's: the same messages, in the same order
    assert [g[0] for g in got[:4]] == ["plain.0", "plain.1", "plain.2", "plain.3"]
    assert got[3] == ("plain.3", "", None, b"\r\nPUB x 1\r\n")
