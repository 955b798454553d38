"""The `kryten-likes` console script: the daemon (`run`) and its terminal clients.

This module is the parser and the dispatch. Each client subcommand is one
NATS request on `{subject_prefix}.playlist.cmd.{command}` (the wire
contract; `likers --all`, `likes --all`: one per page), printed for a person,
or verbatim with `--json` for a script (`cli_client`); the commands
themselves are grouped by subject (`cli_channel`: like, what plays and who
liked what; `cli_admin`: apply, adjust, export; `doctor` and `demo`: whole
commands of their own).

Exit codes: 0 the daemon said `ok` or `duplicate`; 1 it said `error` (or
answered something unreadable); 2 usage or config error; 3 nobody answered
(no server, no daemon, or no reply in time).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from kryten_likes import cli_admin, cli_channel
from kryten_likes.cli_arguments import CONFIG_NAMESPACE, BadInput, namespace, positive_seconds
from kryten_likes.cli_client import (
    DEFAULT_NATS_URL, EXIT_USAGE, PROG, Request, resolve_client_url, run_client,
)
from kryten_likes.config import ConfigError, from_environment, load_config, with_nats_url

__all__ = ["DEFAULT_NATS_URL", "Request", "console_main", "main", "resolve_client_url"]


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
        from kryten_likes.run_command import run_daemon

        return run_daemon(with_nats_url(config, args.nats_url))
    # doctor, demo, export: no request to the daemon; likers, likes: one request per page.
    if getattr(args, "handler", None) is not None:
        return args.handler(args, config)
    try:
        return run_client(args, config)
    except BadInput as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE


def console_main() -> NoReturn:
    sys.exit(main())


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Likes and play analytics for a CyTube channel on the Kryten bus.",
        epilog="exit codes: 0 ok or duplicate, 1 the daemon answered an error, 2 usage or config error, "
               "3 no answer (daemon not running, no server), 130 interrupted",
    )
    subparsers = parser.add_subparsers(dest="subcommand", required=True, metavar="COMMAND")
    where = _where_options()
    client = _client_options(where)
    subparsers.add_parser("run", parents=[where], help="run the daemon")
    # In the order `--help` lists them.
    for add_client_command in (cli_channel.add_like, cli_channel.add_unlike, cli_channel.add_top, cli_channel.add_stats,
                               cli_channel.add_watch, cli_admin.add_apply, cli_channel.add_now_playing,
                               cli_channel.add_likers, cli_channel.add_likes):
        add_client_command(subparsers, client)
    # doctor and demo: each module adds its own parser and runs its command.
    from kryten_likes import demo, doctor

    doctor.add_subparser(subparsers, where)
    demo.add_subparser(subparsers, where)
    cli_admin.add_export(subparsers, where)
    cli_admin.add_adjust(subparsers, client)
    return parser


def _where_options() -> argparse.ArgumentParser:
    """Which config and which server: the options of every command."""
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--config", metavar="FILE", help="TOML config file (default: built-in defaults)")
    where.add_argument("--nats-url", metavar="URL", help="NATS server, overriding the config")
    return where


def _client_options(where: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of every request to the daemon."""
    client = argparse.ArgumentParser(add_help=False, parents=[where])
    client.add_argument("--timeout", type=positive_seconds, default=5.0, metavar="SECONDS",
                        help="how long to wait for the daemon (default: 5)")
    client.add_argument("--json", action="store_true", help="print the daemon's reply as JSON")
    client.add_argument("--namespace", nargs="?", const=CONFIG_NAMESPACE, type=namespace, metavar="NS",
                        help="analytics namespace to ask about (alone: the config's)")
    return client


if __name__ == "__main__":
    console_main()
