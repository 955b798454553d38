"""The client commands of the channel's everyday life: like what plays, and
see what plays, the top lists (once, or redrawn with `watch`), the
counters, and who liked what (`likers`, `likes`, a page at a time or every
page with `--all`). Each command is a request built from its arguments and
a rendering of the daemon's reply for a person.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from kryten_likes.cli_arguments import CONFIG_NAMESPACE, limit, positive_seconds
from kryten_likes.cli_client import (
    EXIT_ERROR_REPLY, EXIT_OK, EXIT_USAGE, PROG, Request, cell_text, error_line, plural, run_client,
)
from kryten_likes.config import Config
from kryten_likes.contract import WINDOWS

__all__ = ["add_like", "add_likers", "add_likes", "add_now_playing", "add_stats", "add_top", "add_watch",
           "run_pages"]

# The fields every reply carries; `stats` prints everything else.
_COMMON_REPLY_FIELDS = frozenset({"correlation_id", "status", "error", "detail"})
# The page size of `likers` and `likes` (the daemon's default too).
PAGE_SIZE = 20


# --- the parsers (`client` is the options every client command has)


def add_like(subparsers: Any, client: argparse.ArgumentParser) -> None:
    like = subparsers.add_parser("like", parents=[client], help="like what is playing",
                                 epilog="example: kryten-likes like alice --video dQw4w9WgXcQ")
    like.add_argument("username", metavar="USERNAME")
    like.add_argument("--video", metavar="ID", help="like only if this video is still playing")
    like.set_defaults(request=_like_request, render=_render_like)


def add_unlike(subparsers: Any, client: argparse.ArgumentParser) -> None:
    unlike = subparsers.add_parser("unlike", parents=[client], help="take back a like (within the unlike window)",
                                   epilog="example: kryten-likes unlike alice --video dQw4w9WgXcQ")
    unlike.add_argument("username", metavar="USERNAME")
    unlike.add_argument("--video", metavar="ID", help="the item (default: what plays now)")
    unlike.set_defaults(request=_unlike_request, render=_render_unlike)


def add_top(subparsers: Any, client: argparse.ArgumentParser) -> None:
    top = subparsers.add_parser("top", parents=[client], help="most liked or most played items, or top curators",
                                epilog="example: kryten-likes top played -n 20 --window week --json")
    top.add_argument("ranking", choices=("liked", "played", "curators"))
    top.add_argument("-n", type=limit, default=10, metavar="N", help="how many (1-100, default 10)")
    top.add_argument("--window", choices=WINDOWS, default="all",
                     help="count only the last day, week or month (rolling, by the hour; default all)")
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
    watch.add_argument("--window", choices=WINDOWS, default="all", help="day, week, month or all (default)")
    watch.add_argument("--interval", type=positive_seconds, default=5.0, metavar="SECONDS")
    watch.add_argument("--count", type=int, default=0, metavar="K", help="stop after K screens (0: never)")
    watch.set_defaults(request=_top_request, render=_render_top, watch=True)


def add_now_playing(subparsers: Any, client: argparse.ArgumentParser) -> None:
    now_playing = subparsers.add_parser("now-playing", parents=[client], help="what plays now")
    now_playing.set_defaults(request=_now_playing_request, render=_render_now_playing)


def add_likers(subparsers: Any, client: argparse.ArgumentParser) -> None:
    likers = subparsers.add_parser("likers", parents=[client], help="who liked an item, newest first",
                                   epilog="example: kryten-likes likers dQw4w9WgXcQ --all")
    likers.add_argument("video", metavar="VIDEO", nargs="?", help="its video_id (default: what plays now)")
    _page_options(likers)
    likers.set_defaults(request=_likers_request, render=_render_likers, handler=run_pages)


def add_likes(subparsers: Any, client: argparse.ArgumentParser) -> None:
    likes = subparsers.add_parser("likes", parents=[client], help="what a user liked, newest first",
                                  epilog="example: kryten-likes likes alice -n 50")
    likes.add_argument("username", metavar="USER")
    _page_options(likes)
    likes.set_defaults(request=_user_likes_request, render=_render_user_likes, handler=run_pages)


def _page_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--limit", type=limit, default=PAGE_SIZE, metavar="N",
                        help=f"how many per page (1-100, default {PAGE_SIZE})")
    parser.add_argument("--cursor", metavar="C", help="the page after the one that printed this cursor")
    parser.add_argument("--all", action="store_true", help="every page from there to the last")
    parser.set_defaults(continued=False)  # True from the second page of --all on: no header again


# --- paging (`likers`, `likes`)


def run_pages(args: argparse.Namespace, config: Config) -> int:
    """One page; with `--all`, each page in turn (from `--cursor`, else the
    first) until a reply's cursor is null. Exit codes as for one request:
    the first page that is not `ok` ends the run with its code."""
    if not args.all:
        return run_client(args, config)
    if args.json:
        print(f"{PROG}: --all prints for a person; with --json, ask page by page, "
              "each time with --cursor set to the reply's cursor", file=sys.stderr)
        return EXIT_USAGE
    replies: list[Mapping[str, Any]] = []
    render = args.render

    def remember(reply: Mapping[str, Any], args: argparse.Namespace) -> str:
        replies.append(reply)
        return render(reply, args)

    args.render = remember
    followed: set[str] = set()
    while True:
        code = run_client(args, config)
        cursor = replies[-1].get("cursor") if code == EXIT_OK else None
        if not isinstance(cursor, str):
            return code
        if cursor in followed:  # a daemon that hands out a cursor twice would page forever
            print(error_line({"status": "error", "error": "invalid_reply",
                              "detail": f"cursor {cursor!r} handed out twice"}), file=sys.stderr)
            return EXIT_ERROR_REPLY
        followed.add(cursor)
        args.cursor, args.continued = cursor, True
        if "video" in vars(args):
            # Later pages are of the item the first one was of, even once another plays.
            args.video = replies[-1].get("video_id")


# --- requests


def _like_request(args: argparse.Namespace) -> Request:
    body: dict[str, Any] = {"username": args.username}
    if args.video is not None:
        body["video_id"] = args.video
    return Request("like", body)


def _unlike_request(args: argparse.Namespace) -> Request:
    return Request("unlike", _like_request(args).body)


def _top_request(args: argparse.Namespace) -> Request:
    return Request(f"top_{args.ranking}", {"limit": args.n, "window": args.window})


def _stats_request(args: argparse.Namespace) -> Request:
    body: dict[str, Any] = {}
    if args.video is not None:
        body["video_id"] = args.video
    if args.playlist is not None:
        body["playlist_id"] = args.playlist
    return Request("stats", body)


def _now_playing_request(args: argparse.Namespace) -> Request:
    return Request("now_playing", {})


def _likers_request(args: argparse.Namespace) -> Request:
    body: dict[str, Any] = {"limit": args.limit}
    if args.video is not None:
        body["video_id"] = args.video
    if args.cursor is not None:
        body["cursor"] = args.cursor
    return Request("likers", body)


def _user_likes_request(args: argparse.Namespace) -> Request:
    body: dict[str, Any] = {"username": args.username, "limit": args.limit}
    if args.cursor is not None:
        body["cursor"] = args.cursor
    return Request("user_likes", body)


# --- rendering replies


def _render_like(reply: Mapping[str, Any], args: argparse.Namespace) -> str:
    likes = plural(reply.get("like_count"), "like")
    if reply.get("status") == "duplicate":
        return f"duplicate: {args.username} already liked {reply.get('video_id')} ({likes})"
    return f"liked {reply.get('video_id')}: {likes}"


def _render_unlike(reply: Mapping[str, Any], args: argparse.Namespace) -> str:
    return f"unliked {reply.get('video_id')}: {plural(reply.get('like_count'), 'like')}"


def _render_top(reply: Mapping[str, Any], args: argparse.Namespace) -> str:
    items = reply.get("items") or []
    if args.ranking == "curators":
        return _render_curators(items)
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


def _render_curators(items: list) -> str:
    if not items:
        return "no curator credited yet"
    header = ("#", "likes", "plays", "curator")
    rows = [(str(rank), str(it.get("likes_received")), str(it.get("plays")), cell_text(it.get("username")))
            for rank, it in enumerate(items, start=1)]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(3)]
    return "\n".join(f"{r:>{widths[0]}}  {likes:>{widths[1]}}  {plays:>{widths[2]}}  {name}".rstrip()
                     for r, likes, plays, name in (header, *rows))


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


def _render_likers(reply: Mapping[str, Any], args: argparse.Namespace) -> str:
    lines = [] if args.continued else [f"{reply.get('video_id')}: {plural(reply.get('like_count'), 'like')}"]
    lines += [f"{cell_text(user.get('liked_at'))}  {cell_text(user.get('username'))}"
              for user in reply.get("users") or []]
    return "\n".join(lines + _next_page(reply, args, ["likers", str(reply.get("video_id"))]))


def _render_user_likes(reply: Mapping[str, Any], args: argparse.Namespace) -> str:
    given = f"{plural(reply.get('likes_given'), 'like')} given"
    lines = [] if args.continued else [f"{cell_text(reply.get('username'))}: {given}"]
    for item in reply.get("items") or []:
        title = f" — {cell_text(item['title'])}" if item.get("title") else ""
        lines.append(f"{cell_text(item.get('liked_at'))}  {cell_text(item.get('video_id'))}{title}")
    return "\n".join(lines + _next_page(reply, args, ["likes", args.username]))


def _next_page(reply: Mapping[str, Any], args: argparse.Namespace, words: list[str]) -> list[str]:
    """The line that says how to ask for the next page, when there is one (not with --all)."""
    cursor = reply.get("cursor")
    if args.all or not isinstance(cursor, str):
        return []
    again = [PROG, *words]
    if args.limit != PAGE_SIZE:
        again += ["--limit", str(args.limit)]
    if args.namespace is not None:
        again += ["--namespace"] if args.namespace == CONFIG_NAMESPACE else ["--namespace", args.namespace]
    return [f"next page: {shlex.join([*again, '--cursor', cursor])}  (or --all for every page)"]


def _flatten(value: object, key: str) -> Iterator[tuple[str, str]]:
    """Nested documents as `a.b: value` lines, so that they grep well."""
    if isinstance(value, dict) and value:
        for sub_key, sub_value in value.items():
            yield from _flatten(sub_value, f"{key}.{sub_key}" if key else str(sub_key))
    else:
        yield key, cell_text(value)
