"""Config loading: defaults, every key, and errors that name the key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kryten_likes.config import (
    AnalyticsSection,
    Config,
    ConfigError,
    CytubeSection,
    LikesSection,
    ChatSection,
    LimitsSection,
    LoggingSection,
    HaSection,
    HttpSection,
    QueueSection,
    NatsSection,
    RuntimeSection,
    StorageSection,
    SupervisorSection,
    event_channel_token,
    load_config,
    parse_config,
    with_nats_url,
)

FULL = """\
[nats]
servers = ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"]
subject_prefix = "kryten.test"
user = "likes"
password = "pw"
token = "tok"
creds_file = "/etc/kryten/likes.creds"
tls_ca = "/etc/ssl/ca.pem"
tls_cert = "/etc/ssl/cert.pem"
tls_key = "/etc/ssl/key.pem"

[cytube]
domain = "example.org"
channel = "My.Channel"
bridge_timeout_seconds = 3

[analytics]
namespace = "staging-2"

[likes]
dedupe_enabled = false
dedupe_window_seconds = 3600
rate_per_minute = 2.5
rate_burst = 7
retry_window_seconds = 60
max_remembered_requests = 500
unlike_window_seconds = 120

[storage]
data_dir = "/var/lib/kryten-likes"
replicas = 3

[supervisor]
max_restarts = 0
period_seconds = 30
backoff_initial_seconds = 0.5
backoff_max_seconds = 8.0

[limits]
global_likes_per_second = 50
global_likes_burst = 100
max_in_flight = 500

[chat]
enabled = false
like_command = "!fav"
top_command = "!best"
unlike_command = "!unfav"
mylikes_command = "!mine"
bot_username = "Bot"
reply_window_seconds = 60
max_replies_per_minute = 2

[queue]
apply_enabled = false

[ha]
lease_seconds = 2.5

[http]
port = 9000
host = "127.0.0.2"
dashboard = false
max_stream_clients = 7

[logging]
level = "DEBUG"

[runtime]
event_loop = "asyncio"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "kryten-likes.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(data: dict) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    return caught.value.problems


def test_no_file_means_the_contract_defaults() -> None:
    config = load_config(None)
    assert config == Config()
    assert config.nats == NatsSection(servers=(), subject_prefix="kryten")
    assert config.cytube == CytubeSection(domain="cytu.be", channel="lounge")
    assert config.analytics == AnalyticsSection(namespace="default")
    assert config.likes == LikesSection(
        dedupe_enabled=True, dedupe_window_seconds=86400.0, rate_per_minute=6.0, rate_burst=3
    )
    assert config.storage == StorageSection(data_dir="./data", replicas=1)
    assert config.supervisor == SupervisorSection(
        max_restarts=5, period_seconds=10.0, backoff_initial_seconds=0.05, backoff_max_seconds=2.0
    )


def test_an_empty_file_and_empty_tables_are_the_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")) == Config()
    assert load_config(write(tmp_path, "[likes]\n[nats]\n")) == Config()


def test_a_file_with_every_key(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL))
    assert config == Config(
        nats=NatsSection(
            servers=("nats://10.0.0.1:4222", "nats://10.0.0.2:4222"), subject_prefix="kryten.test",
            user="likes", password="pw", token="tok", creds_file="/etc/kryten/likes.creds",
            tls_ca="/etc/ssl/ca.pem", tls_cert="/etc/ssl/cert.pem", tls_key="/etc/ssl/key.pem",
        ),
        cytube=CytubeSection(domain="example.org", channel="My.Channel", bridge_timeout_seconds=3.0),
        analytics=AnalyticsSection(namespace="staging-2"),
        likes=LikesSection(
            dedupe_enabled=False, dedupe_window_seconds=3600.0, rate_per_minute=2.5, rate_burst=7,
            retry_window_seconds=60.0, max_remembered_requests=500, unlike_window_seconds=120.0,
        ),
        storage=StorageSection(data_dir="/var/lib/kryten-likes", replicas=3),
        supervisor=SupervisorSection(
            max_restarts=0, period_seconds=30.0, backoff_initial_seconds=0.5, backoff_max_seconds=8.0
        ),
        limits=LimitsSection(global_likes_per_second=50.0, global_likes_burst=100, max_in_flight=500),
        chat=ChatSection(enabled=False, like_command="!fav", top_command="!best",
                         unlike_command="!unfav", mylikes_command="!mine", bot_username="Bot",
                         reply_window_seconds=60.0, max_replies_per_minute=2),
        queue=QueueSection(apply_enabled=False),
        ha=HaSection(lease_seconds=2.5),
        http=HttpSection(port=9000, host="127.0.0.2", dashboard=False, max_stream_clients=7),
        logging=LoggingSection(level="DEBUG"),
        runtime=RuntimeSection(event_loop="asyncio"),
    )
    # An int written for a float key arrives as a float.
    assert type(config.likes.dedupe_window_seconds) is float


