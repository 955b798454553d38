"""`kryten-likes demo`: the product shown to a person who has no CyTube.

Theory of operation: the demo plays the bridge (kryten-robot) and a handful
of viewers. It publishes the bridge's ``queue`` and ``changeMedia`` events
(RawEvent JSON, on the subjects the daemon reads), sends likes as viewers
would (``{prefix}.playlist.cmd.like``), one of them twice, and prints each
outcome as the daemon answers it; at the end it waits until the plays and
queue events are counted and prints the top lists. A ``SCRIPT`` of steps,
read from top to bottom, is the whole show (``demo_stage``).

Which daemon: the one the client commands would talk to (same URL rule),
when it counts into the demo's namespace (``demo`` unless ``--namespace``
says otherwise). A daemon counts the plays of its channel into its own
namespace, so a demo against a daemon of another namespace would put fake
plays into real counts: then, as when no daemon answers at all, the demo
starts a nats-server in a temp dir and a daemon in-process, and removes
both when done (``demo_daemon``).

Resource handling: everything the demo starts is stopped when it ends, by
success, failure, Ctrl-C or its own deadline (``--seconds`` of pacing plus a
fixed allowance for start-up and counting).
"""

from __future__ import annotations

import argparse
import logging
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import nats

from .contract import NAMESPACE_PATTERN
from .cli_client import resolve_client_url
from .config import Config, nats_options
from .demo_daemon import Running, look_for_daemon, standalone
from .demo_stage import SCRIPT, DemoFailed, Like, Stage, perform

__all__ = ["DEMO_NAMESPACE", "SCRIPT", "add_subparser", "run"]

DEMO_NAMESPACE = "demo"
DEFAULT_SECONDS = 15.0
ALLOWANCE_SECONDS = 45.0  # start-up, counting and shut-down, beyond --seconds of pacing


async def demo(url: str, config: Config, namespace: str, seconds: float, store: Path | None,
               say: Any = print) -> int:
    started = time.monotonic()
    found = await look_for_daemon(url, config, namespace)
    try:
        with anyio.fail_after(seconds + ALLOWANCE_SECONDS):
            if isinstance(found, Running):
                say(f"demo: against the kryten-likes at {url}: channel {config.cytube.channel!r}, "
                    f"namespace {namespace!r}")
                # A daemon remembers who liked what for a day (the dedupe window):
                # viewers new to it let a second demo count again.
                code = await _perform_at(url, config, namespace, seconds, f"-{uuid.uuid4().hex[:4]}", say)
                say(f"demo: done in {time.monotonic() - started:.1f} s")
                return code
            say(f"demo: {found.reason}.")
            async with standalone(config, namespace, store, say) as (local_url, local_config):
                code = await _perform_at(local_url, local_config, namespace, seconds, "", say)
            kept = f"; its store is kept in {store}" if store is not None else "; its temp dir is removed"
            say(f"demo: done in {time.monotonic() - started:.1f} s; the nats-server and kryten-likes it "
                f"started are stopped{kept}")
            return code
    except TimeoutError:
        say(f"demo: not done within {seconds + ALLOWANCE_SECONDS:g} s; stopped")
        return 1
    except DemoFailed as exc:
        say(f"demo: {exc}")
        return 1


async def _perform_at(url: str, config: Config, namespace: str, seconds: float, viewer_tag: str, say: Any) -> int:
    nc = await nats.connect([u.strip() for u in url.split(",")], name="kryten-likes demo",
                            **nats_options(config))
    try:
        viewers = len({step.viewer for step in SCRIPT if isinstance(step, Like)})
        say(f"demo: playing the bridge of channel {config.cytube.channel!r} and {viewers} viewers")
        return await perform(Stage(nc, config, namespace, say), seconds, viewer_tag)
    finally:
        with anyio.CancelScope(shield=True):  # closed even when the deadline or Ctrl-C ended the show
            await nc.close()


def add_subparser(subparsers: Any, where: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "demo", parents=[where], help="show kryten-likes at work, with no CyTube (about 15 s)",
        description="Play the bridge and a few viewers: queue and play videos, like them (one viewer twice), and "
                    "print what kryten-likes counted. Uses the daemon the client commands would use when it "
                    "counts into the demo's namespace; else starts a nats-server and a daemon of its own in a "
                    "temp dir, and removes them when done.",
        epilog="example: kryten-likes demo --seconds 5")
    parser.add_argument("--seconds", type=_seconds, default=DEFAULT_SECONDS, metavar="N",
                        help=f"how long the show takes, paced for reading (default: {DEFAULT_SECONDS:g}; 0: "
                             "no pauses)")
    parser.add_argument("--namespace", type=_namespace, default=DEMO_NAMESPACE, metavar="NS",
                        help=f"count into this namespace (default: {DEMO_NAMESPACE}); a running daemon is "
                             "used only when it counts into the same one")
    parser.add_argument("--store", type=Path, metavar="DIR",
                        help="when the demo runs its own server: keep its store in DIR instead of a temp dir")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, config: Config) -> int:
    url = resolve_client_url(config, args.nats_url)
    # An in-process daemon's log would interleave with the show; its errors still
    # show. The level is the handler's: kryten-py sets its own logger's level.
    errors_only = logging.StreamHandler()
    errors_only.setLevel(logging.ERROR)
    errors_only.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.ERROR, handlers=[errors_only])
    say = partial(print, flush=True)  # a line at a time, as it happens
    try:
        return anyio.run(demo, url, config, args.namespace, args.seconds, args.store, say)
    except KeyboardInterrupt:
        return 130


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= seconds <= 600:
        raise argparse.ArgumentTypeError(f"must be from 0 to 600: {text!r}")
    return seconds


def _namespace(text: str) -> str:
    if NAMESPACE_PATTERN.fullmatch(text) is None:
        raise argparse.ArgumentTypeError(f"must match {NAMESPACE_PATTERN.pattern}: {text!r}")
    return text
