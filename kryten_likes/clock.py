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
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
