"""The anchor: kryten-playlist 0.3.2's like, driven like the daemon's.

kryten-playlist is never a dependency of this project: the bench makes a
venv of its own for it (under ~/.cache, reused by later runs) and runs
`anchor_responder.py` with that venv's interpreter. If the package cannot be
installed or started, the anchor row says why and the rest of the bench goes on.

What it measures: speed (likes/s, p50/p99 at each concurrency, against the
same ceiling) and correctness: how many likes its ``like_counts`` document
holds against how many it answered ``ok``. Its like reads the whole
``like_counts`` document and writes it back with a plain put, so concurrent
likes overwrite each other's increments (lost updates).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from .harness import Children, Progress, body, wait_for_answer
from .likes import BusPhase, row

PACKAGE = "kryten-playlist==0.3.2"
SUBJECT = "bench.anchor"


def anchor_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "kryten-likes-bench" / "anchor-kryten-playlist-0.3.2"


def _python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _probe(venv: Path) -> str | None:
    """The anchor's kryten-py version when the venv can run the responder, else None."""
    if not _python(venv).exists():
        return None
    r = subprocess.run([str(_python(venv)), "-c",
                        "import kryten_playlist.web.routes.stats, importlib.metadata as m;"
                        "print(m.version('kryten-playlist'), m.version('kryten-py'), m.version('nats-py'))"],
                       capture_output=True, text=True, timeout=120)
    return r.stdout.strip() if r.returncode == 0 else None


def ensure_anchor_env(progress: Progress) -> tuple[Path | None, str]:
    """(the venv, its versions) or (None, why not)."""
    venv = anchor_dir()
    found = _probe(venv)
    if found:
        return venv, found
    progress.say(f"anchor: installing {PACKAGE} into {venv} (once; later runs reuse it)")
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
        r = subprocess.run([str(_python(venv)), "-m", "pip", "install", "--quiet", PACKAGE],
                           capture_output=True, text=True, timeout=600)
    except (subprocess.SubprocessError, OSError) as exc:
        return None, f"cannot make its venv: {exc}"
    if r.returncode != 0:
        tail = " ".join((r.stderr or r.stdout).strip().splitlines()[-3:])
        return None, f"pip install {PACKAGE} failed: {tail}"
    found = _probe(venv)
    if not found:
        return None, f"{PACKAGE} installed but kryten_playlist.web.routes.stats does not import"
    return venv, found


async def run_anchor(phase: BusPhase, children: Children, workdir: Path, url: str, venv: Path,
                     versions: str) -> list[dict]:
    script = Path(__file__).with_name("anchor_responder.py")
    child = children.start("anchor", [str(_python(venv)), str(script), url, SUBJECT, "anchor"],
                           workdir / "anchor.log", cwd=workdir)
    nc = phase.nc
    await wait_for_answer(nc, f"{SUBJECT}.count", timeout=60, child=child)
    phase.procs["anchor"] = child
    pkg, kpy, npy = (versions.split() + ["?", "?", "?"])[:3]
    rows = []
    for c in phase.sizes.inflight:
        n = phase.sizes.anchor_likes[c]
        vid = f"anchor-{c}"
        await nc.request(f"{SUBJECT}.play", json.dumps({"video_id": vid}).encode(), timeout=10)
        bodies = [body(username=f"a{c}-{i}") for i in range(n)]
        d = await phase.run("anchor", f"{SUBJECT}.like", bodies, c, f"anchor ×{c}")
        child.check_alive()
        stored = json.loads((await nc.request(f"{SUBJECT}.count", json.dumps({"video_id": vid}).encode(),
                                              timeout=10)).data)["like_count"]
        ok = d["statuses"].get("ok", 0)
        others = {k: v for k, v in d["statuses"].items() if k != "ok"}
        lost = ok - stored
        r = row(f"anchor: kryten-playlist {pkg} like", d, phase.ceilings.get(c),
                check=f"stored {stored:,} of {ok:,} ok: {lost:,} lost ({100 * lost / max(1, ok):.0f}%)"
                      + (f"; not ok {others}" if others else ""),
                anchor_ok=ok, anchor_stored=stored, anchor_lost=lost,
                note=f"its like_current() (web/routes/stats.py) in-process, kryten-py {kpy}, nats-py {npy}")
        phase.add(r)
        rows.append(r)
    return rows


def anchor_unavailable(why: str) -> dict[str, Any]:
    return {"scenario": f"anchor: {PACKAGE} like", "inflight": None, "n": 0, "rate": None,
            "p50_ms": None, "p99_ms": None, "check": f"not run: {why}"}
