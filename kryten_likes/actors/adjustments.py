"""The counter writer's corrections: an operator sets one count of an item.

Theory of operation
-------------------
``adjust`` sets an item's ``like_count`` or ``play_count`` to a given value,
with a reason. It goes through the daemon, not around it, because the
counter writer is the only writer of counter documents: its book, its
rankings and the revisions its next batches expect must all see the change.

=============  ===========  ==============================  ==============
field          bucket       document (compare-and-set)      ranking moved
=============  ===========  ==============================  ==============
``like_count``  likes        ``ns/{ns}/items/{id}/likes``    ``top_liked``
``play_count``  analytics    ``ns/{ns}/items/{id}``          ``top_played``
=============  ===========  ==============================  ==============

Each correction is one atomic batch in the document's bucket (a batch is
one stream): the document at the revision the book holds, plus a new audit
record ``ns/{ns}/audit/{time}-{id}`` (create-if-absent) saying who, when,
old, new and why. The audit record is written by this group alone, so it is
the group's marker when an answer is lost.

The global counters do not move: ``items_played`` counts play *events*
(with ``last_event_seq``, the high-water mark that makes each event count
once), so a corrected ``play_count`` is a statement about an item, not a
play that happened or did not.

Order with the other groups: a correction waits while any group in flight
writes its document, and a likes correction in flight is listed among the
likes groups (``likes/<id>``), so likes of its item wait for it in turn; a
plays correction takes the one analytics slot, so plays wait for it. So
inside the daemon nothing races it. If KV changed anyway (another writer,
a late batch of an earlier life), the batch conflicts: the book takes what
KV holds and the correction is tried again from there, so the reply's
``old`` is the value it really replaced. After ``MAX_CONFLICTS`` in a row
the request is answered ``internal_error``.

``CounterWriter`` takes these methods as a mixin, as it takes ``LikeGroups``.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime, timezone

import attrs

from .. import wire
from ..clock import iso
from ..messages import AdjustRequested, Commit
from ..store.values import Conflict, KvWrite, Landed, StoredEntry
from ..store.keys import item_key, likes_key
from ..store import documents as docs
from ..store.keys import audit_key
from .like_groups import MAX_CONFLICTS, Group


@attrs.frozen
class Adjustment:
    """A correction waiting to be stored: its request and its audit key, fixed
    when it arrived so that every attempt creates the same record."""

    request: AdjustRequested
    audit_key: str
    conflicts: int = 0  # attempts refused in a row

    @property
    def bucket(self) -> str:
        return "likes" if self.request.field == "like_count" else "analytics"

    @property
    def key(self) -> str:
        r = self.request
        return likes_key(r.namespace, r.video_id) if r.field == "like_count" else item_key(r.namespace, r.video_id)


def record_id(now: float, unique: str) -> str:
    """``20260101T120000Z-<unique>``: audit keys sort by time."""
    return f"{datetime.fromtimestamp(now, timezone.utc):%Y%m%dT%H%M%SZ}-{unique}"


def audit_value(r: AdjustRequested, old: int, now: float, batch: str) -> dict:
    return {"video_id": r.video_id, "field": r.field, "old": old, "new": r.value, "reason": r.reason,
            "by": r.by, "at": iso(now), "correlation_id": r.reply.correlation_id,
            "schema_version": docs.SCHEMA, "batch": batch}


class Adjustments:
    pending_adjusts: deque[Adjustment]

    def _adjust_asked(self, msg: AdjustRequested, now: float) -> list:
        self.pending_adjusts.append(Adjustment(msg, audit_key(msg.namespace, record_id(now, self._new_id()))))
        return []

    def held_adjusts(self) -> list[AdjustRequested]:
        """Corrections not answered yet (the supervisor answers them if the writer dies)."""
        flying = [a for g in self.in_flight.values() if g.kind == "adjust" for a, _ in g.changes]
        return [a.request for a in [*self.pending_adjusts, *flying]]

    def _busy(self, a: Adjustment) -> bool:
        if a.bucket == "analytics" and "analytics" in self.in_flight:
            return True  # one analytics batch at a time: plays' documents are drafted from the book
        return any(a.key in g.values for g in self.in_flight.values())

    def _adjust_groups(self, now: float) -> list[Commit]:
        """A batch for every correction whose document no group in flight
        writes; a later correction of a waiting document waits behind it."""
        out: list[Commit] = []
        waiting: deque[Adjustment] = deque()
        blocked: set[str] = set()
        while self.pending_adjusts:
            a = self.pending_adjusts.popleft()
            if a.key in blocked or self._busy(a):
                blocked.add(a.key)
                waiting.append(a)
            else:
                out.append(self._adjust_group(a, now))
        self.pending_adjusts = waiting
        return out

    def _adjust_group(self, a: Adjustment, now: float) -> Commit:
        r, gid = a.request, self._new_id()
        book = self.book(r.namespace)
        if r.field == "like_count":
            current, old = book.table.likes(r.video_id), book.like_count(r.video_id)
            fresh = docs.likes_value(r.video_id, 0, now, book.title(r.video_id), gid)
        else:
            current, old = book.table.item(r.video_id), book.play_count(r.video_id)
            fresh = docs.new_item(r.video_id)
        value = dict(current.value) if current is not None and current.value else fresh
        value[r.field] = r.value
        if r.field == "like_count":
            value["updated_at"] = iso(now)
        value["batch"] = gid
        audit = audit_value(r, old, now, gid)
        writes = (KvWrite(a.key, docs.dump(value), current.revision if current is not None else 0),
                  KvWrite(a.audit_key, docs.dump(audit), 0))
        group = Group("adjust", gid, writes, changes=[(a, 0)], values={a.key: value, a.audit_key: audit},
                      before={(r.namespace, r.video_id): old}, now=now, conflicts=a.conflicts)
        # A likes correction is listed with the likes groups, so likes of its item wait for it.
        self.in_flight[f"likes/{gid}" if a.bucket == "likes" else "analytics"] = group
        return Commit(a.bucket, gid, writes, marker_key=a.audit_key)

    def _adjust_finished(self, g: Group, outcome: Landed | Conflict) -> list:
        a: Adjustment = g.changes[0][0]
        r = a.request
        book = self.book(r.namespace)
        likes = r.field == "like_count"
        store = book.set_likes if likes else book.set_item  # the rankings follow the book
        self._dirty.add((r.namespace, "liked" if likes else "played"))
        if isinstance(outcome, Conflict):
            store(r.video_id, outcome.current.get(a.key) or StoredEntry(0, None))
            if a.conflicts + 1 >= MAX_CONFLICTS:
                return [wire.error(r.reply, "internal_error", f"{r.field} of {r.video_id} keeps changing under us")]
            self.pending_adjusts.appendleft(attrs.evolve(a, conflicts=a.conflicts + 1))
            return []
        rev = outcome.revisions.get(a.key)
        held = book.table.likes(r.video_id) if likes else book.table.item(r.video_id)
        # A landing found by reading back names only keys still holding this
        # group's writes; the book never goes back to an older revision.
        if rev is not None and (held is None or rev > held.revision):
            store(r.video_id, StoredEntry(rev, g.values[a.key]))
        return [wire.ok(r.reply, video_id=r.video_id, field=r.field, old=g.before[(r.namespace, r.video_id)],
                        new=r.value, audit_key=a.audit_key)]
