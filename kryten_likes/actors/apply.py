"""apply: playlist applies in flight — each item enqueued through the bridge,
in order, each confirmed item counted once.

Theory of operation
-------------------
An apply walks its items one at a time (the channel keeps the given order).
For item ``i`` it first tells the counter writer ``EnqueueStarted`` (so the
bridge's queue event, which usually comes *before* the bridge's answer, is
known as ours), then asks the bridge (``Enqueue``: kryten-py ``add_media``).
The bridge's answer comes back as ``EnqueueAnswered``:

- confirmed (``data.success`` true) → ``QueueConfirmed`` to the writer, and the
  apply waits for ``ApplyProgress``: the count is durable before the next item
  is sent, so a crash can cost at most the item in flight;
- refused or no answer in time → the item goes into ``failed`` with a reason,
  ``EnqueueRefused`` to the writer, next item.

After the last item, ``ApplyFinished`` goes to the writer, which closes the
apply in its playlist document and answers the requester (``enqueue_failed``
if nothing was confirmed). At most ``max_active`` applies run at once; the
rest wait in order.

If the counter writer dies, ``WriterRestarted`` arrives: the enqueue in
flight is announced again, and an unacknowledged confirmation is sent again
(the writer counts an apply's item once, whatever it is told twice).
"""

from __future__ import annotations

from collections import deque

import attrs

from .. import wire
from ..messages import (
    ApplyFinished, ApplyProgress, ApplyRequested, EnqueueAnswered, EnqueueRefused, EnqueueStarted,
    EnqueuesInFlight, Media, QueueConfirmed, WriterRestarted,
)
from ..effects import Enqueue


@attrs.define
class ApplyRun:
    apply_id: str
    request: ApplyRequested
    index: int = 0
    confirmed: int = 0
    failed: list = attrs.Factory(list)
    awaiting: str = "bridge"  # "bridge": enqueue in flight; "writer": count in flight


def enqueue_id(run: ApplyRun) -> str:
    return f"{run.apply_id}#{run.index}"


def media_of(run: ApplyRun) -> Media:
    it = run.request.items[run.index]
    return Media(it.video_id, it.media_type, it.title or "", it.duration_seconds)


class Applies:
    def __init__(self, *, id_prefix: str, max_active: int = 4) -> None:
        self.max_active = max_active
        self.active: dict[str, ApplyRun] = {}
        self.waiting: deque[ApplyRequested] = deque()
        self._prefix = id_prefix
        self._seq = 0

    def held_requests(self) -> list:
        return [r.request.reply for r in self.active.values()] + [w.reply for w in self.waiting]

    def step(self, msg: object, now: float) -> list:
        if isinstance(msg, ApplyRequested):
            self.waiting.append(msg)
            return self._start_waiting()
        if isinstance(msg, EnqueueAnswered):
            return self._answered(msg)
        if isinstance(msg, ApplyProgress):
            run = self.active.get(msg.apply_id)
            if run is None or run.awaiting != "writer" or msg.index != run.index:
                return []  # a repeat after a writer restart
            run.confirmed += 1
            return self._next(run)
        if isinstance(msg, WriterRestarted):
            return self._say_again()
        raise TypeError(f"apply cannot take {msg!r}")

    def _start_waiting(self) -> list:
        out: list = []
        while self.waiting and len(self.active) < self.max_active:
            req = self.waiting.popleft()
            self._seq += 1
            run = ApplyRun(f"{self._prefix}{self._seq}", req)
            self.active[run.apply_id] = run
            out += self._send(run)
        return out

    def _send(self, run: ApplyRun) -> list:
        run.awaiting = "bridge"
        return [EnqueueStarted(run.request.namespace, media_of(run), enqueue_id(run)),
                Enqueue(run.apply_id, run.index, run.request.items[run.index])]

    def _answered(self, msg: EnqueueAnswered) -> list:
        run = self.active.get(msg.apply_id)
        if run is None or run.awaiting != "bridge" or msg.index != run.index:
            return []
        req = run.request
        if msg.ok:
            run.awaiting = "writer"
            return [QueueConfirmed(run.apply_id, req.namespace, req.playlist_id,
                                                             run.index, media_of(run))]
        run.failed.append({"video_id": req.items[run.index].video_id, "reason": msg.reason or "refused"})
        out: list = [EnqueueRefused(req.namespace, media_of(run), enqueue_id(run))]
        return out + self._next(run)

    def _next(self, run: ApplyRun) -> list:
        run.index += 1
        if run.index < len(run.request.items):
            return self._send(run)
        del self.active[run.apply_id]
        req = run.request
        if run.confirmed == 0:
            out: list = [wire.error(req.reply, "enqueue_failed", "the bridge queued none of the items",
                                    enqueued_count=0, failed=run.failed)]
        else:
            out = [ApplyFinished(req.reply, run.apply_id, req.namespace,
                                                           req.playlist_id, run.confirmed, tuple(run.failed))]
        return out + self._start_waiting()

    def _say_again(self) -> list:
        # First the whole set, so the new writer knows every enqueue in flight
        # before it judges a queue event; then the messages it must act on.
        ids = tuple((r.request.namespace, f"{media_of(r).media_type}:{media_of(r).video_id}", enqueue_id(r))
                    for r in self.active.values())
        out: list = [EnqueuesInFlight(ids)]
        for run in self.active.values():
            req = run.request
            if run.awaiting == "bridge":
                out.append(EnqueueStarted(req.namespace, media_of(run), enqueue_id(run)))
            else:
                out.append(QueueConfirmed(run.apply_id, req.namespace, req.playlist_id,
                                                                    run.index, media_of(run)))
        return out