def test_unknown_key_inside_a_table_is_named() -> None:
    assert problems({"likes": {"rate_brust": 4}}) == ("unknown key 'likes.rate_brust'",)


def test_unknown_top_level_table_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "[like]\nrate_burst = 4\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: unknown key 'like'"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"likes": {"rate_burst": "3"}}, "likes.rate_burst: expected int, got str"),
        ({"likes": {"rate_burst": True}}, "likes.rate_burst: expected int, got bool"),
        ({"likes": {"rate_burst": 2.0}}, "likes.rate_burst: expected int, got float"),
        ({"likes": {"rate_per_minute": False}}, "likes.rate_per_minute: expected float, got bool"),
        ({"likes": {"dedupe_enabled": 1}}, "likes.dedupe_enabled: expected bool, got int"),
        ({"storage": {"data_dir": 5}}, "storage.data_dir: expected str, got int"),
        ({"nats": {"servers": "nats://a:4222"}}, "nats.servers: expected list of str, got str"),
        ({"nats": {"servers": ["nats://a:4222", 4222]}}, "nats.servers[1]: expected str, got int"),
        ({"likes": 3}, "likes: expected table, got int"),
    ],
)
def test_a_wrong_type_names_the_key_and_the_expected_type(data: dict, message: str) -> None:
    assert problems(data) == (message,)


def test_every_problem_is_reported_on_its_own_line() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"likes": {"rate_burst": "x", "typo": 1}, "storage": {"replicas": "3"}})
    assert str(caught.value).splitlines() == [
        "likes.rate_burst: expected int, got str",
        "unknown key 'likes.typo'",
        "storage.replicas: expected int, got str",
    ]


@pytest.mark.parametrize("namespace", ["", "has space", "a/b", "dots.too", "x" * 65, "ünï"])
def test_a_bad_namespace_is_refused(namespace: str) -> None:
    (problem,) = problems({"analytics": {"namespace": namespace}})
    assert problem.startswith("analytics.namespace: must match ")


@given(st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z"))
def test_every_namespace_of_the_contract_is_accepted(namespace: str) -> None:
    assert parse_config({"analytics": {"namespace": namespace}}).analytics.namespace == namespace


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("nats", "subject_prefix", ""),
        ("nats", "subject_prefix", "kryten likes"),
        ("nats", "subject_prefix", "kryten.*"),
        ("nats", "subject_prefix", "kryten.>"),
        ("nats", "subject_prefix", "kryten..x"),
        ("cytube", "channel", ""),
        ("storage", "replicas", 0),
        ("storage", "replicas", 6),
        ("likes", "rate_per_minute", 0),
        ("likes", "rate_per_minute", float("nan")),
        ("likes", "rate_burst", 0),
        ("likes", "dedupe_window_seconds", -1),
        ("likes", "dedupe_window_seconds", float("inf")),
        ("supervisor", "max_restarts", -1),
        ("supervisor", "period_seconds", 0),
        ("supervisor", "backoff_initial_seconds", 0.0),
        ("supervisor", "backoff_max_seconds", -2.0),
    ],
)
def test_a_bad_value_names_the_key(section: str, key: str, value: object) -> None:
    (problem,) = problems({section: {key: value}})
    assert problem.startswith(f"{section}.{key}: must ")


