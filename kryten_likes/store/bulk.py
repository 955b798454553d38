"""Reading many keys at once, for tools (``kryten-likes export``): every live
key of a bucket in chunks, and the last values of a chunk of keys in one
request. Memory is bounded by the chunk and the window, never by the bucket.

Why not a subject filter: a key here holds ``/`` (``ns/default/items/x``),
and a NATS subject filter matches whole dot-separated tokens, so the key is
one token of ``$KV.<bucket>.<key>``: no filter can choose one namespace's
items. A reader takes the last value of every key (``$KV.<bucket>.>``,
deliver last per subject) and keeps what it wants.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from nats.js.errors import KeyNotFoundError, NotFoundError
from nats.js.kv import KV_DEL, KV_PURGE

from .last_per_key import last_per_key

WINDOW = 1000  # messages the server sends ahead of what was taken
CHUNK = 256  # documents handed on at once (and keys asked for in one batched get)
IDLE = 2.0  # seconds without a message before the consumer is asked whether anything is left

Document = tuple[str, dict]  # (key, value)


class NoBucket(Exception):
    """The bucket does not exist on this server."""


class ReadFailed(Exception):
    """The server refused a read."""


async def each_chunk(js: Any, bucket: str, take: Callable[[list[Document]], Awaitable[None]]) -> None:
    """Hand every live key of ``bucket`` with its value to ``take``, at most
    ``CHUNK`` at a time, each once, in the order the server sends them.

    A push consumer with a window (``last_per_key``): the server sends at
    most ``WINDOW`` messages ahead of the last acknowledged, and ``take`` runs
    inside the subscription's callback, so a slow ``take`` (a slow stdout)
    holds the server back rather than filling memory. The end is a message
    with no more pending; if the last keys expired (TTL) before they were
    sent, no message says so, and the consumer is asked instead.
    """
    try:
        info = await js.stream_info(f"KV_{bucket}")
    except NotFoundError:
        raise NoBucket(f"no bucket {bucket} on this server: has kryten-likes run against it?") from None
    if not info.state.messages:
        return
    reader = _ChunkReader(f"$KV.{bucket}.", take)
    async with last_per_key(js, bucket, reader.on_msg, window=WINDOW, ack_wait=300.0) as sub:
        await reader.until_read(sub)
        if reader.failed:
            raise reader.failed[0]


class _ChunkReader:
    """One read of ``each_chunk``: the subscription's callback gathers chunks,
    and an idle check asks the consumer whether anything is left."""

    def __init__(self, prefix: str, take: Callable[[list[Document]], Awaitable[None]]) -> None:
        self.prefix = prefix
        self.take = take
        self.chunk: list[Document] = []
        self.received = 0
        self.done = asyncio.Event()
        self.failed: list[BaseException] = []
        self.turn = asyncio.Lock()  # the callback or the idle check, never both

    async def hand_on(self) -> None:
        if self.chunk:
            batch, self.chunk = self.chunk, []
            await self.take(batch)

    async def on_msg(self, msg: Any) -> None:
        if self.done.is_set():
            return
        try:
            async with self.turn:
                self.received += 1  # counted once handed on: the idle check must not end before it
                md = msg.metadata
                if md.num_delivered == 1 and (value := _value(msg)) is not None:  # a redelivery was taken
                    self.chunk.append((msg.subject[len(self.prefix):], value))
                last = md.num_pending == 0
                if last or len(self.chunk) >= CHUNK:
                    await self.hand_on()
                if last or self.received % max(1, WINDOW // 2) == 0:
                    await msg.ack()  # everything up to here: the server sends on
            if last:
                self.done.set()
        except Exception as exc:  # raised in a callback it would only reach nats-py's error handler
            self.failed.append(exc)
            self.done.set()

    async def until_read(self, sub: Any) -> None:
        """Wait for the end; after ``IDLE`` seconds with no message, ask the consumer."""
        seen = -1
        while not self.done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.done.wait(), IDLE)
            if self.done.is_set() or self.received != seen:
                seen = self.received
                continue
            async with self.turn:
                ci = await sub.consumer_info()
                if ci.num_pending == 0 and ci.delivered.consumer_seq <= self.received:
                    await self.hand_on()
                    self.done.set()


async def last_values(nc: Any, bucket: str, keys: list[str], timeout: float = 5.0) -> dict[str, dict]:
    """The live value of each of ``keys`` that has one (absent and deleted keys
    are left out), in one batched direct get (nats-server 2.11+; one reply a
    key found, then an end of batch); one KV get a key where the bucket does
    not allow direct gets."""
    if not keys:
        return {}
    prefix = f"$KV.{bucket}."
    out: dict[str, dict] = {}
    end = asyncio.Event()
    status: list[tuple[str, str]] = []

    async def on_reply(msg: Any) -> None:  # a callback: one task for the batch, not one per reply
        headers = msg.headers or {}
        if "Status" in headers:
            status.append((headers["Status"], str(headers.get("Description", "")).strip()))
            end.set()
        elif (value := _value(msg)) is not None:
            out[headers["Nats-Subject"][len(prefix):]] = value

    sub = await nc.subscribe(nc.new_inbox(), cb=on_reply)
    try:
        request = {"multi_last": [prefix + k for k in keys], "batch": len(keys)}
        await nc.publish(f"$JS.API.DIRECT.GET.KV_{bucket}", json.dumps(request).encode(), reply=sub.subject)
        await asyncio.wait_for(end.wait(), timeout)
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    code, why = status[0]
    if code in ("204", "404"):  # the end of the batch; none of the keys is stored
        return out
    if code == "503":  # no direct gets on this bucket's stream
        return await _one_by_one(nc.jetstream(), bucket, keys)
    raise ReadFailed(f"{bucket}: direct get answered {code} {why}")


async def _one_by_one(js: Any, bucket: str, keys: list[str]) -> dict[str, dict]:
    kv = await js.key_value(bucket)

    async def one(key: str) -> tuple[str, dict | None]:
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:  # absent, or deleted (KeyDeletedError is one)
            return key, None
        return key, _json_object(entry.value)

    return {k: v for k, v in await asyncio.gather(*map(one, keys)) if v is not None}


def _value(msg: Any) -> dict | None:
    """A KV message's JSON object; None for a delete, a purge or anything else."""
    if (msg.headers or {}).get("KV-Operation") in (KV_DEL, KV_PURGE):
        return None
    return _json_object(msg.data)


def _json_object(data: bytes | None) -> dict | None:
    if not data:
        return None
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
