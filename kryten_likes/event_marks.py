"""The event marks belong to one stream.

The global counters document holds ``last_event_seq`` and ``last_queue_seq``:
the highest changeMedia and queue event already counted. They are sequence
numbers of *one* stream, and mean nothing against another. A stream deleted
and made again, a new channel, or a prefix that reads another stream starts
again at sequence 1, and marks of the old stream would make its first events
look counted: plays silently dropped.

So the document also names the stream its marks belong to
(``event_stream``: its name and the id the daemon put in its metadata when
it made or first met it, which a stream made again does not share; not its
creation time, which each node of a cluster reports differently), and keeps the marks of streams it read before (``event_marks``), so
that going back to an earlier channel does not count its events twice. At
start, and whenever the counter writer loads the document again,
``bind_marks`` makes the marks the current stream's: unchanged when they are
already, restored when this stream was read before, else zero (read it from
its beginning).

A document written before marks were bound (no ``event_stream``) is taken to
belong to the current stream unless its marks are beyond the stream's last
sequence, which a recreated stream shows. This is a guess made once, when
first upgrading; every document written after names its stream.
"""

from __future__ import annotations

import attrs

MARKS = ("last_event_seq", "last_queue_seq")
KEPT_STREAMS = 16  # marks of earlier streams kept, newest first


@attrs.frozen
class EventStream:
    """The stream the daemon reads events from, as stored: its name and the
    id in its metadata (``events.STREAM_ID``)."""

    name: str
    id: str
    last_seq: int = 0  # its last sequence when the daemon started

    def identity(self) -> dict:
        return {"name": self.name, "id": self.id}


def bind_marks(value: dict, stream: EventStream) -> dict:
    """The global document ``value`` with marks that belong to ``stream``.
    Pure: a new dict; ``value`` is not changed."""
    v = dict(value)
    here = v.get("event_stream")
    if here == stream.identity():
        return v
    marks = {m: _int(v.get(m)) for m in MARKS}
    if here is None and max(marks.values()) <= stream.last_seq:
        v["event_stream"] = stream.identity()  # written before marks were bound (see above)
        return v
    kept = dict(v.get("event_marks") or {}) if isinstance(v.get("event_marks"), dict) else {}
    if isinstance(here, dict) and isinstance(here.get("name"), str):
        kept.pop(here["name"], None)
        kept = {here["name"]: {"id": here.get("id"), **marks}, **kept}
    back = kept.pop(stream.name, None)
    if isinstance(back, dict) and back.get("id") == stream.id:
        marks = {m: _int(back.get(m)) for m in MARKS}
    else:
        marks = {m: 0 for m in MARKS}
    v.update(marks)
    v["event_stream"] = stream.identity()
    v["event_marks"] = dict(list(kept.items())[:KEPT_STREAMS])
    return v


def _int(x: object) -> int:
    return x if isinstance(x, int) and not isinstance(x, bool) and x > 0 else 0
