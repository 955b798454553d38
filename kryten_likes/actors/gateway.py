"""gateway: the bus side. Requests in, validated messages to the actors.

Theory of operation
-------------------
The core is ``decode``: bytes and a command name in, one effect out — a
message for the actor that answers it, or an ``invalid_request`` reply that
names the field. It never raises on input: every request gets a reply.

The shell owns the NATS side: the command subscriptions (raw nats-py, because
kryten-py's ``subscribe_request_reply`` answers bad JSON with a bare
``{"error": ...}`` instead of the contract's reply), admission (a bound on
requests inside the daemon; past it, ``unavailable`` at once), and the
durable event feed that turns the bridge's ``changeMedia`` events into
``MediaChanged`` messages.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from typing import Any

import attrs

from .. import wire
from ..messages import Forward, LikeRequested, Media, MediaChanged, EventRef, NowPlayingAsked, ReplyTo, StatsAsked
from ..store import encode_token
from ..messages import AdjustRequested, ApplyItem, ApplyRequested, QueueObserved, TopAsked

COMMANDS = ("like", "now_playing", "top_liked", "top_played", "stats", "queue_apply", "adjust")
ADJUSTABLE = ("like_count", "play_count")
MAX_ADJUSTED = 2**53 - 1  # the largest integer every JSON reader of KV holds exactly
MAX_APPLY_ITEMS = 500
MAX_BODY = 64 * 1024
MAX_KEY_TOKEN = 3000  # with the longest namespace and user tokens, a key stays under 3.6 KB
NAMESPACE = re.compile(r"[A-Za-z0-9_-]{1,64}")
TOP_LIMIT_MAX = 100  # the largest ``limit`` of top_liked / top_played (docs/contract.md)
_BAD_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn"}


@attrs.frozen
class Inbound:
    """A raw request as it came off the bus."""

    command: str
    data: bytes
    reply_subject: str | None
    received: float = 0.0  # monotonic arrival time, for the latency histogram


class Invalid(Exception):
    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field}: {why}")
        self.field, self.why = field, why


def fold_user(name: str) -> str:
    """One CyTube user, whatever the case or Unicode form (docs/contract.md)."""
    if name.isascii():  # NFKC leaves ASCII alone, and casefold is lower() there
        return name.lower()
    return unicodedata.normalize("NFKC", name).casefold()


def _has_surrogate(text: str) -> bool:
    return not text.isascii() and any("\ud800" <= ch <= "\udfff" for ch in text)


def _has_control(text: str) -> bool:
    if text.isascii():  # the only bad ASCII characters are controls (Cc)
        return not text.isprintable()
    return any(unicodedata.category(ch) in _BAD_CATEGORIES for ch in text)


def _opt_str(body: dict, field: str, max_len: int, *, key: bool = False) -> str | None:
    v = body.get(field)
    if v is None:
        return None
    if not isinstance(v, str):
        raise Invalid(field, "must be a string")
    if not 1 <= len(v) <= max_len:
        raise Invalid(field, f"must be 1-{max_len} characters")
    if _has_control(v):
        raise Invalid(field, "must not hold control characters")
    if key and not fits_key(v):
        raise Invalid(field, f"too long to store: its KV key token would exceed {MAX_KEY_TOKEN} characters")
    return v


def fits_key(raw: str) -> bool:
    """Can this id go into a KV key? nats-server refuses a protocol line over
    4 KiB, and a 1000-character id of 3- or 4-byte characters encodes to
    up to 5 336 characters (docs/kv-schema.md's base64url), so such ids are refused."""
    return len(encode_token(raw)) <= MAX_KEY_TOKEN


def _user(body: dict) -> str:
    raw = body.get("username")
    if raw is None:
        raise Invalid("username", "is required")
    if not isinstance(raw, str):
        raise Invalid("username", "must be a string")
    user = fold_user(raw)
    if not 1 <= len(user) <= 64:
        raise Invalid("username", "must be 1-64 characters")
    if _has_control(user):
        raise Invalid("username", "must not hold control characters")
    return user


def _limit(body: dict) -> int:
    v = body.get("limit", 10)
    if v is None:
        return 10
    if isinstance(v, bool) or not isinstance(v, int):
        raise Invalid("limit", "must be an integer")
    if not 1 <= v <= TOP_LIMIT_MAX:
        raise Invalid("limit", f"must be 1-{TOP_LIMIT_MAX}")
    return v


def decode(req: Inbound, default_namespace: str) -> Any:
    """One request → the message that answers it, or an invalid_request reply."""
    to = ReplyTo(req.reply_subject, None, req.command, req.received)
    try:
        try:
            body = json.loads(req.data.decode("utf-8")) if req.data else {}
        except UnicodeDecodeError:
            raise Invalid("body", "not UTF-8") from None
        except RecursionError:
            raise Invalid("body", "nested too deeply") from None
        except ValueError:
            raise Invalid("body", "not JSON") from None
        if not isinstance(body, dict):
            raise Invalid("body", "not a JSON object")
        cid = body.get("correlation_id")
        good_cid = wire.good_correlation_id(cid)
        if good_cid:
            to = attrs.evolve(to, correlation_id=cid)
        if len(req.data) > MAX_BODY:  # read anyway (NATS bounds it) so the refusal echoes correlation_id
            raise Invalid("body", f"larger than {MAX_BODY} bytes")
        if cid is not None and not good_cid:
            raise Invalid("correlation_id", "must be a string of at most 200 characters")
        ns = body.get("namespace")
        if ns is None:
            ns = default_namespace
        elif not isinstance(ns, str) or not NAMESPACE.fullmatch(ns):
            raise Invalid("namespace", "must match ^[A-Za-z0-9_-]{1,64}$")
        return _route(req.command, body, to, ns)
    except Invalid as exc:
        return wire.error(to, "invalid_request", str(exc))


def _route(command: str, body: dict, to: ReplyTo, ns: str) -> Any:
    if command == "like":
        return Forward("rate_buckets", LikeRequested(to, ns, _user(body), _opt_str(body, "video_id", 1000, key=True)))
    if command == "now_playing":
        return Forward("playback", NowPlayingAsked(to))
    if command in ("top_liked", "top_played"):
        return Forward("counter_writer", TopAsked(to, ns, command[4:], _limit(body)))
    if command == "stats":
        return Forward("counter_writer", StatsAsked(to, ns, _opt_str(body, "video_id", 1000, key=True),
                                                    _opt_str(body, "playlist_id", 1000, key=True)))
    if command == "queue_apply":
        playlist_id = _opt_str(body, "playlist_id", 1000, key=True)
        if playlist_id is None:
            raise Invalid("playlist_id", "is required")
        return Forward("apply", ApplyRequested(to, ns, playlist_id, _apply_items(body),
                                               _opt_str(body, "requested_by", 200)))
    if command == "adjust":
        return Forward("counter_writer", _adjustment(body, to, ns))
    raise Invalid("command", f"unknown command {command!r}")


def _adjustment(body: dict, to: ReplyTo, ns: str) -> AdjustRequested:
    vid = _opt_str(body, "video_id", 1000, key=True)
    if vid is None:
        raise Invalid("video_id", "is required")
    given = [f for f in ADJUSTABLE if body.get(f) is not None]
    if not given:
        raise Invalid("like_count", "one of like_count and play_count is required")
    if len(given) > 1:
        raise Invalid("play_count", "give like_count or play_count, not both")
    field, n = given[0], body[given[0]]
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_ADJUSTED:
        raise Invalid(field, f"must be an integer from 0 to {MAX_ADJUSTED}")
    reason = _opt_str(body, "reason", 500)
    if reason is None:
        raise Invalid("reason", "is required")
    return AdjustRequested(to, ns, vid, field, n, reason, _opt_str(body, "by", 200))


def _apply_items(body: dict) -> tuple[ApplyItem, ...]:
    items = body.get("items")
    if not isinstance(items, list):
        raise Invalid("items", "must be a list")
    if not 1 <= len(items) <= MAX_APPLY_ITEMS:
        raise Invalid("items", f"must hold 1-{MAX_APPLY_ITEMS} items")
    out = []
    for i, it in enumerate(items):
        if not isinstance(it, dict):
            raise Invalid(f"items[{i}]", "must be an object")
        try:
            vid = _opt_str(it, "video_id", 1000, key=True)
            mtype = _opt_str(it, "type", 100)
            title = _opt_str(it, "title", 1000)
        except Invalid as exc:
            raise Invalid(f"items[{i}].{exc.field}", exc.why) from None
        if vid is None:
            raise Invalid(f"items[{i}].video_id", "is required")
        if mtype is None:
            raise Invalid(f"items[{i}].type", "is required")
        dur = it.get("duration_seconds")
        if dur is not None and (isinstance(dur, bool) or not isinstance(dur, int) or dur < 0):
            raise Invalid(f"items[{i}].duration_seconds", "must be a non-negative integer")
        out.append(ApplyItem(vid, mtype, title, dur))
    return tuple(out)


def media_changed(raw: bytes, ref: EventRef | None) -> MediaChanged | None:
    """The bridge's changeMedia RawEvent → MediaChanged; None if it is not one.

    kryten-py's ChangeMediaEvent drops ``currentTime``, which tells a re-sent
    item from a new play, so the RawEvent payload is read here directly.
    """
    try:
        payload = json.loads(raw)["payload"]
    except (ValueError, KeyError, TypeError):
        return None
    media = _media(payload)
    if media is None:
        return None
    t = payload.get("currentTime", 0)
    t = float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) else 0.0
    return MediaChanged(media, t, ref)


