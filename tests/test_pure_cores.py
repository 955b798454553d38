"""The pure cores import no nats: each core module under kryten_likes/actors/
(not the shells) and the pure modules they build on are imported in a fresh
interpreter, which must end up with no ``nats`` module loaded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import kryten_likes

ACTORS = Path(kryten_likes.__file__).parent / "actors"
CORES = sorted(p.stem for p in ACTORS.glob("*.py")
               if p.stem != "__init__" and p.stem != "shell" and not p.stem.endswith("_shell"))
PURE = [f"kryten_likes.actors.{name}" for name in CORES] + [
    "kryten_likes.contract", "kryten_likes.bridge_events", "kryten_likes.wire", "kryten_likes.messages",
    "kryten_likes.store.values", "kryten_likes.store.keys", "kryten_likes.store.documents",
]
PROBE = "import {module}, sys; print(any(m == 'nats' or m.startswith('nats.') for m in sys.modules))"


def test_the_cores_are_found():
    assert {"counter_writer", "gateway", "playback", "apply"} <= set(CORES), CORES


@pytest.mark.parametrize("module", PURE)
def test_a_pure_module_imports_no_nats(module):
    out = subprocess.run([sys.executable, "-c", PROBE.format(module=module)],
                         capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False", f"{module} loads nats: {out.stdout}{out.stderr}"


def test_the_store_package_still_offers_its_io_names():
    # PEP 562: the nats side of kryten_likes.store loads on first use.
    from kryten_likes.store import AtomicBucket, StoreError, scan
    from kryten_likes.store.batch import AtomicBucket as direct
    assert AtomicBucket is direct and callable(scan) and issubclass(StoreError, Exception)
