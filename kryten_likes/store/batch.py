"""One atomic KV step: several writes that land whole or not at all.

nats-server 2.12+ stores an *atomic batch* (ADR-50) in one stream all or
nothing. A KV bucket is the stream ``KV_<bucket>`` and a KV write is a publish
to ``$KV.<bucket>.<key>``, so a dedupe claim and its counter update (or a play's
item and global documents) become one indivisible step. Each write carries an
expected last revision: 0 creates only if absent (a claim), ``r`` updates only
if unchanged (compare-and-set). If any expectation fails, nothing is stored.

Outcomes are values, never guesses:

- ``Landed``: every write is stored; the new revisions are known.
- ``Conflict``: nothing was stored; the current entries of every key are read
  back so the caller can decide again.

A batch whose answer is lost (timeout, connection gone) is *resolved* before
anything is said about it: every document a group writes carries the group id
in its ``batch`` field, and all attempts of one group expect the same
revisions, so at most one attempt can ever land and reading the marker
document tells which. Until the bus answers, the group waits; nobody is told
``ok`` for a count that might not exist, nor ``error`` for one that does.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Sequence

import anyio
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

from .acks import stored
from .headed_publish import HeadedMessage, plainly_connected, publish_headed_many
from .reconnects import Reconnects
from .values import Conflict, Fence, Fenced, KvWrite, Landed, StoredEntry

log = logging.getLogger(__name__)

WRONG_LAST_SEQUENCE = 10071
# "wrong last sequence", no number: on a clustered stream nats-server checks an
# expected last subject sequence only when no other message expecting that
# subject is still being stored; a second one in flight is refused so.
EXPECTATION_IN_PROCESS = 10164


class BatchRefused(Exception):
    """The server refused a batch for a reason other than a failed expectation."""


class ExpectationInProcess(Exception):
    """Refused, nothing stored: another write expecting the same subject (the
    fence) was still being stored on a clustered stream. Sent again."""


class AtomicBucket:
    """Atomic batches and reads for one KV bucket."""

    def __init__(self, nc: NatsClient, kv: KeyValue, bucket: str, *, timeout: float = 5.0,
                 reconnects: Reconnects | None = None) -> None:
        self._nc = nc
        self._reconnects = reconnects or Reconnects()
        # Set while this daemon is the active one (lease): every batch then
        # expects the fence as it was at activation, so a daemon that lost
        # its lease cannot store anything.
        self.fence: Fence | None = None
        self.fence_moved = False  # a batch found the fence moved: the lease keeper steps down
        self._kv = kv
        self._js = nc.jetstream()
        self._stream = f"KV_{bucket}"
        self.bucket = bucket
        self._timeout = timeout
        self.conflicts = 0  # batches refused on a changed revision (for metrics)
        self.lost_answers = 0  # batches whose answer was lost and had to be resolved
        self.identity: str | None = None  # the stream's creation time: tells a bucket made again apart

    @property
    def nc(self) -> NatsClient:
        return self._nc

    @property
    def timeout(self) -> float:
        return self._timeout

    async def read(self, key: str) -> StoredEntry | None:
        """What the stream's leader holds for ``key``. Only resolutions read
        (a conflict, a lost answer), and they must not judge from a replica
        that lags: a KV get (a direct get) may be answered by any replica, so
        a batch that landed could look absent and its like be told
        ``duplicate``. The stream API's message get is the leader's."""
        try:
            msg = await self._js.get_last_msg(self._stream, f"$KV.{self.bucket}.{key}", direct=False)
        except NotFoundError:
            return None
        if (msg.headers or {}).get("KV-Operation") in ("DEL", "PURGE") or not msg.data:
            return StoredEntry(revision=msg.seq, value=None)
        return StoredEntry(revision=msg.seq, value=json.loads(msg.data))

    async def read_many(self, keys: Sequence[str]) -> dict[str, StoredEntry | None]:
        out: dict[str, StoredEntry | None] = {}

        async def one(k: str) -> None:
            out[k] = await self.read(k)

        async with anyio.create_task_group() as tg:
            for k in keys:
                tg.start_soon(one, k)
        return out

    async def purge_below(self, key_filter: str, revision: int) -> None:
        """Remove the keys matching ``key_filter`` written below ``revision``."""
        await self._js.purge_stream(self._stream, subject=f"$KV.{self.bucket}.{key_filter}", seq=revision)

    async def put(self, key: str, value: dict) -> int:
        return await self._kv.put(key, json.dumps(value, separators=(",", ":")).encode())

    async def write_if(self, key: str, value: bytes, expected_revision: int, *, ttl_seconds: float | None = None,
                       delete: bool = False, timeout: float | None = None) -> int | None:
        """One key written (or, with ``delete``, deleted) only if it holds
        ``expected_revision`` (0: nothing): its new revision, or None when it
        did not. The lease and the fence are written this way."""
        headers = {"Nats-Expected-Last-Subject-Sequence": str(expected_revision)}
        if ttl_seconds is not None:
            headers["Nats-TTL"] = _ttl(ttl_seconds)
        if delete:
            headers["KV-Operation"] = "DEL"
        reply = await self._nc.request(f"$KV.{self.bucket}.{key}", value, headers=headers,
                                       timeout=timeout or self._timeout)
        ack = json.loads(reply.data)
        err = ack.get("error")
        if err is None:
            return int(ack["seq"])
        if err.get("err_code") == WRONG_LAST_SEQUENCE:
            return None
        raise BatchRefused(f"{self.bucket}: {err.get('description')} (err_code {err.get('err_code')})")

    async def commit(self, group_id: str, writes: Sequence[KvWrite], marker_key: str) -> Landed | Conflict:
        """Store ``writes`` atomically; resolve a lost answer before returning."""
        backoff = 0.05
        busy = 0.002
        while True:
            if self.fence is not None and self.fence.revoked:
                return Fenced(group_id)  # stepped down: nothing more is sent
            try:
                with self._reconnects.given_up_on_reconnect():
                    return await self._attempt(group_id, writes)
                why = "the connection came back"  # (only reached when the wait was given up)
            except ExpectationInProcess:
                await anyio.sleep(busy)  # a back-off: the write before it is stored within ms, nothing signals it
                busy = min(busy * 2, 0.2)
                continue
            except BatchRefused:
                raise
            except (nats.errors.Error, TimeoutError, OSError) as exc:
                why = type(exc).__name__
            self.lost_answers += 1
            log.warning("batch %s: answer lost (%s); resolving", group_id, why)
            # Unknown outcome: find out before deciding anything.
            while True:
                with self._reconnects.given_up_on_reconnect() as pause:
                    await anyio.sleep(backoff)  # back-off between retries, not synchronisation
                backoff = 0.05 if pause.cancelled_caught else min(backoff * 2, 2.0)
                try:
                    with self._reconnects.given_up_on_reconnect() as waiting:
                        marker = await self.read(marker_key)
                except (nats.errors.Error, TimeoutError, OSError):
                    continue
                if waiting.cancelled_caught:
                    backoff = 0.05  # the connection is back: read again at once
                    continue
                if marker is not None and marker.value is not None and marker.value.get("batch") == group_id:
                    return _landed_from(group_id, await self.read_many([w.key for w in writes]))
                break  # not landed: send the same group again

    async def _attempt(self, group_id: str, writes: Sequence[KvWrite]) -> Landed | Conflict | Fenced:
        single = self.single_write(writes)
        if single is not None:
            return await self._attempt_single(group_id, single)
        batch_id = f"{group_id}-{uuid.uuid4().hex[:8]}"
        fence = self.fence
        ahead = 0
        staged: list[HeadedMessage] = []
        if fence is not None:
            # First message: the fence check. Its own key is written without
            # an expectation; the expectation is on the fence key's subject.
            ahead = 1
            staged.append((f"$KV.{self.bucket}.{fence.check_key}", fence.check_value, {
                "Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": "1",
                "Nats-Expected-Last-Subject-Sequence": str(fence.revision),
                "Nats-Expected-Last-Subject-Sequence-Subject": f"$KV.{self.bucket}.{fence.key}"}, ""))
        n = len(writes)
        for i, w in enumerate(writes, 1):
            headers = {"Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(i + ahead)}
            if w.expected_revision is not None:
                headers["Nats-Expected-Last-Subject-Sequence"] = str(w.expected_revision)
            if w.ttl_seconds is not None:
                headers["Nats-TTL"] = _ttl(w.ttl_seconds)
            subject = f"$KV.{self.bucket}.{w.key}"
            if i < n:
                staged.append((subject, w.value, headers, ""))
            else:
                headers["Nats-Batch-Commit"] = "1"
                await publish_headed_many(self._nc, staged)  # before the commit: the buffer keeps the order
                reply = await self._nc.request(subject, w.value, headers=headers, timeout=self._timeout)
        ack = json.loads(reply.data)
        err = ack.get("error")
        if err is None:
            last = int(ack["seq"])
            first = last - int(ack.get("count", n + ahead)) + 1 + ahead
            return Landed(group_id, {w.key: first + i for i, w in enumerate(writes)})
        if err.get("err_code") == EXPECTATION_IN_PROCESS:
            raise ExpectationInProcess(group_id)  # (an atomic batch refused stored nothing)
        if err.get("err_code") == WRONG_LAST_SEQUENCE:
            self.conflicts += 1
            current = await self.read_many([w.key for w in writes])
            marker = next((e for e in current.values() if e and e.value and e.value.get("batch") == group_id), None)
            if marker is not None:
                # An earlier attempt of this group landed late; this one could not.
                return _landed_from(group_id, current)
            if fence is not None:
                now = await self.read(fence.key)
                if now is None or now.revision != fence.revision:
                    log.warning("batch %s refused: the fence moved (another daemon is active)", group_id)
                    self.fence_moved = True
                    return Fenced(group_id)
            return Conflict(group_id, current)
        if err.get("code") == 503:
            raise nats.errors.NoRespondersError
        raise BatchRefused(f"{self.bucket}: {err.get('description')} (err_code {err.get('err_code')})")


    @staticmethod
    def single_write(writes: Sequence[KvWrite]) -> KvWrite | None:
        """The write, when a group is one unconditional write (a plain publish, no batch)."""
        return writes[0] if len(writes) == 1 and writes[0].expected_revision is None else None

    def single_message(self, group_id: str, w: KvWrite) -> tuple[str, bytes, dict[str, str]]:
        """One unconditional write as it is sent: subject, value, headers."""
        headers = {"Nats-Msg-Id": group_id}
        fence = self.fence
        if fence is not None:
            headers["Nats-Expected-Last-Subject-Sequence"] = str(fence.revision)
            headers["Nats-Expected-Last-Subject-Sequence-Subject"] = f"$KV.{self.bucket}.{fence.key}"
        if w.ttl_seconds is not None:
            headers["Nats-TTL"] = _ttl(w.ttl_seconds)
        return f"$KV.{self.bucket}.{w.key}", w.value, headers

    def single_sendable(self) -> bool:
        """May one unconditional write go out at once (``single_message``,
        ``single_landed``)? Not once fenced off, nor while the client is not
        plainly connected: ``commit`` then, which waits and resolves."""
        return not (self.fence is not None and self.fence.revoked) and plainly_connected(self._nc)

    @staticmethod
    def single_landed(group_id: str, w: KvWrite, ack: bytes) -> Landed | None:
        """The write stored, as its ack says; None for anything else (an
        error, a duplicate, no stream): ``commit`` finds out what happened."""
        if not stored(ack):
            return None
        try:
            return Landed(group_id, {w.key: int(json.loads(ack)["seq"])})
        except (ValueError, KeyError, TypeError):  # not an ack we know: let ``commit`` find out
            return None

    async def _attempt_single(self, group_id: str, w: KvWrite) -> Landed | Fenced:
        """One unconditional write needs no batch: the server stages every
        atomic batch in a store made for it (about 4 ms on an R1 file stream,
        however small), a plain publish costs a tenth of that. The fence's
        expectation rides on the write itself (a message carries one
        expectation, and this write has none of its own). ``Nats-Msg-Id`` is
        the group id: an attempt delayed past a lost answer and the attempt
        that replaced it are one message to the stream's duplicate window, so
        a write found landed and written over since is never stored again."""
        fence = self.fence
        subject, value, headers = self.single_message(group_id, w)
        reply = await self._nc.request(subject, value, headers=headers, timeout=self._timeout)
        ack = json.loads(reply.data)
        err = ack.get("error")
        if err is None:
            if ack.get("duplicate"):  # an earlier attempt landed: its revision is the key's, unless written since
                return _landed_from(group_id, {w.key: await self.read(w.key)})
            return Landed(group_id, {w.key: int(ack["seq"])})
        if err.get("err_code") == EXPECTATION_IN_PROCESS:
            raise ExpectationInProcess(group_id)
        if err.get("err_code") == WRONG_LAST_SEQUENCE and fence is not None:
            log.warning("write %s refused: the fence moved (another daemon is active)", group_id)
            self.fence_moved = True
            return Fenced(group_id)
        if err.get("code") == 503:
            raise nats.errors.NoRespondersError
        raise BatchRefused(f"{self.bucket}: {err.get('description')} (err_code {err.get('err_code')})")


def _ttl(seconds: float) -> str:
    """A per-message TTL header: whole seconds, at least one."""
    return f"{max(1, math.ceil(seconds))}s"


def _landed_from(group_id: str, current: dict[str, StoredEntry | None]) -> Landed:
    """A group found landed by reading its keys back: only keys that still hold
    this group's writes (``batch``) give its revisions; a key written again
    since (by a later group) is left out, so nobody takes a later revision for
    this group's value."""
    return Landed(group_id, {k: e.revision for k, e in current.items()
                             if e is not None and e.value is not None and e.value.get("batch") == group_id})
