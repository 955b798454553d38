"""The sections of the config file, one frozen attrs class per TOML table.

Each field's default is the wire contract's `[Configuration]` example, and
each field's validator says in words what a value must be, so that a
`Config` built in code is checked as strictly as one read from a file.
`kryten_likes.config` assembles the sections into `Config` and reads files.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import attrs
from attrs import field, frozen

# The contract's namespace rule (kryten_likes.contract); requests are checked against the same one.
from .contract import NAMESPACE_PATTERN

__all__ = [
    "AnalyticsSection",
    "BadValue",
    "ChatSection",
    "CytubeSection",
    "HaSection",
    "HttpSection",
    "LikesSection",
    "LimitsSection",
    "LoggingSection",
    "NatsSection",
    "QueueSection",
    "RuntimeSection",
    "StorageSection",
    "SupervisorSection",
    "event_channel_token",
]


# A subject prefix is one or more NATS subject tokens: no empty token, no
# whitespace, no wildcard (a wildcard would make the daemon listen to, or
# publish on, subjects that are not its own).
_SUBJECT_PREFIX = re.compile(r"^[^\s.*>]+(\.[^\s.*>]+)*$")


class BadValue(ValueError):
    """A field validator's refusal; the section's path is added on the way up."""

    def __init__(self, key: str, requirement: str) -> None:
        super().__init__(f"{key}: {requirement}")
        self.key = key
        self.requirement = requirement


def event_channel_token(channel: str) -> str:
    """The channel as the bridge writes it in event subjects: lower-cased, no dots."""
    return channel.lower().replace(".", "")


# --- value checks (attrs validators, so a Config built in code is checked too)


def _require(
    requirement: str, ok: Callable[[Any], bool]
) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    def check(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not ok(value):
            raise BadValue(attribute.name, requirement)

    return check


def _finite(value: float) -> bool:
    return math.isfinite(value)


_positive_number = _require("must be a finite number > 0", lambda v: _finite(v) and v > 0)


# --- sections


@frozen
class NatsSection:
    """Where the bus is; no servers means the daemon starts its own."""

    servers: tuple[str, ...] = field(
        default=(),
        validator=_require("every server must be a non-empty string", lambda v: all(v)),
    )
    subject_prefix: str = field(
        default="kryten",
        validator=_require(
            "must be a NATS subject without spaces or wildcards, e.g. 'kryten'",
            lambda v: _SUBJECT_PREFIX.fullmatch(v) is not None,
        ),
    )
    # Credentials and TLS, passed to every connection (also overridable from
    # the environment: KRYTEN_LIKES_NATS_URL, _USER, _PASSWORD, _TOKEN, _CREDS).
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    creds_file: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None


@frozen
class LoggingSection:
    """How much the daemon says; one line per event either way."""

    level: str = field(default="INFO", validator=_require(
        "must be DEBUG, INFO, WARNING or ERROR", lambda v: v.upper() in ("DEBUG", "INFO", "WARNING", "ERROR")))


@frozen
class CytubeSection:
    """The channel whose events the daemon reads."""

    domain: str = "cytu.be"
    channel: str = field(
        default="lounge",
        # The channel becomes a subject token, so it cannot be empty (or only
        # dots) and cannot hold whitespace or wildcards.
        validator=_require(
            "must be a non-empty channel name without spaces or wildcards",
            lambda v: re.fullmatch(r"[^\s*>]+", v) is not None
            and event_channel_token(v) != "",
        ),
    )
    # How long queue_apply waits for the bridge to confirm one item.
    bridge_timeout_seconds: float = field(default=8.0, validator=_positive_number)


@frozen
class AnalyticsSection:
    """Which key namespace (`ns/{namespace}/...`) the counters live in."""

    namespace: str = field(
        default="default",
        validator=_require(
            f"must match {NAMESPACE_PATTERN.pattern}",
            lambda v: NAMESPACE_PATTERN.fullmatch(v) is not None,
        ),
    )


@frozen
class LikesSection:
    """Dedupe window and per-user rate limit of likes."""

    dedupe_enabled: bool = True
    dedupe_window_seconds: float = field(default=86400.0, validator=_positive_number)
    rate_per_minute: float = field(default=6.0, validator=_positive_number)
    rate_burst: int = field(default=3, validator=_require("must be >= 1", lambda v: v >= 1))
    # A like retried with the same correlation_id within this window gets the
    # original outcome instead of a second count.
    retry_window_seconds: float = field(default=600.0, validator=_positive_number)
    # At most this many retried-request outcomes are remembered (~600 bytes
    # each); past it the oldest is forgotten first. A retry older than what is
    # remembered counts as a new like, which dedupe still protects.
    max_remembered_requests: int = field(default=100_000, validator=_require("must be >= 1", lambda v: v >= 1))
    # A counted like may be taken back (unlike) for this long after it was counted.
    unlike_window_seconds: float = field(default=600.0, validator=_positive_number)


@frozen
class StorageSection:
    """The embedded server's store and the replica count of buckets and stream."""

    data_dir: str = "./data"
    # JetStream allows at most 5 replicas.
    replicas: int = field(default=1, validator=_require("must be 1 to 5", lambda v: 1 <= v <= 5))


