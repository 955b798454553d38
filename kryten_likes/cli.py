"""The `kryten-likes` console script: the daemon (`run`) and its terminal clients.

Each client subcommand is one NATS request on
`{subject_prefix}.playlist.cmd.{command}` (the wire contract), printed for a
person, or verbatim with `--json` for a script.

Exit codes: 0 the daemon said `ok` or `duplicate`; 1 it said `error` (or
answered something unreadable); 2 usage or config error; 3 nobody answered
(no server, no daemon, or no reply in time).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import re
import sys
import time
import tomllib
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import nats.errors
from attrs import frozen
from nats.aio.client import Client as NatsClient

from kryten_likes.contract import NAMESPACE_PATTERN
from kryten_likes.config import (
    Config, ConfigError, from_environment, load_config, nats_options, with_nats_url,
)

__all__ = ["DEFAULT_NATS_URL", "Request", "console_main", "main", "resolve_client_url"]

PROG = "kryten-likes"
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"

EXIT_OK = 0
EXIT_ERROR_REPLY = 1
EXIT_USAGE = 2
EXIT_NO_ANSWER = 3

# The fields every reply carries; `stats` prints everything else.
_COMMON_REPLY_FIELDS = frozenset({"correlation_id", "status", "error", "detail"})
# Stands for "the namespace of the config" when `--namespace` has no value.
_CONFIG_NAMESPACE = "\0config"


@frozen
class Request:
    """A client request: the contract's command word and its JSON body."""

    command: str
    body: Mapping[str, Any]


class _NoAnswer(Exception):
    """Nobody answered: no server, no responder, or no reply in time."""


