"""The counter writer's pure core alone: what a like costs it, with no I/O.

    python -m bench.writer_core [--likes N] [--namespaces N] [--runs N] [--profile]

The bus bench's like rows measure the daemon, nats-server and the driver
together, and move by ±0.05 from run to run on a shared VM. This drives
only ``CounterWriter`` (journal on, events on, as ``kryten-likes run``
builds it) with the likes of two rows, and a store that lands every write
at once: one hot item in the daemon's namespace, and the same item liked in
many namespaces (the spread row: one counter document a like or two). It
runs in one process with the daemon's collector thresholds, so the figure
moves by about 1 µs between runs: fine enough to judge a change of the
core's bookkeeping that the bus bench cannot see.

Each like is sent as the writer's mailbox sends it (batches of 256, the
bus bench's in-flight), then the flush, then the outcomes of everything
sent, in the order sent. It prints µs of the core's own time a like (the
best of ``--runs``) and checks that every like was answered ``ok`` once
and that each document holds exactly its likes, stored (none left staged).
``--profile`` prints cProfile's top functions of one run.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import sys
import time

from kryten_likes.actors.counter_writer import CounterWriter
from kryten_likes.domain import Claim, Media
from kryten_likes.effects import Commit, PublishEvents, Reply
from kryten_likes.messages import CommitFinished, EventsPublished, LikeReserved, ReplyTo, Tick
from kryten_likes.startup import COLLECTOR_THRESHOLDS
from kryten_likes.store.values import Landed

T0 = 1_767_225_600.0
HOME = "home"
MEDIA = Media("v1", "yt", "One", 100)
MAILBOX = 256  # likes a mailbox batch (the bus bench's in flight)


class LandingStore:
    """Every write lands, at the next revision of its bucket."""

    def __init__(self) -> None:
        self.seq: dict[str, int] = {}

    def land(self, c: Commit) -> Landed:
        revisions = {}
        for w in c.writes:
            self.seq[c.bucket] = revisions[w.key] = self.seq.get(c.bucket, 0) + 1
        return Landed(c.group_id, revisions)


def likes(n: int, namespaces: int) -> list[LikeReserved]:
    out = []
    for i in range(n):
        ns = HOME if namespaces <= 1 else f"ns{i % namespaces}"
        user = f"user{i}"
        out.append(LikeReserved(ReplyTo(f"inbox.{i}", None), ns, MEDIA, Claim(ns, MEDIA.video_id, user, T0, T0 + 86400),
                                user, user, T0 - 5, None))
    return out


def run(n: int, namespaces: int, profile: cProfile.Profile | None = None) -> float:
    """µs of the writer's own time a like; raises if a count is not exact."""
    writer = CounterWriter({}, HOME, group_prefix="g-", publish_events=True, journal_max=2)
    store = LandingStore()
    sent = likes(n, namespaces)
    now = T0
    flying: list = []
    answered: dict[str, int] = {}
    spent = 0.0

    def core(f, *args) -> list | None:
        nonlocal spent
        t = time.perf_counter()
        if profile is not None:
            profile.enable()
        out = f(*args)
        if profile is not None:
            profile.disable()
        spent += time.perf_counter() - t
        if out:
            for e in out:
                if isinstance(e, (Commit, PublishEvents)):
                    flying.append(e)
                elif isinstance(e, Reply) and e.body.get("status") == "ok":
                    answered[e.to.subject] = answered.get(e.to.subject, 0) + 1
        return out

    i = 0
    while i < n or flying:
        for like in sent[i:i + MAILBOX]:
            core(writer.step, like, now)
        i += MAILBOX
        core(writer.flush, now)
        landing, flying[:] = list(flying), []
        for e in landing:
            if isinstance(e, PublishEvents):
                core(writer.step, EventsPublished(e.group_id), now)
                continue
            done = CommitFinished(e.group_id, store.land(e))
            if core(writer.answers_first, done, now) is not None:
                core(writer.count_answered)
            else:
                core(writer.step, done, now)
        core(writer.flush, now)
        now += 0.01
        if not i % (MAILBOX * 100) or i >= n:
            core(writer.step, Tick(), now)  # (the ticks store what waits for company)
    _check(writer, sent, answered)
    return spent / n * 1e6


def _check(writer: CounterWriter, sent: list[LikeReserved], answered: dict[str, int]) -> None:
    if len(answered) != len(sent) or any(k != 1 for k in answered.values()):
        raise SystemExit(f"miscount: {len(answered)} of {len(sent)} likes answered ok once")
    want: dict[str, int] = {}
    for like in sent:
        want[like.namespace] = want.get(like.namespace, 0) + 1
    for ns, k in want.items():
        book = writer.book(ns)
        if book.like_count(MEDIA.video_id) != k or book.stored_like_count(MEDIA.video_id) != k:
            raise SystemExit(f"miscount in {ns}: {book.stored_like_count(MEDIA.video_id)} stored, "
                             f"{book.like_count(MEDIA.video_id)} counted, {k} sent")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.writer_core", description=__doc__.split("\n\n")[0])
    ap.add_argument("--likes", type=int, default=20000, help="likes a run (the bus bench's rows: 20 000)")
    ap.add_argument("--namespaces", type=int, default=10000, help="namespaces of the spread row")
    ap.add_argument("--runs", type=int, default=3, help="runs of each row; the best is printed")
    ap.add_argument("--profile", action="store_true", help="cProfile one run of each row (slower: read shares)")
    args = ap.parse_args(argv)
    gc.set_threshold(*COLLECTOR_THRESHOLDS)  # (as ``kryten-likes run`` sets them)
    for row, namespaces in (("one hot item", 1), (f"spread over {args.namespaces:,} namespaces", args.namespaces)):
        best = min(run(args.likes, namespaces) for _ in range(args.runs))
        print(f"{row:40} {best:6.1f} µs of the writer's core a like ({args.likes:,} likes, every count exact)")
        if args.profile:
            profile = cProfile.Profile()
            run(args.likes, namespaces, profile)
            pstats.Stats(profile, stream=sys.stdout).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
