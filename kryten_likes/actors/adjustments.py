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

``Corrections`` is one of the counter writer's committers (counter_writer.py).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone

import attrs

from .. import wire
from ..clock import iso
from ..messages import AdjustRequested
from ..effects import Commit
from ..store.values import Conflict, KvWrite, Landed, StoredEntry
from ..store import documents as docs
from ..store.keys import audit_key, item_key, likes_key
from .groups import FENCED, MAX_CONFLICTS, CorrectionGroup, GroupsInFlight
from .read_model import ReadModel


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


class Corrections:
    """Operators' corrections waiting to be stored, and their outcomes."""

    def __init__(self, read: ReadModel, flying: GroupsInFlight, new_id: Callable[[], str]) -> None:
        self.read = read
        self.flying = flying  # shared with the other committers
        self.new_id = new_id
        self.pending: deque[Adjustment] = deque()
        # Is a journalled like of the item not in its document yet (like_journal.py)? Set by the writer.
        self.likes_unstored: Callable[[str, str], bool] = lambda ns, vid: False

    def waiting_for(self, ns: str, video_id: str) -> bool:
        """Does a correction of the item's like count wait? (Its likes then wait for it.)"""
        return any(a.request.namespace == ns and a.request.video_id == video_id and a.request.field == "like_count"
                   for a in self.pending)

    def take(self, msg: AdjustRequested, now: float) -> list:
        self.pending.append(Adjustment(msg, audit_key(msg.namespace, record_id(now, self.new_id()))))
        return []

    def held(self) -> list[AdjustRequested]:
        """Corrections not answered yet (the supervisor answers them if the writer dies)."""
        flying = [g.correction for g in self.flying.of_kind(CorrectionGroup)]
        return [a.request for a in [*self.pending, *flying]]

    def _busy(self, a: Adjustment) -> bool:
        if a.bucket == "analytics" and self.flying.in_bucket("analytics"):
            return True  # one analytics batch at a time: plays' documents are drafted from the book
        r = a.request
        # A like count's ``old`` is every like answered: journalled ones go in first.
        return self.flying.writing(a.key) or (r.field == "like_count" and self.likes_unstored(r.namespace,
                                                                                             r.video_id))

    def groups(self, now: float) -> list[Commit]:
        """A batch for every correction whose document no group in flight
        writes; a later correction of a waiting document waits behind it."""
        out: list[Commit] = []
        waiting: deque[Adjustment] = deque()
        blocked: set[str] = set()
        while self.pending:
            a = self.pending.popleft()
            if a.key in blocked or self._busy(a):
                blocked.add(a.key)
                waiting.append(a)
            else:
                out.append(self._group(a, now))
        self.pending = waiting
        return out

    def _group(self, a: Adjustment, now: float) -> Commit:
        r, gid = a.request, self.new_id()
        book = self.read.book(r.namespace)
        if r.field == "like_count":
            current, old = book.likes_entry(r.video_id), book.stored_like_count(r.video_id)
            fresh = docs.likes_value(r.video_id, 0, now, book.title(r.video_id), gid)
        else:
            current, old = book.item_entry(r.video_id), book.play_count(r.video_id)
            fresh = docs.new_item(r.video_id)
        value = dict(current.value) if current is not None and current.value else fresh
        value[r.field] = r.value
        if r.field == "like_count":
            value["updated_at"] = iso(now)
        value["batch"] = gid
        audit = audit_value(r, old, now, gid)
        writes = (KvWrite(a.key, docs.dump(value), current.revision if current is not None else 0),
                  KvWrite(a.audit_key, docs.dump(audit), 0))
        # A likes correction counts among the likes groups, so likes of its item wait for it.
        self.flying.add(CorrectionGroup(gid, writes, a, {a.key: value, a.audit_key: audit}, old, a.bucket))
        return Commit(a.bucket, gid, writes, marker_key=a.audit_key)

    def _store(self, g: CorrectionGroup, entry: StoredEntry) -> None:
        r = g.correction.request
        book = self.read.book(r.namespace)
        likes = r.field == "like_count"
        (book.set_likes if likes else book.set_item)(r.video_id, entry)  # the rankings follow the book
        self.read.ranking_moved(r.namespace, "liked" if likes else "played")

    def landed(self, g: CorrectionGroup, outcome: Landed, now: float) -> list:
        a = g.correction
        r = a.request
        book = self.read.book(r.namespace)
        self.read.ranking_moved(r.namespace, "liked" if r.field == "like_count" else "played")
        rev = outcome.revisions.get(a.key)
        held = book.table.likes(r.video_id) if r.field == "like_count" else book.table.item(r.video_id)
        # A landing found by reading back names only keys still holding this
        # group's writes; the book never goes back to an older revision.
        if rev is not None and (held is None or rev > held.revision):
            self._store(g, StoredEntry(rev, g.values[a.key]))
        return [wire.ok(r.reply, video_id=r.video_id, field=r.field, old=g.old, new=r.value,
                        audit_key=a.audit_key)]

    def conflicted(self, g: CorrectionGroup, conflict: Conflict, now: float) -> list:
        a = g.correction
        r = a.request
        self._store(g, conflict.current.get(a.key) or StoredEntry(0, None))
        if a.conflicts + 1 >= MAX_CONFLICTS:
            return [wire.error(r.reply, "internal_error", f"{r.field} of {r.video_id} keeps changing under us")]
        self.pending.appendleft(attrs.evolve(a, conflicts=a.conflicts + 1))
        return []

    def fenced(self, g: CorrectionGroup, now: float) -> list:
        return [wire.error(g.correction.request.reply, "unavailable", FENCED)]
