"""The client commands of the channel's everyday life: like what plays, and
see what plays, the top lists (once, or redrawn with `watch`) and the
counters. Each command is a request built from its arguments and a
rendering of the daemon's reply for a person.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping
from typing import Any

from kryten_likes.cli_arguments import limit, positive_seconds
from kryten_likes.cli_client import Request, cell_text, plural

__all__ = ["add_like", "add_now_playing", "add_stats", "add_top", "add_watch"]

# The fields every reply carries; `stats` prints everything else.
_COMMON_REPLY_FIELDS = frozenset({"correlation_id", "status", "error", "detail"})


# --- the parsers (`client` is the options every client command has)


def add_like(subparsers: Any, client: argparse.ArgumentParser) -> None:
    like = subparsers.add_parser("like", parents=[client], help="like what is playing",
                                 epilog="example: kryten-likes like alice --video dQw4w9WgXcQ")
    like.add_argument("username", metavar="USERNAME")
    like.add_argument("--video", metavar="ID", help="like only if this video is still playing")
    like.set_defaults(request=_like_request, render=_render_like)


def add_top(subparsers: Any, client: argparse.ArgumentParser) -> None:
    top = subparsers.add_parser("top", parents=[client], help="most liked or most played items",
                                epilog="example: kryten-likes top played -n 20 --json")
    top.add_argument("ranking", choices=("liked", "played"))
    top.add_argument("-n", type=limit, default=10, metavar="N", help="how many (1-100, default 10)")
    top.set_defaults(request=_top_request, render=_render_top)


def add_stats(subparsers: Any, client: argparse.ArgumentParser) -> None:
    stats = subparsers.add_parser("stats", parents=[client], help="counters",
                                  epilog="example: kryten-likes stats --video dQw4w9WgXcQ --playlist friday")
    stats.add_argument("--video", metavar="ID", help="also the counters of this item")
    stats.add_argument("--playlist", metavar="ID", help="also the apply record of this playlist")
    stats.set_defaults(request=_stats_request, render=_render_stats)


def add_watch(subparsers: Any, client: argparse.ArgumentParser) -> None:
    watch = subparsers.add_parser(
        "watch", parents=[client], help="the top list, redrawn every few seconds (Ctrl-C to stop)",
        epilog="example: kryten-likes watch liked -n 5 --interval 2")
    watch.add_argument("ranking", choices=("liked", "played"), nargs="?", default="liked")
    watch.add_argument("-n", type=limit, default=10, metavar="N", help="how many (1-100, default 10)")
    watch.add_argument("--interval", type=positive_seconds, default=5.0, metavar="SECONDS")
    watch.add_argument("--count", type=int, default=0, metavar="K", help="stop after K screens (0: never)")
    watch.set_defaults(request=_top_request, render=_render_top, watch=True)


def add_now_playing(subparsers: Any, client: argparse.ArgumentParser) -> None:
    now_playing = subparsers.add_parser("now-playing", parents=[client], help="what plays now")
    now_playing.set_defaults(request=_now_playing_request, render=_render_now_playing)


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


def _now_playing_request(args: argparse.Namespace) -> Request:
    return Request("now_playing", {})


# --- rendering replies


def _render_like(reply: Mapping[str, Any], args: argparse.Namespace) -> str:
    likes = plural(reply.get("like_count"), "like")
    if reply.get("status") == "duplicate":
        return f"duplicate: {args.username} already liked {reply.get('video_id')} ({likes})"
    return f"liked {reply.get('video_id')}: {likes}"


def _render_top(reply: Mapping[str, Any], args: argparse.Namespace) -> str:
    items = reply.get("items") or []
    if not items:
        return "no likes yet" if args.ranking == "liked" else "nothing played yet"
    header = ("#", "likes" if args.ranking == "liked" else "plays", "video_id", "title")
    rows = [
        (str(rank), str(item.get("count")), str(item.get("video_id")), cell_text(item.get("title")))
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
        yield key, cell_text(value)
