"""The commands that act on the counts as a whole, for the channel's curators
and operators: enqueue a playlist (`apply`), set a count by hand, audited
(`adjust`), and take a namespace's documents out of KV (`export`, which reads
KV itself, so the daemon need not run).
"""

from __future__ import annotations

import argparse
import getpass
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kryten_likes.cli_arguments import BadInput, namespace, positive_seconds, whole_number
from kryten_likes.cli_client import Request, plural, resolve_client_url
from kryten_likes.config import Config, nats_options

__all__ = ["add_adjust", "add_apply", "add_export"]


# --- the parsers (`client`: the options of a request to the daemon; `where`: which config and server)


def add_apply(subparsers: Any, client: argparse.ArgumentParser) -> None:
    apply = subparsers.add_parser(
        "apply", parents=[client], help="enqueue a playlist's items on the channel (queue_apply)",
        description="Enqueue items through the bridge and count them. FILE is JSON (a list of items, or "
                    "an object with 'items') or TOML (an [[items]] array); each item has video_id and type, "
                    "optionally title and duration_seconds.")
    apply.add_argument("playlist_id", metavar="PLAYLIST_ID")
    apply.add_argument("file", metavar="FILE", help="the items, JSON or TOML (by extension)")
    apply.add_argument("--requested-by", metavar="NAME")
    apply.set_defaults(request=_apply_request, render=_render_apply)


def add_export(subparsers: Any, where: argparse.ArgumentParser) -> None:
    export = subparsers.add_parser(
        "export", parents=[where], help="a namespace's items, playlists or likes, read from KV",
        description="Every document of a kind, streamed from KV to stdout as CSV (with a header) or "
                    "JSON lines. items: each item's counts, like_count included.",
        epilog="example: kryten-likes export items --format json > items.jsonl")
    export.add_argument("what", choices=("items", "playlists", "likes"))
    export.add_argument("--format", choices=("csv", "json"), default="csv", help="(default: csv)")
    export.add_argument("--namespace", type=namespace, metavar="NS", help="(default: the config's)")
    export.add_argument("--timeout", type=positive_seconds, default=5.0, metavar="SECONDS",
                        help="how long to wait for the server (default: 5)")
    export.set_defaults(handler=_export)


def add_adjust(subparsers: Any, client: argparse.ArgumentParser) -> None:
    adjust = subparsers.add_parser(
        "adjust", parents=[client], help="set an item's like or play count (through the daemon, audited)",
        epilog='example: kryten-likes adjust dQw4w9WgXcQ --likes 40 --reason "bot likes of 2026-01-02"')
    adjust.add_argument("video_id", metavar="VIDEO_ID")
    count = adjust.add_mutually_exclusive_group(required=True)
    count.add_argument("--likes", type=whole_number, metavar="N", help="the new like_count")
    count.add_argument("--plays", type=whole_number, metavar="N", help="the new play_count")
    adjust.add_argument("--reason", required=True, metavar="TEXT", help="why (1-500 characters, kept)")
    adjust.add_argument("--by", metavar="NAME", help="who asks (default: your login name)")
    adjust.set_defaults(request=_adjust_request, render=_render_adjust)


# --- apply


def _apply_request(args: argparse.Namespace) -> Request:
    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, ValueError) as exc:  # tomllib.TOMLDecodeError and JSONDecodeError are ValueErrors
        raise BadInput(f"cannot read {path}: {exc}") from None
    items = data.get("items") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise BadInput(f"{path}: expected a list of items (or an object with 'items')")
    body: dict[str, Any] = {"playlist_id": args.playlist_id, "items": items}
    if args.requested_by is not None:
        body["requested_by"] = args.requested_by
    return Request("queue_apply", body)


def _render_apply(reply: Mapping[str, Any], args: argparse.Namespace) -> str:
    lines = [f"enqueued {reply.get('enqueued_count')} of playlist {args.playlist_id}"]
    playlist = reply.get("playlist")
    if isinstance(playlist, dict):
        lines[0] += f" (applied {plural(playlist.get('apply_count'), 'time')})"
    for failed in reply.get("failed") or []:
        lines.append(f"failed: {failed.get('video_id')} ({failed.get('reason')})")
    return "\n".join(lines)


# --- adjust


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


# --- export


def _export(args: argparse.Namespace, config: Config) -> int:
    # Imported here: the other commands need none of the export's KV reading.
    from kryten_likes.export import export_command

    return export_command(args.what, args.format, args.namespace or config.analytics.namespace,
                          resolve_client_url(config, args.nats_url), nats_options(config), args.timeout)
