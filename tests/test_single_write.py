"""A journal entry sent at once (actors/counter_writer_shell.py): the write
as ``AtomicBucket.single_message`` builds it, its ack through ``StreamAcks``,
and ``single_landed`` saying "stored" only for a plain stored ack. Anything
else goes the task way (``commit``), which must then resolve it: a write
that landed (its second sending a duplicate) is found landed at its own
revision, a fenced one is ``Fenced``. Against a real nats-server."""

from __future__ import annotations

import itertools

import nats

from kryten_likes.store.acks import StreamAcks
from kryten_likes.store import AtomicBucket
from kryten_likes.store.values import Fence, Fenced, KvWrite, Landed
from support.fenced_bucket import fenced_bucket

_tags = itertools.count()


def test_a_write_sent_at_once_is_stored_once_and_anything_else_is_resolved_the_task_way(portal, nats_server):
    tag = next(_tags)

    async def run():
        nc = await nats.connect(nats_server.url)
        name = f"single{tag}"
        kv, bucket = await fenced_bucket(nc, name, timeout=5.0)
        acks = StreamAcks(nc)
        try:
            assert bucket.single_sendable()
            w = KvWrite("journal/g1", b'{"batch":"g1"}', None)
            (reply,) = await acks.publish([bucket.single_message("g1", w)])
            ack = await acks.future(reply)
            acks.forget(reply)
            landed = AtomicBucket.single_landed("g1", w, ack)
            assert isinstance(landed, Landed)
            assert landed.revisions == {"journal/g1": (await kv.get("journal/g1")).revision}

            # Sent again (its ack was lost): a duplicate is not "stored" here, and
            # the task way finds it landed, at the revision it landed at.
            (reply,) = await acks.publish([bucket.single_message("g1", w)])
            again = await acks.future(reply)
            acks.forget(reply)
            assert b'"duplicate"' in again and AtomicBucket.single_landed("g1", w, again) is None
            assert await bucket.commit("g1", [w], w.key) == landed

            # The fence moved (another daemon is active): refused, and the task way says Fenced.
            await kv.put("writer", b"them")
            w2 = KvWrite("journal/g2", b'{"batch":"g2"}', None)
            (reply,) = await acks.publish([bucket.single_message("g2", w2)])
            refused = await acks.future(reply)
            acks.forget(reply)
            assert AtomicBucket.single_landed("g2", w2, refused) is None
            assert await bucket.commit("g2", [w2], w2.key) == Fenced("g2")
            assert bucket.fence_moved
            assert acks._pending == {}

            for odd in (b"", b"{}", b"not json", b'{"seq":"x"}', b'{"stream":"s","seq":7,"duplicate":true}'):
                assert AtomicBucket.single_landed("g3", w2, odd) is None, odd
            bucket.fence = Fence("writer", -1, "writer-check", b"us")  # stepped down: nothing is sent at once
            assert not bucket.single_sendable()
        finally:
            await nc.close()
        assert not AtomicBucket(nc, kv, name).single_sendable()  # (a closed client neither)

    portal.call(run)