def test_toml_syntax_errors_and_missing_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[likes\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")


def test_the_error_of_a_file_starts_with_its_path(tmp_path: Path) -> None:
    path = write(tmp_path, "[likes]\nrate_burst = '3'\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: likes.rate_burst: expected int, got str"


def test_nats_url_overrides_the_configured_servers(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL))
    overridden = with_nats_url(config, "nats://127.0.0.1:5000")
    assert overridden.nats.servers == ("nats://127.0.0.1:5000",)
    assert overridden.nats.subject_prefix == "kryten.test"
    assert overridden.likes == config.likes
    assert with_nats_url(config, None) is config


def test_a_config_built_in_code_is_checked_too() -> None:
    with pytest.raises(ValueError, match="rate_burst"):
        LikesSection(rate_burst=0)


@pytest.mark.parametrize(
    ("channel", "token"), [("lounge", "lounge"), ("My.Channel", "mychannel"), ("420Grindhouse", "420grindhouse")]
)
def test_event_channel_token_is_lower_case_without_dots(channel: str, token: str) -> None:
    assert event_channel_token(channel) == token


def test_the_full_example_is_valid_toml() -> None:
    # Guards the test itself: FULL must exercise every key of every section.
    data = tomllib.loads(FULL)
    for name, section in (
        ("nats", NatsSection), ("cytube", CytubeSection), ("analytics", AnalyticsSection),
        ("likes", LikesSection), ("storage", StorageSection), ("supervisor", SupervisorSection),
        ("limits", LimitsSection), ("chat", ChatSection), ("http", HttpSection), ("queue", QueueSection), ("ha", HaSection),
        ("logging", LoggingSection), ("runtime", RuntimeSection),
    ):
        assert set(data[name]) == {a.name for a in section.__attrs_attrs__}


def test_the_event_loop_is_uvloop_where_installed_unless_asked_otherwise(monkeypatch) -> None:
    import importlib.util

    from kryten_likes.startup import loop_options

    assert Config().runtime.event_loop == "uvloop"
    installed = importlib.util.find_spec("uvloop") is not None
    assert loop_options(Config()) == {"use_uvloop": installed}
    assert loop_options(parse_config({"runtime": {"event_loop": "asyncio"}})) == {"use_uvloop": False}
    # Where uvloop is missing (Windows), asyncio's own loop, not a failure.
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvloop" else real(name, *a))
    assert loop_options(Config()) == {"use_uvloop": False}
    with pytest.raises(ConfigError, match="runtime.event_loop: must be uvloop or asyncio"):
        parse_config({"runtime": {"event_loop": "trio"}})


def test_the_daemon_runs_with_its_collector_thresholds_not_cpythons(monkeypatch) -> None:
    """``kryten-likes run`` sets the collector before anything is read (the
    start-up scan of 100 000 items grows the heap as likes do)."""
    import gc

    from kryten_likes import run_command
    from kryten_likes.startup import COLLECTOR_THRESHOLDS

    seen = []
    monkeypatch.setattr(run_command, "_exit_code", lambda run: seen.append(gc.get_threshold()) or 0)
    old = gc.get_threshold()
    gc.set_threshold(700, 10, 10)  # CPython's own
    try:
        assert run_command.run_daemon(parse_config({"nats": {"servers": ["nats://127.0.0.1:1"]}})) == 0
    finally:
        gc.set_threshold(*old)
    # Young objects looked at 7x less often, the whole heap 5x less often.
    assert seen == [COLLECTOR_THRESHOLDS] and COLLECTOR_THRESHOLDS[0] >= 5000 and COLLECTOR_THRESHOLDS[2] >= 50


def test_the_http_port_is_not_another_kryten_services() -> None:
    # 28282 userstats, 28284 moderator, 28286 llm, 28288 api-gate, 28290 economy.
    assert Config().http.port == 28292
    assert Config().http.host == "127.0.0.1"


def test_an_old_metrics_table_is_read_as_http_with_a_warning(caplog) -> None:
    with caplog.at_level("WARNING"):
        config = parse_config({"metrics": {"port": 9100, "host": "127.0.0.3"}})
    assert config.http == HttpSection(host="127.0.0.3", port=9100)
    assert "[metrics] table is now [http]" in caplog.text
    # Where both are given, [http] wins key by key.
    assert parse_config({"metrics": {"port": 1}, "http": {"port": 2}}).http.port == 2
