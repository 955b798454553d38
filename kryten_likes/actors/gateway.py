"""gateway: the bus side. Requests in, validated messages to the actors.

Theory of operation
-------------------
The core is ``decode``: bytes and a command name in, one effect out — a
message for the actor that answers it, or an ``invalid_request`` reply that
names the field. It never raises on input: every request gets a reply.

The shell owns the NATS side: the command subscriptions (raw nats-py, because
kryten-py's ``subscribe_request_reply`` answers bad JSON with a bare
``{"error": ...}`` instead of the contract's reply), admission (a bound on
requests inside the daemon; past it, ``unavailable`` at once). The
bridge's events are read by ``kryten_likes.bridge_events`` (for the event
feed, ``events.py``), and the contract's rules live in ``kryten_likes.contract``.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from .. import wire
from ..contract import (
    ID_MAX_LEN, MAX_BODY, MAX_CORRELATION_ID, MEDIA_TYPE_MAX_LEN, NAMESPACE_PATTERN, TITLE_MAX_LEN,
    TOP_LIMIT_DEFAULT, TOP_LIMIT_MAX, USERNAME_MAX_LEN, WINDOWS, fold_user, good_correlation_id, has_control,
)
from ..messages import AdjustRequested, ApplyItem, ApplyRequested, Inbound, LikeRequested, NowPlayingAsked, ReplyTo
from ..messages import LikersAsked, StatsAsked, TopAsked, UnlikeRequested, UserLikesAsked
from ..store.keys import MAX_KEY_TOKEN, fits_key

# The contract's rules live in kryten_likes.contract; these names stay here
# for the modules and tests that read them off the gateway.
__all__ = [
    "ADJUSTABLE", "COMMANDS", "Gateway", "Inbound", "Invalid", "MAX_ADJUSTED", "MAX_APPLY_ITEMS", "MAX_BODY",
    "MAX_KEY_TOKEN", "TOP_LIMIT_MAX", "decode", "fits_key", "fold_user",
]

COMMANDS = ("like", "now_playing", "top_liked", "top_played", "stats", "queue_apply", "adjust", "likers",
            "user_likes", "unlike", "top_curators")
PAGE_DEFAULT = 20  # likers, user_likes
CURSOR_MAX_LEN = 1000
ADJUSTABLE = ("like_count", "play_count")
MAX_ADJUSTED = 2**53 - 1  # the largest integer every JSON reader of KV holds exactly
MAX_APPLY_ITEMS = 500


class Invalid(Exception):
    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field}: {why}")
        self.field, self.why = field, why


def _opt_str(body: dict, field: str, max_len: int, *, key: bool = False) -> str | None:
    v = body.get(field)
    if v is None:
        return None
    if not isinstance(v, str):
        raise Invalid(field, "must be a string")
    if not 1 <= len(v) <= max_len:
        raise Invalid(field, f"must be 1-{max_len} characters")
    if has_control(v):
        raise Invalid(field, "must not hold control characters")
    if key and not fits_key(v):
        raise Invalid(field, f"too long to store: its KV key token would exceed {MAX_KEY_TOKEN} characters")
    return v


def _user(body: dict) -> str:
    raw = body.get("username")
    if raw is None:
        raise Invalid("username", "is required")
    if not isinstance(raw, str):
        raise Invalid("username", "must be a string")
    user = fold_user(raw)
    if not 1 <= len(user) <= USERNAME_MAX_LEN:
        raise Invalid("username", f"must be 1-{USERNAME_MAX_LEN} characters")
    if has_control(user):
        raise Invalid("username", "must not hold control characters")
    return user


def _limit(body: dict, default: int = TOP_LIMIT_DEFAULT) -> int:
    v = body.get("limit", default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise Invalid("limit", "must be an integer")
    if not 1 <= v <= TOP_LIMIT_MAX:
        raise Invalid("limit", f"must be 1-{TOP_LIMIT_MAX}")
    return v


def _window(body: dict) -> str:
    v = body.get("window", "all")
    if v is None:
        return "all"
    if v not in WINDOWS:
        raise Invalid("window", f"must be one of {', '.join(WINDOWS)}")
    return v


def decode(req: Inbound, default_namespace: str) -> Any:
    """One request → the message that answers it, or an invalid_request reply."""
    to = req.reply
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
        good_cid = good_correlation_id(cid)
        if good_cid:
            to = attrs.evolve(to, correlation_id=cid)
        if len(req.data) > MAX_BODY:  # read anyway (NATS bounds it) so the refusal echoes correlation_id
            raise Invalid("body", f"larger than {MAX_BODY} bytes")
        if cid is not None and not good_cid:
            raise Invalid("correlation_id", f"must be a string of at most {MAX_CORRELATION_ID} characters")
        ns = body.get("namespace")
        if ns is None:
            ns = default_namespace
        elif not isinstance(ns, str) or not NAMESPACE_PATTERN.fullmatch(ns):
            raise Invalid("namespace", f"must match {NAMESPACE_PATTERN.pattern}")
        return _route(req.command, body, to, ns)
    except Invalid as exc:
        return wire.error(to, "invalid_request", str(exc))


def _route(command: str, body: dict, to: ReplyTo, ns: str) -> Any:
    if command == "like":
        user = _user(body)  # checked first: a request bad in both is refused for its username
        return LikeRequested(to, ns, user, _opt_str(body, "video_id", ID_MAX_LEN, key=True), body["username"])
    if command == "unlike":
        user = _user(body)
        return UnlikeRequested(to, ns, user, _opt_str(body, "video_id", ID_MAX_LEN, key=True), body["username"])
    if command == "likers":
        return LikersAsked(to, ns, _opt_str(body, "video_id", ID_MAX_LEN, key=True), _limit(body, PAGE_DEFAULT),
                           _opt_str(body, "cursor", CURSOR_MAX_LEN))
    if command == "user_likes":
        user = _user(body)
        return UserLikesAsked(to, ns, user, _limit(body, PAGE_DEFAULT), _opt_str(body, "cursor", CURSOR_MAX_LEN),
                              body["username"])
    if command == "now_playing":
        return NowPlayingAsked(to)
    if command in ("top_liked", "top_played", "top_curators"):
        return TopAsked(to, ns, command[4:], _limit(body), _window(body))
    if command == "stats":
        return StatsAsked(to, ns, _opt_str(body, "video_id", ID_MAX_LEN, key=True),
                          _opt_str(body, "playlist_id", ID_MAX_LEN, key=True))
    if command == "queue_apply":
        playlist_id = _opt_str(body, "playlist_id", ID_MAX_LEN, key=True)
        if playlist_id is None:
            raise Invalid("playlist_id", "is required")
        return ApplyRequested(to, ns, playlist_id, _apply_items(body), _opt_str(body, "requested_by", 200))
    if command == "adjust":
        return _adjustment(body, to, ns)
    raise Invalid("command", f"unknown command {command!r}")


def _adjustment(body: dict, to: ReplyTo, ns: str) -> AdjustRequested:
    vid = _opt_str(body, "video_id", ID_MAX_LEN, key=True)
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
            vid = _opt_str(it, "video_id", ID_MAX_LEN, key=True)
            mtype = _opt_str(it, "type", MEDIA_TYPE_MAX_LEN)
            title = _opt_str(it, "title", TITLE_MAX_LEN)
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


class Gateway:
    """The pure core as an actor: decode each inbound request."""

    def __init__(self, default_namespace: str) -> None:
        self.default_namespace = default_namespace

    def held_requests(self) -> list:
        return []  # each request it takes is answered or passed on in the same step

    def step(self, msg: object, now: float) -> list:
        if isinstance(msg, Inbound):
            return [decode(msg, self.default_namespace)]
        raise TypeError(f"gateway cannot take {msg!r}")
