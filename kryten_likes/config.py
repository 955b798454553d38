"""The daemon's configuration: a TOML file read into frozen attrs classes.

Theory of operation: `tomllib` parses the file, a strict cattrs converter
structures the tables into the section classes below (every key optional,
unknown keys refused), and attrs validators on the fields check the values.
Whatever goes wrong becomes one `ConfigError` whose message has one line per
problem, each naming the dotted key (`likes.rate_burst: expected int, got
str`), because the person reading it has the file open and needs the line to
fix, not a cattrs traceback.

The defaults are those of the wire contract's `[Configuration]` example, so a
missing file and an empty file mean the same thing.
"""

from __future__ import annotations

import logging
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import attrs
import cattrs
from attrs import field, frozen
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)
from cattrs.gen import make_dict_structure_fn

# The contract's namespace rule (kryten_likes.contract); requests are checked against the same one.
from .contract import NAMESPACE_PATTERN

__all__ = [
    "AnalyticsSection",
    "ChatSection",
    "HaSection",
    "HttpSection",
    "QueueSection",
    "Config",
    "ConfigError",
    "CytubeSection",
    "LikesSection",
    "LimitsSection",
    "LoggingSection",
    "DEFAULT_CONFIG_PATH",
    "from_environment",
    "nats_options",
    "NAMESPACE_PATTERN",
    "NatsSection",
    "StorageSection",
    "SupervisorSection",
    "event_channel_token",
    "load_config",
    "parse_config",
    "with_nats_url",
]


# A subject prefix is one or more NATS subject tokens: no empty token, no
# whitespace, no wildcard (a wildcard would make the daemon listen to, or
# publish on, subjects that are not its own).
_SUBJECT_PREFIX = re.compile(r"^[^\s.*>]+(\.[^\s.*>]+)*$")


class ConfigError(Exception):
    """A config file that cannot be used; the message names the key."""

    def __init__(self, problems: str | tuple[str, ...]) -> None:
        self.problems: tuple[str, ...] = (
            (problems,) if isinstance(problems, str) else tuple(problems)
        )
        super().__init__("\n".join(self.problems))


class _BadValue(ValueError):
    """A field validator's refusal; the section's path is added on the way up."""

    def __init__(self, key: str, requirement: str) -> None:
        super().__init__(f"{key}: {requirement}")
        self.key = key
        self.requirement = requirement


class _WrongType(TypeError):
    """A TOML value of the wrong type for its key."""

    def __init__(self, expected: str, value: object) -> None:
        super().__init__(f"expected {expected}, got {_toml_type_name(value)}")


def event_channel_token(channel: str) -> str:
    """The channel as the bridge writes it in event subjects: lower-cased, no dots."""
    return channel.lower().replace(".", "")


# --- value checks (attrs validators, so a Config built in code is checked too)


