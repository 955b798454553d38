"""The daemon's configuration: a TOML file read into frozen attrs classes.

Theory of operation: `tomllib` parses the file, a strict cattrs converter
(`config_toml`) structures the tables into the section classes
(`config_sections`: every key optional, unknown keys refused), and attrs
validators on the fields check the values.
Whatever goes wrong becomes one `ConfigError` whose message has one line per
problem, each naming the dotted key (`likes.rate_burst: expected int, got
str`), because the person reading it has the file open and needs the line to
fix, not a cattrs traceback.

The defaults are those of the wire contract's `[Configuration]` example, so a
missing file and an empty file mean the same thing.
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Mapping
from typing import Any

import attrs
from attrs import frozen

from .config_sections import (
    AnalyticsSection,
    ChatSection,
    CytubeSection,
    HaSection,
    HttpSection,
    LikesSection,
    LimitsSection,
    LoggingSection,
    NatsSection,
    QueueSection,
    RuntimeSection,
    StorageSection,
    SupervisorSection,
    event_channel_token,
)
from .config_toml import STRUCTURE_ERRORS, make_converter, problem_lines
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


class ConfigError(Exception):
    """A config file that cannot be used; the message names the key."""

    def __init__(self, problems: str | tuple[str, ...]) -> None:
        self.problems: tuple[str, ...] = (
            (problems,) if isinstance(problems, str) else tuple(problems)
        )
        super().__init__("\n".join(self.problems))


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


_CONVERTER = make_converter()


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
    except STRUCTURE_ERRORS as exc:
        raise ConfigError(tuple(problem_lines(exc, ""))) from None


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
