"""Likes from the channel chat: ``!like``, ``!unlike``, ``!mylikes`` and ``!top``.

The bridge publishes chat as ``chatMsg`` RawEvents; kryten-py's client parses
them (``ChatMessageEvent``, with the shadow-mute flag) and we turn a command
word into the same messages a bus request becomes (through the gateway's
``decode``, so the same validation), with a ``ReplyTo`` that names the chat
user instead of a reply subject.

The bot speaks rarely (``ChatVoice``, a pure core): only when it is useful —
a like or an unlike that counted, nothing playing, an unlike refused (not
liked, too late), a user's own likes, a top list — at most once per user
per ``reply_window_seconds`` and ``max_replies_per_minute`` in all.
Duplicates and rate-limited requests stay silent: answering them would be
the flood. Titles and names are cut so that a line stays short.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections import deque
from typing import Any

import attrs

from .config import ChatSection
from .contract import WINDOWS
from .messages import Inbound, LikeRequested, ReplyTo, TopAsked, UnlikeRequested, UserLikesAsked

log = logging.getLogger(__name__)

CHAT_LIMIT = 3  # items in a chat answer: !top, !mylikes
PART_MAX = 60  # characters of one title, video id or name in a bot line
LINE_MAX = 240  # CyTube cuts a chat message at 240 characters
WINDOW_WORDS = {"all": "", "day": " today", "week": " this week", "month": " this month"}

ChatRequest = LikeRequested | UnlikeRequested | UserLikesAsked | TopAsked


@attrs.frozen
class ChatLine:
    username: str
    message: str
    shadow: bool = False


def chat_request(line: ChatLine, cfg: ChatSection, namespace: str) -> ChatRequest | None:
    """A chat line → the message that serves it, or None (not ours, or ignored).

    ``!top`` takes an optional window word (``day``, ``week``, ``month``,
    ``all``); any other word is the all-time list."""
    if line.shadow or not line.username:
        return None
    if cfg.bot_username and line.username.casefold() == cfg.bot_username.casefold():
        return None
    words = line.message.strip().split()
    if not words:
        return None
    word = words[0].casefold()
    user = {"username": line.username}
    if word == cfg.like_command.casefold():
        return _decoded(line, "like", user, namespace, LikeRequested)
    if word == cfg.unlike_command.casefold():
        return _decoded(line, "unlike", user, namespace, UnlikeRequested)
    if word == cfg.mylikes_command.casefold():
        return _decoded(line, "user_likes", {**user, "limit": CHAT_LIMIT}, namespace, UserLikesAsked)
    if word == cfg.top_command.casefold():
        window = words[1].casefold() if len(words) > 1 else "all"
        if window not in WINDOWS:
            window = "all"
        return _decoded(line, "top_liked", {"limit": CHAT_LIMIT, "window": window}, namespace, TopAsked)
    return None


def _decoded(line: ChatLine, command: str, body: dict, namespace: str, kind: type) -> Any:
    """The gateway's own ``decode`` of a request built for the chat user; a
    request it refuses (a name the contract refuses) is None: say nothing."""
    from .actors.gateway import decode  # the same validation as bus requests

    to = ReplyTo(None, None, command, time.monotonic(), chat_user=line.username)
    decoded = decode(Inbound(to, json.dumps(body).encode()), namespace)
    return decoded if isinstance(decoded, kind) else None


def cut(text: Any, limit: int = PART_MAX) -> str:
    """One line of at most ``limit`` characters (whitespace runs become one space)."""
    text = re.sub(r"\s+", " ", str(text)).strip()
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def _likes(n: Any) -> str:
    return f"{n} like{'' if n == 1 else 's'}"  # "1 like", "0 likes"


class ChatVoice:
    """Decides what, if anything, the bot says about a reply."""

    def __init__(self, cfg: ChatSection) -> None:
        self.cfg = cfg
        self._last: dict[str, float] = {}
        self._spoken: deque[float] = deque()

    def line_for(self, to: ReplyTo, body: dict, now: float) -> str | None:
        user = to.chat_user
        if user is None:
            return None
        text = self._text(to.command, cut(user), body)
        if text is None:
            return None
        while self._spoken and now - self._spoken[0] >= 60.0:
            self._spoken.popleft()
        if len(self._spoken) >= self.cfg.max_replies_per_minute:
            return None
        key = user.casefold()
        if now - self._last.get(key, -math.inf) < self.cfg.reply_window_seconds:
            return None
        self._last[key] = now
        self._spoken.append(now)
        if len(self._last) > 10_000:  # forget users outside the window
            self._last = {u: t for u, t in self._last.items() if now - t < self.cfg.reply_window_seconds}
        return cut(text, LINE_MAX)

    @staticmethod
    def _text(command: str | None, user: str, body: dict) -> str | None:
        ok, error = body.get("status") == "ok", body.get("error")
        if command in ("like", "unlike") and error == "no_current_item":
            return f"{user}: nothing is playing right now"
        if command == "like" and ok:
            return f"{user} liked {cut(body.get('video_id'))} ({_likes(body.get('like_count'))})"
        if command == "unlike":
            if ok:
                return f"{user} took back their like of {cut(body.get('video_id'))} ({_likes(body.get('like_count'))})"
            if error == "not_liked":
                return f"{user}: nothing to take back"
            if error == "unlike_window_passed":
                return f"{user}: too late to take that like back"
            return None
        if command == "user_likes" and ok:
            text = f"{user}: {_likes(body.get('likes_given'))} given"
            items = body.get("items") or []
            if items:
                text += "; latest: " + ", ".join(_title(it) for it in items[:CHAT_LIMIT])
            return text
        if command == "top_liked" and ok:
            when = WINDOW_WORDS.get(body.get("window") or "all", "")
            items = body.get("items") or []
            if not items:
                return f"No likes{when or ' yet'}."
            return f"Top liked{when}: " + " · ".join(
                f"{i}. {_title(it)} ({it.get('count')})" for i, it in enumerate(items[:CHAT_LIMIT], 1))
        return None


def _title(item: dict) -> str:
    return cut(item.get("title") or item.get("video_id") or "?")


async def hear(event: Any, activation: Any, cfg: ChatSection, namespace: str) -> None:
    """A ``chatmsg`` from kryten-py: a command for us goes in as a request
    would (admission included); an unknown line, or one heard while standby
    (the active daemon hears it too), is ignored."""
    from .bus import admit

    if activation is None or not activation.taking_requests:
        return  # standby, or stepping down: the active daemon hears it too
    line = ChatLine(getattr(event, "username", ""), getattr(event, "message", ""),
                    bool(getattr(event, "shadow", False)))  # kryten-py's ChatMessageEvent
    request = chat_request(line, cfg, namespace)
    if request is not None:
        await admit(activation.bus, activation.router, request, lambda: None)


class ChatMouth:
    """Sends the voice's lines through kryten-py's ``send_chat`` from a task of
    its own (kryten-py paces chat with sleeps; no actor should wait on it)."""

    def __init__(self, kryten: Any, channel: str, send_stream: Any) -> None:
        self.kryten = kryten
        self.channel = channel
        self.send = send_stream

    def say(self, text: str) -> None:
        try:
            self.send.send_nowait(text)
        except Exception:  # full: the bot is behind; dropping a chat line is fine
            log.info("chat line dropped: %s", text)

    async def run(self, receive_stream: Any) -> None:
        async for text in receive_stream:
            try:
                await self.kryten.send_chat(self.channel, text)
            except Exception as exc:
                log.warning("chat line not sent: %s", exc)
