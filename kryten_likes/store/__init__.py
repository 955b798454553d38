"""KV access: key encoding, atomic batches, bucket set-up and start-up scans.

The pure parts (``values``, ``keys``, ``documents``) import nothing of nats, and
importing this package does not either: the names of the I/O modules (``batch``,
``buckets``) are loaded on first use (PEP 562), so a pure core that imports
``kryten_likes.store.values`` stays free of nats.
"""

from __future__ import annotations

import importlib
from typing import Any

from .values import Conflict, Fence, Fenced, KvWrite, Landed, StoredEntry
from .keys import (
    ANALYTICS_BUCKET,
    LIKES_BUCKET,
    decode_token,
    dedupe_key,
    encode_token,
    global_key,
    item_key,
    likes_key,
    now_playing_key,
    playlist_key,
    ranking_key,
    split_key,
)

# name → the I/O module (nats) that holds it, imported when the name is first asked for
_LAZY = {
    "AtomicBucket": "batch", "BatchRefused": "batch",
    "StoreError": "buckets", "open_buckets": "buckets", "open_journal": "buckets", "scan": "buckets", "scan_each": "buckets",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "ANALYTICS_BUCKET", "LIKES_BUCKET", "AtomicBucket", "BatchRefused", "Conflict", "Fence", "Fenced", "KvWrite",
    "Landed", "StoreError", "StoredEntry", "decode_token", "dedupe_key", "encode_token",
    "global_key", "item_key", "likes_key", "now_playing_key", "open_buckets", "playlist_key",
    "ranking_key", "scan", "scan_each", "split_key",
]