def _require(
    requirement: str, ok: Callable[[Any], bool]
) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    def check(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not ok(value):
            raise _BadValue(attribute.name, requirement)

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
    bot_username: str = ""  # the bridge's own CyTube name: its messages are skipped
    reply_window_seconds: float = field(default=300.0, validator=_positive_number)  # one reply per user per window
    max_replies_per_minute: int = field(default=10, validator=_require("must be >= 0", lambda v: v >= 0))


@frozen
class HttpSection:
    """The daemon's one HTTP server: /health, Prometheus /metrics, the JSON API
    and the dashboard. 28282-28290 (even) belong to other Kryten services."""

    host: str = "127.0.0.1"
    port: int = field(default=28292, validator=_require("must be 0 (off) to 65535", lambda v: 0 <= v <= 65535))
    dashboard: bool = True


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


@frozen
class Config:
    """The whole configuration; `Config()` is the defaults."""

    nats: NatsSection = NatsSection()
    cytube: CytubeSection = CytubeSection()
    analytics: AnalyticsSection = AnalyticsSection()
    likes: LikesSection = LikesSection()
    storage: StorageSection = StorageSection()
    supervisor: SupervisorSection = SupervisorSection()
    limits: LimitsSection = LimitsSection()
    chat: ChatSection = ChatSection()
    http: HttpSection = HttpSection()
    queue: QueueSection = QueueSection()
    ha: HaSection = HaSection()
    logging: LoggingSection = LoggingSection()
    runtime: RuntimeSection = RuntimeSection()


# --- structuring


def _toml_type_name(value: object) -> str:
    if isinstance(value, Mapping):
        return "table"
    if isinstance(value, list):
        return "list"
    return type(value).__name__


def _structure_int(value: object, _type: type) -> int:
    # bool is an int subclass in Python, but `rate_burst = true` is a mistake.
    if isinstance(value, bool) or not isinstance(value, int):
        raise _WrongType("int", value)
    return value


def _structure_float(value: object, _type: type) -> float:
    # TOML writes `86400` as an int; that is a fine float.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _WrongType("float", value)
    return float(value)


def _structure_bool(value: object, _type: type) -> bool:
    if not isinstance(value, bool):
        raise _WrongType("bool", value)
    return value


def _structure_str(value: object, _type: type) -> str:
    if not isinstance(value, str):
        raise _WrongType("str", value)
    return value


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    converter.register_structure_hook(int, _structure_int)
    converter.register_structure_hook(float, _structure_float)
    converter.register_structure_hook(bool, _structure_bool)
    converter.register_structure_hook(str, _structure_str)

    # cattrs would iterate a string into its characters; `servers` must be a list.
    structure_str_items = converter.get_structure_hook(tuple[str, ...])

    def structure_servers(value: object, type_: type) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise _WrongType("list of str", value)
        return structure_str_items(value, type_)

    converter.register_structure_hook_func(lambda t: t == tuple[str, ...], structure_servers)

    def section_hook_factory(cls: type) -> Callable[[Any, type], Any]:
        structure_fields = make_dict_structure_fn(cls, converter)

        def structure_section(value: object, type_: type) -> Any:
            # Without this, `likes = 3` surfaces as an AttributeError deep in cattrs.
            if not isinstance(value, Mapping):
                raise _WrongType("table", value)
            return structure_fields(value, type_)

        return structure_section

    converter.register_structure_hook_factory(attrs.has, section_hook_factory)
    return converter


def _problems(exc: BaseException, path: str) -> Iterator[str]:
    """One line per leaf error of a cattrs exception tree, with dotted key paths.

    `cattrs.transform_error` walks the same tree but renders `msg @ $.path`
    strings; this walk keeps the path structured so that unknown keys and
    validator errors can name the key itself rather than its table.
    """
    if isinstance(exc, ClassValidationError):
        with_notes, without = exc.group_exceptions()
        for sub, note in with_notes:
            yield from _problems(sub, _join(path, note.name))
        for sub in without:
            yield from _problems(sub, path)
    elif isinstance(exc, IterableValidationError):
        with_notes, without = exc.group_exceptions()
        for sub, note in with_notes:
            yield from _problems(sub, f"{path}[{note.index!r}]")
        for sub in without:
            yield from _problems(sub, path)
    elif isinstance(exc, ForbiddenExtraKeysError):
        for key in sorted(exc.extra_fields):
            yield f"unknown key '{_join(path, key)}'"
    elif isinstance(exc, _BadValue):
        yield f"{_join(path, exc.key)}: {exc.requirement}"
    else:
        yield f"{path or 'config'}: {exc}"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


_CONVERTER = _make_converter()


def parse_config(data: Mapping[str, Any]) -> Config:
    """Structure an already-parsed TOML document into a `Config`.

    Raises `ConfigError` listing every problem found, one per line.
    """
    if "metrics" in data:
        # Older configs named the HTTP table [metrics]; read it as [http].
        logging.getLogger(__name__).warning(
            "config: the [metrics] table is now [http]; reading it as [http] (rename it)")
        data = dict(data)
        legacy = data.pop("metrics")
        if isinstance(legacy, Mapping) and isinstance(data.get("http", {}), Mapping):
            data["http"] = {**legacy, **data.get("http", {})}
        else:
            data["http"] = legacy
    try:
        return _CONVERTER.structure(data, Config)
    except (ClassValidationError, IterableValidationError, _BadValue, _WrongType) as exc:
        raise ConfigError(tuple(_problems(exc, ""))) from None


DEFAULT_CONFIG_PATH = "/etc/kryten/kryten-likes/config.toml"

_ENV = {"KRYTEN_LIKES_NATS_USER": "user", "KRYTEN_LIKES_NATS_PASSWORD": "password",
        "KRYTEN_LIKES_NATS_TOKEN": "token", "KRYTEN_LIKES_NATS_CREDS": "creds_file"}


def load_config(path: str | os.PathLike[str] | None) -> Config:
    """Read a TOML file into a `Config`; `None` gives the file at
    `DEFAULT_CONFIG_PATH` when it exists, else the defaults.

    Every problem line of the `ConfigError` starts with the file's path.
    """
    if path is None:
        if not os.path.exists(DEFAULT_CONFIG_PATH):
            return Config()
        path = DEFAULT_CONFIG_PATH
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"{os.fspath(path)}: cannot read: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{os.fspath(path)}: not valid TOML: {exc}") from None
    try:
        config = parse_config(data)
    except ConfigError as exc:
        raise ConfigError(tuple(f"{os.fspath(path)}: {p}" for p in exc.problems)) from None
    if (config.nats.password or config.nats.token) and os.stat(path).st_mode & 0o004:
        # A secret in a file anyone can read: say so (without the secret).
        logging.getLogger(__name__).warning(
            "%s holds a NATS password or token and is world-readable; chmod o-r it", os.fspath(path))
    return config


def from_environment(config: Config, environ: Mapping[str, str] | None = None) -> Config:
    """Secrets and the server from the environment override the file."""
    env = os.environ if environ is None else environ
    changes = {field_: env[name] for name, field_ in _ENV.items() if env.get(name)}
    if env.get("KRYTEN_LIKES_NATS_URL"):
        changes["servers"] = tuple(u.strip() for u in env["KRYTEN_LIKES_NATS_URL"].split(",") if u.strip())
    return attrs.evolve(config, nats=attrs.evolve(config.nats, **changes)) if changes else config


def nats_options(config: Config) -> dict[str, Any]:
    """Keyword arguments for ``nats.connect`` beside the servers."""
    n = config.nats
    opts: dict[str, Any] = {}
    if n.user:
        opts["user"], opts["password"] = n.user, n.password
    if n.token:
        opts["token"] = n.token
    if n.creds_file:
        opts["user_credentials"] = n.creds_file
    if n.tls_ca or n.tls_cert:
        import ssl
        ctx = ssl.create_default_context(cafile=n.tls_ca)
        if n.tls_cert:
            ctx.load_cert_chain(n.tls_cert, n.tls_key)
        opts["tls"] = ctx
    return opts


def with_nats_url(config: Config, url: str | None) -> Config:
    """The config with `url` as its only NATS server, when a URL is given."""
    if url is None:
        return config
    return attrs.evolve(config, nats=attrs.evolve(config.nats, servers=(url,)))
