"""Injected time.

Every actor core takes ``now`` as an argument; only shells read a ``Clock``.
Tests hand the daemon a ``FakeClock`` and move time by hand, so windows and
rates are tested without sleeping.
"""

from __future__ import annotations

import functools
import math

import time
from datetime import datetime, timezone
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch."""


class SystemClock:
    def now(self) -> float:
        return time.time()


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time does not run backwards")
        self._now += seconds


def iso(ts: float) -> str:
    """The KV layout's timestamp form: ISO 8601 UTC, seconds, ``Z``."""
    return _iso_second(math.floor(ts))


@functools.lru_cache(maxsize=64)  # a group of likes shares a handful of seconds
def _iso_second(second: int) -> str:
    return datetime.fromtimestamp(second, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> float:
    """``2025-12-18T12:34:56Z`` → seconds; ValueError for anything else.
    Read a million times at start (like records): the fields are cut out by
    position, ``datetime`` checks their ranges (strptime took 15 % of a start)."""
    if (type(text) is not str or len(text) != 20 or not text.isascii() or text[4] != "-" or text[7] != "-" or text[10] != "T"
            or text[13] != ":" or text[16] != ":" or text[19] != "Z" or not text[:19].replace("-", "").replace(
                "T", "").replace(":", "").isdigit()):
        raise ValueError(f"not a timestamp of the form 2025-12-18T12:34:56Z: {text!r}")
    return datetime(int(text[:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]), int(text[14:16]),
                    int(text[17:19]), tzinfo=timezone.utc).timestamp()