def _media(raw: object) -> Media | None:
    if not isinstance(raw, dict):
        return None
    vid = raw.get("id")
    if not isinstance(vid, str) or not 1 <= len(vid) <= 1000 or _has_control(vid) or not fits_key(vid):
        return None  # an item we could neither key nor answer about
    secs = raw.get("seconds")
    dur = int(secs) if isinstance(secs, (int, float)) and not isinstance(secs, bool) and math.isfinite(secs) \
        and secs >= 0 else None
    title, mtype = _text(raw.get("title"), 1000), _text(raw.get("type"), 100)
    return Media(vid, mtype, title, dur)


def _text(v: object, max_len: int) -> str:
    """Free text from the bridge, made safe to store: a string, bounded, UTF-8 clean."""
    if not isinstance(v, str):
        return ""
    return v[:max_len].encode("utf-8", "replace").decode("utf-8")


def queue_observed(raw: bytes, ref: EventRef | None) -> QueueObserved | None:
    """The bridge's queue RawEvent (``payload.item.media``, ``payload.item.queueby``)."""
    try:
        item = json.loads(raw)["payload"]["item"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(item, dict):
        return None
    media = _media(item.get("media"))
    if media is None:
        return None
    by = item.get("queueby")
    return QueueObserved(media, by if isinstance(by, str) else None, ref)


class Gateway:
    """The pure core as an actor: decode each inbound request."""

    def __init__(self, default_namespace: str) -> None:
        self.default_namespace = default_namespace

    def step(self, msg: object, now: float) -> list:
        if isinstance(msg, Inbound):
            return [decode(msg, self.default_namespace)]
        raise TypeError(f"gateway cannot take {msg!r}")
