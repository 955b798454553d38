"""A client command's exchange with the daemon: one NATS request on
`{subject_prefix}.playlist.cmd.{command}` (the wire contract), its reply
judged by its status and printed for a person, or verbatim with `--json`.

Every way of getting no reply (no server, no responder, no reply in time)
is one outcome, `EXIT_NO_ANSWER`, with a line that says which.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nats.errors
from attrs import frozen
from nats.aio.client import Client as NatsClient

from kryten_likes.cli_arguments import CONFIG_NAMESPACE
from kryten_likes.config import Config, nats_options

__all__ = ["DEFAULT_NATS_URL", "EXIT_ERROR_REPLY", "EXIT_NO_ANSWER", "EXIT_OK", "EXIT_USAGE", "PROG", "Request",
           "cell_text", "error_line", "plural", "resolve_client_url", "run_client"]

PROG = "kryten-likes"
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"

EXIT_OK = 0
EXIT_ERROR_REPLY = 1
EXIT_USAGE = 2
EXIT_NO_ANSWER = 3


@frozen
class Request:
    """A client request: the contract's command word and its JSON body."""

    command: str
    body: Mapping[str, Any]


class _NoAnswer(Exception):
    """Nobody answered: no server, no responder, or no reply in time."""


def resolve_client_url(config: Config, cli_url: str | None) -> str:
    """The server a client command talks to (comma-separated when several).

    In order: `--nats-url`; `[nats] servers`; the URL the daemon wrote to
    `{data_dir}/nats.url` when it started its embedded server; the default.
    """
    if cli_url:
        return cli_url
    if config.nats.servers:
        return ",".join(config.nats.servers)
    try:
        written = (Path(config.storage.data_dir) / "nats.url").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        written = ""
    return written or DEFAULT_NATS_URL


def run_client(args: argparse.Namespace, config: Config) -> int:
    """Ask once; or, for `watch`, redraw until Ctrl-C, an error or `--count` screens."""
    if not getattr(args, "watch", False):
        return _ask_once(args, config)
    shown = 0
    try:
        while True:
            if sys.stdout.isatty():
                print("\033[H\033[2J", end="")  # clear the screen between frames
            code = _ask_once(args, config)
            shown += 1
            if code != EXIT_OK or (args.count and shown >= args.count):
                return code
            time.sleep(args.interval)  # the refresh period of a screen, not synchronisation
    except KeyboardInterrupt:
        return 130


def _ask_once(args: argparse.Namespace, config: Config) -> int:
    request: Request = args.request(args)
    body = dict(request.body, correlation_id=f"{PROG}-{uuid.uuid4().hex[:12]}")
    if args.namespace is not None:
        # Sent only when asked for: absent means the daemon's own namespace.
        body["namespace"] = (
            config.analytics.namespace if args.namespace == CONFIG_NAMESPACE else args.namespace
        )
    url = resolve_client_url(config, args.nats_url)
    subject = f"{config.nats.subject_prefix}.playlist.cmd.{request.command}"
    try:
        data = asyncio.run(_ask(url, subject, json.dumps(body).encode(), args.timeout, nats_options(config)))
    except KeyboardInterrupt:
        return 130  # the shell's convention for a command stopped by Ctrl-C
    except _NoAnswer as exc:
        print(f"{PROG}: no answer from kryten-likes at {url} on {subject} — "
              f"is the daemon running? ({exc})", file=sys.stderr)
        return EXIT_NO_ANSWER
    try:
        reply = json.loads(data)
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        print(f"error: invalid_reply (not a JSON object: {data[:200]!r})", file=sys.stderr)
        return EXIT_ERROR_REPLY
    status = reply.get("status")
    if args.json:
        print(data.decode("utf-8", "replace"))
    elif status in ("ok", "duplicate"):
        print(args.render(reply, args))
    if status in ("ok", "duplicate"):
        return EXIT_OK
    if not args.json:
        print(error_line(reply), file=sys.stderr)
    return EXIT_ERROR_REPLY


async def _ask(url: str, subject: str, payload: bytes, timeout: float, options: Mapping[str, Any]) -> bytes:
    """One request/reply; every way of getting no reply is a `_NoAnswer`."""
    connect_errors: list[Exception] = []

    async def remember(exc: Exception) -> None:
        connect_errors.append(exc)

    client = NatsClient()
    try:
        try:
            # One quick try per server: a terminal user wants an answer, not
            # nats-py's default of a minute of reconnecting.
            await asyncio.wait_for(
                client.connect(
                    [server.strip() for server in url.split(",")],
                    name=PROG,
                    connect_timeout=timeout,
                    allow_reconnect=False,
                    max_reconnect_attempts=1,
                    reconnect_time_wait=0,
                    error_cb=remember,
                    **options,
                ),
                timeout,
            )
        except (OSError, nats.errors.Error, asyncio.TimeoutError) as exc:
            cause = connect_errors[-1] if connect_errors else exc
            raise _NoAnswer(f"cannot connect: {_describe(cause)}") from None
        try:
            reply = await client.request(subject, payload, timeout=timeout)
        except nats.errors.NoRespondersError:
            raise _NoAnswer("no responders") from None
        except asyncio.TimeoutError:  # nats.errors.TimeoutError is one too
            raise _NoAnswer(f"no reply within {timeout:g} s") from None
        return reply.data
    finally:
        await client.close()


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --- words for replies, shared by every command's rendering


def error_line(reply: Mapping[str, Any]) -> str:
    word = reply.get("error") or "unknown_error"
    if reply.get("status") != "error":
        word = "invalid_reply"
    notes = []
    if reply.get("detail"):
        notes.append(str(reply["detail"]))
    if reply.get("retry_after_seconds") is not None:
        notes.append(f"retry after {reply['retry_after_seconds']:g} s")
    if word == "not_current" and reply.get("video_id"):
        notes.append(f"now playing: {reply['video_id']}")
    if reply.get("status") not in ("ok", "duplicate", "error"):
        notes.append(f"unknown status {reply.get('status')!r}")
    return f"error: {word}" + (f" ({'; '.join(notes)})" if notes else "")


def plural(n: object, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def cell_text(value: object) -> str:
    """A value as one cell or line: None as `-`, a string as it is, else JSON."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)
