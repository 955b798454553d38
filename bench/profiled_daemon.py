"""The daemon under cProfile, profiling only while the bench asks.

    python bench/profiled_daemon.py OUT.prof run --config FILE

Runs ``kryten_likes.cli`` exactly as ``python -m kryten_likes.cli`` would,
with a cProfile profiler that SIGUSR1 enables and SIGUSR2 disables, so the
profile holds the measured likes and not the imports and start-up scan. The
stats are written when the daemon exits (SIGINT/SIGTERM: its clean stop).
cProfile sees the main thread, where the event loop and every actor run.
"""

from __future__ import annotations

import cProfile
import os
import runpy
import signal
import sys


def main() -> None:
    if sys.path and sys.path[0] == os.path.dirname(os.path.abspath(__file__)):
        sys.path.pop(0)  # run by path: bench/'s modules must not shadow anything the daemon imports
    out = sys.argv[1]
    sys.argv = ["kryten-likes", *sys.argv[2:]]
    prof = cProfile.Profile()
    signal.signal(signal.SIGUSR1, lambda *_: prof.enable())
    signal.signal(signal.SIGUSR2, lambda *_: prof.disable())
    code: object = 0
    try:
        runpy.run_module("kryten_likes.cli", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code
    finally:
        prof.disable()
        prof.dump_stats(out)
    sys.exit(code)


if __name__ == "__main__":
    main()
