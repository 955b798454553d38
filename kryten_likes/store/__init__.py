"""KV access: key encoding, atomic batches, bucket set-up and start-up scans."""

from .batch import AtomicBucket, BatchRefused
from .values import Conflict, Fence, Fenced, KvWrite, Landed, StoredEntry
from .buckets import StoreError, open_buckets, scan, scan_each
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

__all__ = [
    "ANALYTICS_BUCKET", "LIKES_BUCKET", "AtomicBucket", "BatchRefused", "Conflict", "Fence", "Fenced", "KvWrite",
    "Landed", "StoreError", "StoredEntry", "decode_token", "dedupe_key", "encode_token",
    "global_key", "item_key", "likes_key", "now_playing_key", "open_buckets", "playlist_key",
    "ranking_key", "scan", "scan_each", "split_key",
]
