"""`kryten-likes export`: a namespace's items, playlists or likes documents,
read from KV and written to stdout as they are read (CSV with a header, or
JSON lines).

Memory is bounded whatever the number of keys (``store/bulk.py``): a bucket
is read through a consumer that sends at most ``bulk.WINDOW`` keys ahead of
what was written, ``bulk.CHUNK`` documents at a time, and nothing is kept of
a chunk once its rows are written. ``items`` joins each chunk of analytics
item documents with their likes documents by one batched get of the chunk's
likes keys (no per-item round trip, no table of all counts); then a second
pass over the likes bucket finds the items liked but never seen played (a
likes document and no item document), again one batched get per chunk.

The daemon may move counts while an export runs: each row is its documents
as they were when read, not a snapshot of the whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

import nats.errors
from nats.aio.client import Client as NatsClient

from .store.bulk import Document, NoBucket, ReadFailed, each_chunk, last_values
from .store.keys import ANALYTICS_BUCKET, LIKES_BUCKET, KeyError_, decode_token, split_key

EXIT_OK, EXIT_FAILED, EXIT_NO_SERVER = 0, 1, 3

COLUMNS = {
    "items": ("video_id", "title", "play_count", "queue_count", "like_count", "last_played_at",
              "last_queued_at", "duration_seconds"),
    "playlists": ("playlist_id", "apply_count", "last_applied_at"),
    "likes": ("video_id", "title", "like_count", "updated_at"),
}
COUNTS = ("play_count", "queue_count", "like_count", "apply_count")  # 0 when a document has none

Row = dict[str, Any]


class NoServer(Exception):
    """No NATS server to read from."""


def export_command(what: str, fmt: str, namespace: str, url: str, options: Mapping[str, Any],
                   timeout: float, out: TextIO | None = None) -> int:
    """The CLI's `export`: rows to ``out`` (stdout); returns the exit code."""
    out = out or sys.stdout
    try:
        write = row_writer(fmt, out, COLUMNS[what])
        asyncio.run(_export(what, namespace, url, options, timeout, write))
        out.flush()
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `export | head`: the reader had enough
        with contextlib.suppress(OSError, ValueError):  # the interpreter's last flush must not fail again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except NoServer as exc:
        print(f"kryten-likes: cannot export from {url}: {exc}", file=sys.stderr)
        return EXIT_NO_SERVER
    except NoBucket as exc:
        print(f"kryten-likes: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (nats.errors.Error, ReadFailed, asyncio.TimeoutError, OSError) as exc:
        print(f"kryten-likes: export cut short: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def row_writer(fmt: str, out: TextIO, columns: tuple[str, ...]) -> Callable[[Row], None]:
    """JSON lines; or CSV, its header written now."""
    if fmt == "json":
        return lambda row: out.write(json.dumps(row, ensure_ascii=False) + "\n")
    rows = csv.writer(out, lineterminator="\n")
    rows.writerow(columns)
    return lambda row: rows.writerow([_cell(row[c]) for c in columns])


def _cell(v: object) -> str:
    if v is None:
        return ""
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


async def _export(what: str, ns: str, url: str, options: Mapping[str, Any], timeout: float,
                  write: Callable[[Row], None]) -> None:
    nc = await _connect(url, timeout, options)
    try:
        if what == "items":
            await _export_items(nc, ns, write)
            return
        bucket, shape, id_field = ((ANALYTICS_BUCKET, ("playlists", None), "playlist_id") if what == "playlists"
                                   else (LIKES_BUCKET, ("items", None, "likes"), "video_id"))

        async def take(docs: list[Document]) -> None:
            for key, value in docs:
                if (tok := _token(key, ns, shape)) is not None:
                    write(_row(what, _id(value, id_field, tok), value))

        await each_chunk(nc.jetstream(), bucket, take)
    finally:
        await nc.close()


async def _export_items(nc: Any, ns: str, write: Callable[[Row], None]) -> None:
    async def played(docs: list[Document]) -> None:
        items = [(key, value, tok) for key, value in docs if (tok := _token(key, ns, ("items", None))) is not None]
        likes = await last_values(nc, LIKES_BUCKET, [f"{key}/likes" for key, _, _ in items])
        for key, value, tok in items:
            write(_row("items", _id(value, "video_id", tok), value, likes.get(f"{key}/likes")))

    async def liked_only(docs: list[Document]) -> None:
        likes = [(key, value, tok) for key, value in docs
                 if (tok := _token(key, ns, ("items", None, "likes"))) is not None]
        items = await last_values(nc, ANALYTICS_BUCKET, [key.removesuffix("/likes") for key, _, _ in likes])
        for key, value, tok in likes:
            if key.removesuffix("/likes") not in items:  # else written with its item document
                write(_row("items", _id(value, "video_id", tok), value))

    js = nc.jetstream()
    await each_chunk(js, ANALYTICS_BUCKET, played)
    with contextlib.suppress(NoBucket):  # no likes bucket: nothing was liked
        await each_chunk(js, LIKES_BUCKET, liked_only)


def _token(key: str, ns: str, shape: tuple[str | None, ...]) -> str | None:
    """The id token of ``key`` if it is ``ns/{ns}/`` + ``shape`` (None: the token's place)."""
    split = split_key(key)
    if split is None or split[0] != ns or len(split[1]) != len(shape):
        return None
    parts = split[1]
    if any(want is not None and part != want for part, want in zip(parts, shape)):
        return None
    return parts[shape.index(None)]


def _id(value: dict, field: str, token: str) -> str:
    """The document's own id (docs/kv-schema.md: readers never need to decode a key)."""
    if isinstance(value.get(field), str):
        return value[field]
    try:
        return decode_token(token)
    except (KeyError_, ValueError):
        return token


def _row(what: str, ident: str, *values: dict | None) -> Row:
    """The columns of ``what``, each from the first of ``values`` that has it."""
    row: Row = {}
    for c in COLUMNS[what]:
        v = next((d[c] for d in values if d and d.get(c) is not None), None)
        row[c] = ident if c in ("video_id", "playlist_id") else 0 if v is None and c in COUNTS else v
    return row


async def _connect(url: str, timeout: float, options: Mapping[str, Any]) -> NatsClient:
    """One quick try per server, as the other client commands do."""
    errors: list[Exception] = []

    async def remember(exc: Exception) -> None:
        errors.append(exc)

    nc = NatsClient()
    try:
        await asyncio.wait_for(nc.connect([s.strip() for s in url.split(",")], name="kryten-likes-export",
                                          connect_timeout=timeout, allow_reconnect=False,
                                          max_reconnect_attempts=1, reconnect_time_wait=0, error_cb=remember,
                                          **options), timeout)
    except (OSError, nats.errors.Error, asyncio.TimeoutError) as exc:
        cause = errors[-1] if errors else exc
        raise NoServer(f"{type(cause).__name__}: {cause}".rstrip(": ")) from None
    return nc