@frozen
class SupervisorSection:
    """Restart intensity and back-off of the actor supervisor (OTP style)."""

    max_restarts: int = field(default=5, validator=_require("must be >= 0", lambda v: v >= 0))
    period_seconds: float = field(default=10.0, validator=_positive_number)
    backoff_initial_seconds: float = field(default=0.05, validator=_positive_number)
    backoff_max_seconds: float = field(default=2.0, validator=_positive_number)


@frozen
class LimitsSection:
    """Abuse limits that protect the bus and the daemon's memory."""

    # Likes per second accepted from all users together (rate_limited past it).
    global_likes_per_second: float = field(default=1000.0, validator=_positive_number)
    global_likes_burst: int = field(default=2000, validator=_require("must be >= 1", lambda v: v >= 1))
    # Requests inside the daemon at once; past it, `unavailable` at once.
    max_in_flight: int = field(default=20000, validator=_require("must be >= 1", lambda v: v >= 1))


@frozen
class ChatSection:
    """Likes from the channel chat, and how sparingly the bot answers there."""

    enabled: bool = True
    like_command: str = field(default="!like", validator=_require("must be one word", lambda v: re.fullmatch(r"\S{1,32}", v) is not None))
    top_command: str = field(default="!top", validator=_require("must be one word", lambda v: re.fullmatch(r"\S{1,32}", v) is not None))
    unlike_command: str = field(default="!unlike", validator=_require("must be one word", lambda v: re.fullmatch(r"\S{1,32}", v) is not None))
    mylikes_command: str = field(default="!mylikes", validator=_require("must be one word", lambda v: re.fullmatch(r"\S{1,32}", v) is not None))
    bot_username: str = ""  # the bridge's own CyTube name: its messages are skipped
    reply_window_seconds: float = field(default=300.0, validator=_positive_number)  # one reply per user per window
    max_replies_per_minute: int = field(default=10, validator=_require("must be >= 0", lambda v: v >= 0))

    def __attrs_post_init__(self) -> None:
        # Chat words are matched case-insensitively: one word serves one command.
        seen: set[str] = set()
        for name in ("like_command", "unlike_command", "mylikes_command", "top_command"):
            word = getattr(self, name).casefold()
            if word in seen:
                raise BadValue(name, "must differ from the other chat commands")
            seen.add(word)


@frozen
class HttpSection:
    """The daemon's one HTTP server: /health, Prometheus /metrics, the JSON API
    and the dashboard. 28282-28290 (even) belong to other Kryten services."""

    host: str = "127.0.0.1"
    port: int = field(default=28292, validator=_require("must be 0 (off) to 65535", lambda v: 0 <= v <= 65535))
    dashboard: bool = True
    # Live streams (/api/v1/stream) open at once; the next is answered 503.
    max_stream_clients: int = field(default=200, validator=_require("must be 1 to 100000",
                                                                     lambda v: 1 <= v <= 100_000))


@frozen
class HaSection:
    """One writer per namespace: the active daemon's lease (docs/design.md)."""

    # A standby takes over at most this long after the active daemon died;
    # the active one renews every third of it. At least 1 s: the lease's TTL
    # has a resolution of seconds.
    lease_seconds: float = field(default=5.0, validator=_require("must be a number >= 1", lambda v: _finite(v) and v >= 1))


@frozen
class QueueSection:
    """Who owns ``queue_apply`` on this bus."""

    # kryten-playlist answers queue_apply too: where it runs, set this false
    # (it then owns applies; we still count its queue events once each).
    apply_enabled: bool = True


@frozen
class RuntimeSection:
    """How the daemon runs its event loop."""

    # uvloop: measured 7-15 % less daemon CPU per like than asyncio's own loop
    # (README, Performance); asyncio: the standard library's loop. uvloop is
    # used only where it is installed (not on Windows); else asyncio, said once.
    event_loop: str = field(default="uvloop", validator=_require(
        "must be uvloop or asyncio", lambda v: v in ("uvloop", "asyncio")))
