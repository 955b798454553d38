"""`kryten-likes doctor`: what the daemon needs from a bus, checked and said in words.

Theory of operation: ``gather`` (``doctor_bus``) connects as the daemon would
and asks the bus everything at once; ``examine`` (``doctor_checks``) then
judges those facts, one pure function per check, each giving one
``Finding``: ``ok``, ``warn``, ``FAIL`` or ``skip``. The exit code is 0 only
when nothing is ``warn`` or ``FAIL``; 1 otherwise; 3 when the server cannot
be reached at all.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from typing import Any

from .cli_client import resolve_client_url
from .config import Config
from .doctor_bus import Unreachable, gather
from .doctor_checks import FAIL, Finding, examine, exit_code

__all__ = ["add_subparser", "render", "run"]

EXIT_UNREACHABLE = 3


def add_subparser(subparsers: Any, where: argparse.ArgumentParser) -> None:
    doctor = subparsers.add_parser(
        "doctor", parents=[where], help="check that a bus has what kryten-likes needs",
        description="Check the NATS server the client commands would use (or --nats-url) for what the daemon "
                    "needs, one line per check: ok, warn, FAIL (or skip when a check cannot be made).",
        epilog="exit codes: 0 every check holds, 1 something is wrong (warn or FAIL), 3 no server reachable")
    doctor.add_argument("--json", action="store_true", help="print the findings as JSON")
    doctor.set_defaults(handler=run)


def run(args: argparse.Namespace, config: Config) -> int:
    url = resolve_client_url(config, args.nats_url)
    try:
        facts = asyncio.run(gather(url, config))
    except KeyboardInterrupt:
        return 130
    if isinstance(facts, Unreachable):
        findings = [Finding("server", FAIL, f"cannot connect to {url}: {facts.cause}")]
        code = EXIT_UNREACHABLE
    else:
        findings = examine(facts, config)
        code = exit_code(findings)
    print(render(url, findings, code, as_json=args.json))
    return code


def render(url: str, findings: Sequence[Finding], code: int, *, as_json: bool = False) -> str:
    if as_json:
        return json.dumps({"url": url, "exit_code": code,
                           "checks": [{"check": f.check, "status": f.status, "detail": f.detail} for f in findings]})
    return "\n".join(f"{f.status:<4}  {f.check}: {f.detail}" for f in findings)
