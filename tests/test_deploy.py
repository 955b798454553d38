"""The systemd unit's install steps keep secrets private."""

from __future__ import annotations

import re
from pathlib import Path

UNIT = Path(__file__).resolve().parent.parent / "deploy" / "kryten-likes.service"


def test_the_config_and_creds_are_installed_0600_for_the_service_user_only():
    text = UNIT.read_text()
    installs = [line for line in text.splitlines() if re.search(r"install -m \d+ .*(config\.toml|\.creds)", line)]
    assert installs, "the unit says how to install the config"
    for line in installs:
        assert "-m 0600" in line and "-o kryten-likes" in line, line
    assert "pip install /opt/kryten-likes/src" in text  # installing from a checkout is shown
