"""Test configs, one way: a dict of sections, parsed (``unique_config``) or
written as a TOML file (``write_config``) for a daemon or a client command
run as a child process."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from kryten_likes.config import Config, parse_config

_ids = itertools.count(1)

# Test daemons: a fast supervisor, and no fixed HTTP port (a fixed port would
# collide with any other daemon on the machine; tests that scrape choose one).
TEST_SUPERVISOR = {"max_restarts": 3, "period_seconds": 5.0, "backoff_initial_seconds": 0.01,
                   "backoff_max_seconds": 0.05}
# Limits far above any storm, for tests about crashes and faults, not rate limits.
NO_LIMITS = {"likes": {"rate_per_minute": 1000000.0, "rate_burst": 1000000},
             "limits": {"global_likes_per_second": 1000000.0, "global_likes_burst": 1000000}}


def merged(*layers: dict) -> dict:
    """Sections of later layers over those of earlier ones (key by key)."""
    out: dict = {}
    for layer in layers:
        for section, values in layer.items():
            out[section] = {**out.get(section, {}), **values}
    return out


def unique_sections(**likes) -> dict:
    """A config of its own (subject prefix, channel, namespace) so tests
    sharing one nats-server cannot see each other; ``likes`` keys override."""
    n = next(_ids)
    return {
        "nats": {"subject_prefix": f"t{n}"},
        "cytube": {"channel": f"chan{n}"},
        "analytics": {"namespace": f"ns{n}"},
        "likes": {"rate_per_minute": 600.0, "rate_burst": 1000, **likes},
        "supervisor": dict(TEST_SUPERVISOR),
        "http": {"port": 0},
    }


def unique_config(**likes) -> Config:
    return parse_config(unique_sections(**likes))


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (str, Path)):
        return json.dumps(str(v))  # a TOML basic string is a JSON string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML for {v!r}")


def toml_text(sections: dict) -> str:
    """``{section: {key: value}}`` as TOML (values: str, Path, bool, int,
    float, lists of those)."""
    out = []
    for section, values in sections.items():
        out.append(f"[{section}]")
        out += [f"{key} = {_toml_value(v)}" for key, v in values.items()]
    return "\n".join(out) + "\n"


def write_config(path: Path, sections: dict, *, mode: int | None = None) -> Path:
    """Write ``sections`` to ``path`` as TOML (``mode``: its permissions)."""
    path.write_text(toml_text(sections))
    if mode is not None:
        path.chmod(mode)
    return path
