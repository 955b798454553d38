"""KV keys of the normative layout (docs/kv-schema.md), and the id encoding.

Keys may only hold ``A-Z a-z 0-9 - _ = . /`` and ``.``/``/`` carry structure,
so every id that goes into a key is a *token*: a safe id as it is, anything
else ``=`` + unpadded base64url of its UTF-8 bytes. ``=`` never starts a safe
id, so the mapping is reversible.
"""

from __future__ import annotations

import base64
import functools
import re

from ..contract import NAMESPACE_PATTERN

SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,200}")
# With the longest namespace and user tokens, a key whose id token is at most
# this long stays under 3.6 KB (nats-server refuses a protocol line over 4 KiB).
MAX_KEY_TOKEN = 3000

ANALYTICS_BUCKET = "kryten_playlist_analytics"
LIKES_BUCKET = "kryten_playlist_likes"
# The lone likes' journal (actors/like_journal.py): a bucket of the project's own,
# so that its single writes never queue behind the likes bucket's batches.
JOURNAL_BUCKET = "kryten_likes_journal"


class KeyError_(ValueError):
    """A value that cannot become part of a key."""


# A like's keys are made three to five times on its way (draft, landing,
# settling): a few thousand recent tokens save a regex match each time.
@functools.lru_cache(maxsize=16384)
def encode_token(raw: str) -> str:
    if SAFE_ID.fullmatch(raw):
        return raw
    if not raw:
        raise KeyError_("an id may not be empty")
    try:
        data = raw.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8 form, so no key
        raise KeyError_("an id must be valid Unicode text") from None
    return "=" + base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def fits_key(raw: str) -> bool:
    """Can this id go into a KV key? nats-server refuses a protocol line over
    4 KiB, and a 1000-character id of 3- or 4-byte characters encodes to
    up to 5 336 characters (docs/kv-schema.md's base64url), so such ids are refused."""
    return len(encode_token(raw)) <= MAX_KEY_TOKEN


def decode_token(token: str) -> str:
    if not token.startswith("="):
        if not SAFE_ID.fullmatch(token):
            raise KeyError_(f"not a key token: {token!r}")
        return token
    body = token[1:]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode("utf-8")


# (Sized for likes spread over thousands of namespaces: a key is made ~15
# times on a like's way. 256, then 4 096, were overrun by the spread bench's
# 10 000 namespaces, taken in turn, so every call missed: 0.6 µs more each.
# An entry is ~150 bytes: 16 384 of them, 2.4 MB at most.)
@functools.lru_cache(maxsize=16384)
def _ns(namespace: str) -> str:
    # The namespace is validated at the gateway and in config; checking again
    # here makes "no key outside ns/{ns}/" a property of this module alone.
    if not NAMESPACE_PATTERN.fullmatch(namespace):
        raise KeyError_(f"bad namespace: {namespace!r}")
    return f"ns/{namespace}"


def global_key(ns: str) -> str:
    return f"{_ns(ns)}/counters/global"


def item_key(ns: str, video_id: str) -> str:
    return f"{_ns(ns)}/items/{encode_token(video_id)}"


def playlist_key(ns: str, playlist_id: str) -> str:
    return f"{_ns(ns)}/playlists/{encode_token(playlist_id)}"


def now_playing_key(ns: str) -> str:
    return f"{_ns(ns)}/now_playing"


def ranking_key(ns: str, ranking: str) -> str:
    return f"{_ns(ns)}/rankings/top_{ranking}"


def likes_key(ns: str, video_id: str) -> str:
    return f"{_ns(ns)}/items/{encode_token(video_id)}/likes"


def dedupe_key(ns: str, video_id: str, user: str) -> str:
    return f"{_ns(ns)}/dedupe/{encode_token(video_id)}/{encode_token(user)}"


def record_key(ns: str, video_id: str, user: str) -> str:
    """A user's latest counted like of an item (a like record). The item and
    the user are separate *subject* tokens (``.``), so that one KV subject
    filter lists an item's likers (``record_filter(ns, video_id=…)``) or a
    user's likes (``record_filter(ns, user=…)``)."""
    return f"{_ns(ns)}/liked.{encode_token(video_id)}.{encode_token(user)}"


def record_filter(ns: str, *, video_id: str | None = None, user: str | None = None) -> str:
    item = encode_token(video_id) if video_id is not None else "*"
    who = encode_token(user) if user is not None else "*"
    return f"{_ns(ns)}/liked.{item}.{who}"


def user_key(ns: str, user: str) -> str:
    """A user's totals (``likes_given``) and their name as first seen."""
    return f"{_ns(ns)}/users/{encode_token(user)}"


def events_mark_key(ns: str) -> str:
    """Up to which KV revision of each bucket every change's bus event is published."""
    return f"{_ns(ns)}/events/published"


def journal_key(ns: str, entry_id: str) -> str:
    """A journalled like (bucket ``JOURNAL_BUCKET``); ``entry_id`` is its
    group's id, key-safe by its author."""
    if not SAFE_ID.fullmatch(entry_id):
        raise KeyError_(f"not a safe journal entry id: {entry_id!r}")
    return f"{_ns(ns)}/journal/{entry_id}"


def journal_mark_key(ns: str) -> str:
    """Up to which revision of ``JOURNAL_BUCKET`` the journalled likes are stored (likes bucket)."""
    return f"{_ns(ns)}/journal_mark"


def curator_key(ns: str, user: str) -> str:
    """A curator's totals: ``likes_received`` in the likes bucket, ``plays`` in
    the analytics bucket (each beside the counts it moves with)."""
    return f"{_ns(ns)}/curators/{encode_token(user)}"


def audit_key(ns: str, record_id: str) -> str:
    """An audit record of a count correction; ``record_id`` (time first, so
    keys sort by time) is made of key-safe characters by its author."""
    if not SAFE_ID.fullmatch(record_id):
        raise KeyError_(f"not a safe audit record id: {record_id!r}")
    return f"{_ns(ns)}/audit/{record_id}"


def split_key(key: str) -> tuple[str, tuple[str, ...]] | None:
    """``ns/{ns}/a/b`` → ``(ns, ("a", "b"))``; None for keys outside the layout."""
    parts = key.split("/")
    if len(parts) < 3 or parts[0] != "ns" or not NAMESPACE_PATTERN.fullmatch(parts[1]):
        return None
    return parts[1], tuple(parts[2:])