class _BadInput(Exception):
    """A file named on the command line cannot be used."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits on --help and on usage errors
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    try:
        config = from_environment(load_config(args.config))
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{PROG}: config error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if args.subcommand == "run":
        # Imported here so that the clients need none of the daemon's machinery.
        from kryten_likes.daemon import run_daemon

        return run_daemon(with_nats_url(config, args.nats_url))
    if getattr(args, "handler", None) is not None:  # doctor, demo: whole commands of their own modules
        return args.handler(args, config)
    if args.subcommand == "export":  # reads KV itself: the daemon need not run
        from kryten_likes.export import export_command

        return export_command(args.what, args.format, args.namespace or config.analytics.namespace,
                              resolve_client_url(config, args.nats_url), nats_options(config), args.timeout)
    try:
        return _run_client(args, config)
    except _BadInput as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE


def console_main() -> NoReturn:
    sys.exit(main())


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


# --- the parser


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Likes and play analytics for a CyTube channel on the Kryten bus.",
        epilog="exit codes: 0 ok or duplicate, 1 the daemon answered an error, 2 usage or config error, "
               "3 no answer (daemon not running, no server), 130 interrupted",
    )
    subparsers = parser.add_subparsers(dest="subcommand", required=True, metavar="COMMAND")

    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--config", metavar="FILE", help="TOML config file (default: built-in defaults)")
    where.add_argument("--nats-url", metavar="URL", help="NATS server, overriding the config")

    client = argparse.ArgumentParser(add_help=False, parents=[where])
    client.add_argument("--timeout", type=_positive_seconds, default=5.0, metavar="SECONDS",
                        help="how long to wait for the daemon (default: 5)")
    client.add_argument("--json", action="store_true", help="print the daemon's reply as JSON")
    client.add_argument("--namespace", nargs="?", const=_CONFIG_NAMESPACE, type=_namespace, metavar="NS",
                        help="analytics namespace to ask about (alone: the config's)")

    subparsers.add_parser("run", parents=[where], help="run the daemon")

    like = subparsers.add_parser("like", parents=[client], help="like what is playing",
                                 epilog="example: kryten-likes like alice --video dQw4w9WgXcQ")
    like.add_argument("username", metavar="USERNAME")
    like.add_argument("--video", metavar="ID", help="like only if this video is still playing")
    like.set_defaults(request=_like_request, render=_render_like)

    top = subparsers.add_parser("top", parents=[client], help="most liked or most played items",
                                epilog="example: kryten-likes top played -n 20 --json")
    top.add_argument("ranking", choices=("liked", "played"))
    top.add_argument("-n", type=_limit, default=10, metavar="N", help="how many (1-100, default 10)")
    top.set_defaults(request=_top_request, render=_render_top)

    stats = subparsers.add_parser("stats", parents=[client], help="counters",
                                  epilog="example: kryten-likes stats --video dQw4w9WgXcQ --playlist friday")
    stats.add_argument("--video", metavar="ID", help="also the counters of this item")
    stats.add_argument("--playlist", metavar="ID", help="also the apply record of this playlist")
    stats.set_defaults(request=_stats_request, render=_render_stats)

    watch = subparsers.add_parser(
        "watch", parents=[client], help="the top list, redrawn every few seconds (Ctrl-C to stop)",
        epilog="example: kryten-likes watch liked -n 5 --interval 2")
    watch.add_argument("ranking", choices=("liked", "played"), nargs="?", default="liked")
    watch.add_argument("-n", type=_limit, default=10, metavar="N", help="how many (1-100, default 10)")
    watch.add_argument("--interval", type=_positive_seconds, default=5.0, metavar="SECONDS")
    watch.add_argument("--count", type=int, default=0, metavar="K", help="stop after K screens (0: never)")
    watch.set_defaults(request=_top_request, render=_render_top, watch=True)

    apply = subparsers.add_parser(
        "apply", parents=[client], help="enqueue a playlist's items on the channel (queue_apply)",
        description="Enqueue items through the bridge and count them. FILE is JSON (a list of items, or "
                    "an object with 'items') or TOML (an [[items]] array); each item has video_id and type, "
                    "optionally title and duration_seconds.")
    apply.add_argument("playlist_id", metavar="PLAYLIST_ID")
    apply.add_argument("file", metavar="FILE", help="the items, JSON or TOML (by extension)")
    apply.add_argument("--requested-by", metavar="NAME")
    apply.set_defaults(request=_apply_request, render=_render_apply)

    now_playing = subparsers.add_parser("now-playing", parents=[client], help="what plays now")
    now_playing.set_defaults(request=_now_playing_request, render=_render_now_playing)

    # doctor and demo: each module adds its own parser and runs its command.
    from kryten_likes import demo, doctor

    doctor.add_subparser(subparsers, where)
    demo.add_subparser(subparsers, where)

    export = subparsers.add_parser(
        "export", parents=[where], help="a namespace's items, playlists or likes, read from KV",
        description="Every document of a kind, streamed from KV to stdout as CSV (with a header) or "
                    "JSON lines. items: each item's counts, like_count included.",
        epilog="example: kryten-likes export items --format json > items.jsonl")
    export.add_argument("what", choices=("items", "playlists", "likes"))
    export.add_argument("--format", choices=("csv", "json"), default="csv", help="(default: csv)")
    export.add_argument("--namespace", type=_namespace, metavar="NS", help="(default: the config's)")
    export.add_argument("--timeout", type=_positive_seconds, default=5.0, metavar="SECONDS",
                        help="how long to wait for the server (default: 5)")

    adjust = subparsers.add_parser(
        "adjust", parents=[client], help="set an item's like or play count (through the daemon, audited)",
        epilog='example: kryten-likes adjust dQw4w9WgXcQ --likes 40 --reason "bot likes of 2026-01-02"')
    adjust.add_argument("video_id", metavar="VIDEO_ID")
    count = adjust.add_mutually_exclusive_group(required=True)
    count.add_argument("--likes", type=_whole_number, metavar="N", help="the new like_count")
    count.add_argument("--plays", type=_whole_number, metavar="N", help="the new play_count")
    adjust.add_argument("--reason", required=True, metavar="TEXT", help="why (1-500 characters, kept)")
    adjust.add_argument("--by", metavar="NAME", help="who asks (default: your login name)")
    adjust.set_defaults(request=_adjust_request, render=_render_adjust)
    return parser


def _positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return seconds


def _limit(text: str) -> int:
    if not re.fullmatch(r"\d+", text) or not 1 <= int(text) <= 100:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to 100: {text!r}")
    return int(text)


def _whole_number(text: str) -> int:
    if not re.fullmatch(r"\d+", text):
        raise argparse.ArgumentTypeError(f"must be a whole number (0 or more): {text!r}")
    return int(text)


def _namespace(text: str) -> str:
    if text != _CONFIG_NAMESPACE and NAMESPACE_PATTERN.fullmatch(text) is None:
        raise argparse.ArgumentTypeError(f"must match {NAMESPACE_PATTERN.pattern}: {text!r}")
    return text


# --- requests


def _like_request(args: argparse.Namespace) -> Request:
    body: dict[str, Any] = {"username": args.username}
    if args.video is not None:
        body["video_id"] = args.video
    return Request("like", body)


def _top_request(args: argparse.Namespace) -> Request:
    return Request(f"top_{args.ranking}", {"limit": args.n})


def _stats_request(args: argparse.Namespace) -> Request:
    body: dict[str, Any] = {}
    if args.video is not None:
        body["video_id"] = args.video
    if args.playlist is not None:
        body["playlist_id"] = args.playlist
    return Request("stats", body)


def _apply_request(args: argparse.Namespace) -> Request:
    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, ValueError) as exc:  # tomllib.TOMLDecodeError and JSONDecodeError are ValueErrors
        raise _BadInput(f"cannot read {path}: {exc}") from None
    items = data.get("items") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise _BadInput(f"{path}: expected a list of items (or an object with 'items')")
    body: dict[str, Any] = {"playlist_id": args.playlist_id, "items": items}
    if args.requested_by is not None:
        body["requested_by"] = args.requested_by
    return Request("queue_apply", body)


def _render_apply(reply: Mapping[str, Any], args: argparse.Namespace) -> str:
    lines = [f"enqueued {reply.get('enqueued_count')} of playlist {args.playlist_id}"]
    playlist = reply.get("playlist")
    if isinstance(playlist, dict):
        lines[0] += f" (applied {_count(playlist.get('apply_count'), 'time')})"
    for failed in reply.get("failed") or []:
        lines.append(f"failed: {failed.get('video_id')} ({failed.get('reason')})")
    return "\n".join(lines)


def _adjust_request(args: argparse.Namespace) -> Request:
    field, n = ("like_count", args.likes) if args.likes is not None else ("play_count", args.plays)
    return Request("adjust", {"video_id": args.video_id, field: n, "reason": args.reason,
                              "by": args.by or _login_name()})


def _login_name() -> str | None:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in this environment: the record says null
        return None


def _render_adjust(reply: Mapping[str, Any], args: argparse.Namespace) -> str:
    what = {"like_count": "likes", "play_count": "plays"}.get(str(reply.get("field")), reply.get("field"))
    return f"{reply.get('video_id')}: {what} {reply.get('old')} -> {reply.get('new')} (audit {reply.get('audit_key')})"


def _now_playing_request(args: argparse.Namespace) -> Request:
    return Request("now_playing", {})


def _run_client(args: argparse.Namespace, config: Config) -> int:
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
            config.analytics.namespace if args.namespace == _CONFIG_NAMESPACE else args.namespace
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
        print(_error_line(reply), file=sys.stderr)
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


# --- rendering replies


def _error_line(reply: Mapping[str, Any]) -> str:
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


def _count(n: object, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _render_like(reply: Mapping[str, Any], args: argparse.Namespace) -> str:
    likes = _count(reply.get("like_count"), "like")
    if reply.get("status") == "duplicate":
        return f"duplicate: {args.username} already liked {reply.get('video_id')} ({likes})"
    return f"liked {reply.get('video_id')}: {likes}"


def _render_top(reply: Mapping[str, Any], args: argparse.Namespace) -> str:
    items = reply.get("items") or []
    if not items:
        return "no likes yet" if args.ranking == "liked" else "nothing played yet"
    header = ("#", "likes" if args.ranking == "liked" else "plays", "video_id", "title")
    rows = [
        (str(rank), str(item.get("count")), str(item.get("video_id")), _text(item.get("title")))
        for rank, item in enumerate(items, start=1)
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(3)]
    return "\n".join(
        f"{rank:>{widths[0]}}  {count:>{widths[1]}}  {video_id:<{widths[2]}}  {title}".rstrip()
        for rank, count, video_id, title in (header, *rows)
    )


def _render_stats(reply: Mapping[str, Any], args: argparse.Namespace) -> str:
    lines = [
        f"{path}: {text}"
        for key, value in reply.items()
        if key not in _COMMON_REPLY_FIELDS
        for path, text in _flatten(value, key)
    ]
    return "\n".join(lines)


def _render_now_playing(reply: Mapping[str, Any], args: argparse.Namespace) -> str:
    if reply.get("video_id") is None:
        return "nothing is playing"
    title = f" — {reply['title']}" if reply.get("title") else ""
    since = f" (since {reply['started_at']})" if reply.get("started_at") else ""
    return f"now playing: {reply['video_id']}{title}{since}"


def _flatten(value: object, key: str) -> Iterator[tuple[str, str]]:
    """Nested documents as `a.b: value` lines, so that they grep well."""
    if isinstance(value, dict) and value:
        for sub_key, sub_value in value.items():
            yield from _flatten(sub_value, f"{key}.{sub_key}" if key else str(sub_key))
    else:
        yield key, _text(value)


def _text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


if __name__ == "__main__":
    console_main()
