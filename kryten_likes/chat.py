"""Likes from the channel chat: ``!like`` and ``!top``.

The bridge publishes chat as ``chatMsg`` RawEvents; kryten-py's client parses
them (``ChatMessageEvent``, with the shadow-mute flag) and we turn a command
word into the same messages a bus request becomes, with a ``ReplyTo`` that
names the chat user instead of a reply subject.

The bot speaks rarely (``ChatVoice``, a pure core): only when it is useful —
a like that counted, or nothing playing — at most once per user per
``reply_window_seconds`` and ``max_replies_per_minute`` in all. Duplicates
and rate-limited likes stay silent: answering them would be the flood.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from typing import Any

import attrs

from .config import ChatSection
from .messages import Inbound, LikeRequested, ReplyTo, TopAsked

log = logging.getLogger(__name__)


@attrs.frozen
class ChatLine:
    username: str
    message: str
    shadow: bool = False


def chat_request(line: ChatLine, cfg: ChatSection, namespace: str) -> LikeRequested | TopAsked | None:
    """A chat line → the message that serves it, or None (not ours, or ignored)."""
    from .actors.gateway import decode  # the same validation as bus requests

    if line.shadow or not line.username:
        return None
    if cfg.bot_username and line.username.casefold() == cfg.bot_username.casefold():
        return None
    words = line.message.strip().split()
    if not words:
        return None
    word = words[0].casefold()
    to = ReplyTo(None, None, chat_user=line.username, received=time.monotonic())
    if word == cfg.like_command.casefold():
        decoded = decode(Inbound.of("like", _json({"username": line.username}), None), namespace)
        if not isinstance(decoded, LikeRequested):
            return None  # a name the contract refuses; say nothing
        return attrs.evolve(decoded, reply=attrs.evolve(to, command="like"))
    if word == cfg.top_command.casefold():
        return TopAsked(attrs.evolve(to, command="top_liked"), namespace, "liked", 3)
    return None


def _json(body: dict) -> bytes:
    import json
    return json.dumps(body).encode()


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
        text = self._text(to.command, user, body)
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
        return text

    @staticmethod
    def _text(command: str | None, user: str, body: dict) -> str | None:
        if command == "like":
            if body.get("status") == "ok":
                n = body.get("like_count")
                return f"{user} liked {body.get('video_id')} ({n} like{'s' if n != 1 else ''})"
            if body.get("error") == "no_current_item":
                return f"{user}: nothing is playing right now"
            return None
        if command == "top_liked" and body.get("status") == "ok":
            items = body.get("items") or []
            if not items:
                return "No likes yet."
            return "Top liked: " + " · ".join(
                f"{i}. {it.get('title') or it.get('video_id')} ({it.get('count')})" for i, it in enumerate(items, 1))
        return None


async def hear(event: Any, activation: Any, cfg: ChatSection, namespace: str) -> None:
    """A ``chatmsg`` from kryten-py: a command for us goes in as a request
    would (admission included); an unknown line, or one heard while standby
    (the active daemon hears it too), is ignored."""
    from .bus import admit

    if activation is None:
        return
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
