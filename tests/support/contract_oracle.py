"""The wire contract's rules, written out again from docs/contract.md for the
tests to judge by (an oracle), apart from ``kryten_likes.contract``: a test
that asked the code under test what the rule is could not catch it wrong.
"""

from __future__ import annotations

import json
import re
import unicodedata

MAX_BODY = 64 * 1024  # bytes of a request body
MAX_CORRELATION_ID = 200
USERNAME_MAX = 64  # characters, after folding
ID_MAX = 1000  # video_id, playlist_id
LIMIT_MAX = 100  # top_liked / top_played
NS_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")  # a namespace
KEY_CHARS = re.compile(r"[A-Za-z0-9_=./-]+")  # every character a KV key may hold
TOKEN_RE = re.compile(r"[A-Za-z0-9_=-]+")  # an encoded id in a key: never "/" nor "."
KEY_RE = re.compile(r"ns/[A-Za-z0-9_-]{1,64}/[A-Za-z0-9_=./-]+")  # a key of ours
ERROR_WORDS = {"invalid_request", "rate_limited", "no_current_item", "not_current", "unavailable",
               "internal_error", "enqueue_failed"}


def fold(name: str) -> str:
    """A username as the contract compares it: NFKC, then casefold."""
    return unicodedata.normalize("NFKC", name).casefold()


def has_control(s: str) -> bool:
    return any(unicodedata.category(c) == "Cc" for c in s)


def valid_correlation_id(data: bytes) -> str | None:
    """The request's correlation id when it has a valid one (a string of at most 200)."""
    try:
        body = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    cid = body.get("correlation_id") if isinstance(body, dict) else None
    return cid if isinstance(cid, str) and len(cid) <= MAX_CORRELATION_ID else None
