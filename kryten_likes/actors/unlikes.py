"""Unlikes: a counted like taken back within ``[likes] unlike_window_seconds``.

One of the counter writer's committers (counter_writer.py). An unlike is
decided when nothing of its like can still change: no like of the same user
and item waits in the likes committer or flies, and no group in flight
writes the item's counter document or the user's totals. Then, from the like
records (``LikeIndex``):

=====================================  ======  =========================
the user's record of the item          status  error
=====================================  ======  =========================
liked less than the window ago         ok      (``like_count`` one less)
none, or unliked already               error   ``not_liked``
liked longer ago than the window       error   ``unlike_window_passed``
=====================================  ======  =========================

An unlike that counts is one atomic batch, like a like: the item's counter
document minus one (compare-and-set), the record marked ``unliked_at`` and
carrying the user's totals minus one, and the dedupe claim overwritten as
expired (with a one-second TTL), so a later like counts again; the ledger is
told (``ClaimsSettled.withdrawn``) once it has landed. A retry with the same
``correlation_id`` gets the original reply (request memory and key, as a like).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from .. import wire
from ..clock import iso
from ..domain import Claim
from ..effects import Commit
from ..messages import ClaimsSettled, UnlikeForItem
from ..store import documents as docs
from ..contract import fold_user
from ..store.keys import curator_key, dedupe_key, likes_key, record_key, user_key
from ..store.values import Conflict, KvWrite, Landed, StoredEntry
from .groups import FENCED, MAX_CONFLICTS, GroupsInFlight, UnlikeGroup
from .read_model import ReadModel
from .request_memory import RequestMemory, request_key
from .window_counts import hours_field
from .event_bodies import event
from .like_writes import take_totals_of_records

Pair = tuple[str, str, str]  # (namespace, video_id, folded user)


class Unlikes:
    def __init__(self, read: ReadModel, flying: GroupsInFlight, new_id: Callable[[], str], requests: RequestMemory,
                 like_waiting: Callable[[Pair], bool], window: float) -> None:
        self.read = read
        self.flying = flying  # shared with the other committers
        self.new_id = new_id
        self.requests = requests  # shared with the likes committer: one correlation id, one reply
        self.like_waiting = like_waiting  # a like of the pair not stored yet
        self.window = window
        self.pending: deque[tuple[UnlikeForItem, int]] = deque()  # (unlike, conflicts in a row)

    def take(self, msg: UnlikeForItem, now: float) -> list:
        rk = self._rk(msg)
        if rk is not None:
            hit = self.requests.known(rk, now)
            if hit is not None:
                return [wire.ok(msg.reply, **hit)]  # a retry: the original outcome
            if not self.requests.arrive(rk, msg):
                return []  # the original is being decided; answered with it
        self.pending.append((msg, 0))
        return []

    def _answer(self, msg: UnlikeForItem, reply, now: float, outcome: dict | None = None) -> list:
        """``reply`` (a function of a reply address) to the unlike and to every
        retry of it that waited; an ok ``outcome`` is remembered for later retries."""
        rk = self._rk(msg)
        waiters = self.requests.settled(rk, outcome, now) if rk is not None else []
        return [reply(m.reply) for m in [msg, *waiters]]

    def held(self) -> list[UnlikeForItem]:
        return [u for u, _ in self.pending] + [g.unlike for g in self.flying.of_kind(UnlikeGroup)]

    @staticmethod
    def _rk(msg: UnlikeForItem):
        cid = msg.reply.correlation_id
        return (msg.namespace, msg.user, cid) if cid else None

    # --- sending -----------------------------------------------------------------------------

    def groups(self, now: float) -> list:
        """A batch for each unlike that can be decided now; the answers of those
        that count nothing; the rest wait, in order, behind their pair."""
        out: list = []
        waiting: deque = deque()
        blocked: set[Pair] = set()
        full = self.flying.outbox.full("likes")
        for msg, conflicts in self.pending:
            pair = (msg.namespace, msg.media.video_id, msg.user)
            if full or pair in blocked or self._busy(pair):
                blocked.add(pair)
                waiting.append((msg, conflicts))
                continue
            out += self._decide(msg, conflicts, now)
        self.pending = waiting
        return out

    def _busy(self, pair: Pair) -> bool:
        ns, vid, user = pair
        curator = self.read.book(ns).curators.credit_of(vid, user)
        return (self.like_waiting(pair) or self.flying.writing(likes_key(ns, vid))
                or self.flying.outbox.is_busy(record_key(ns, vid, user))  # its last event is not out yet
                or self.flying.writing(user_key(ns, user))
                or (curator is not None and self.flying.writing(curator_key(ns, fold_user(curator)))))

    def _decide(self, msg: UnlikeForItem, conflicts: int, now: float) -> list:
        ns, vid, user = msg.namespace, msg.media.video_id, msg.user
        book = self.read.book(ns)
        liked_at = book.records.liked_at(vid, user)
        if liked_at is None:
            why = f"{user} has no counted like of {vid} to take back"
            return self._answer(msg, lambda to: wire.error(to, "not_liked", why), now)
        if now - liked_at >= self.window:
            why = f"liked at {iso(liked_at)}; likes can be taken back for {self.window:g} s"
            return self._answer(msg, lambda to: wire.error(to, "unlike_window_passed", why), now)
        gid = self.new_id()
        # The document counts what it stores; the answer also what is journalled
        # and not in it yet (counter_book's ``staged_likes``).
        count, shown = book.stored_like_count(vid), book.like_count(vid)
        given = book.records.totals(user)[0]
        name = book.records.name_of(user) or msg.username or user
        book.advance(now)
        hours = {likes_key(ns, vid): book.like_windows.after(vid, liked_at, -1)}  # out of the hour it was in
        likes = docs.likes_value(vid, max(0, count - 1), now, book.title(vid), gid,
                                 hours_field(hours[likes_key(ns, vid)]))
        totals = docs.user_value(user, name, max(0, given - 1), now, gid)
        curator = book.curators.credit_of(vid, user)
        record = docs.record_value(vid, user, name, liked_at, 0.0, f"{gid}.0", gid, curator,
                                   msg.media.media_type, max(0, shown - 1), totals["likes_given"], name)
        record["unliked_at"] = iso(now)
        claim = Claim(ns, vid, user, float(liked_at), now)
        writes = [KvWrite(record_key(ns, vid, user), docs.dump(record), None),
                  KvWrite(likes_key(ns, vid), docs.dump(likes), book.table.likes_revision(vid)),
                  KvWrite(dedupe_key(ns, vid, user), docs.claim_bytes(claim, gid), None, ttl_seconds=1.0)]
        rk = self._rk(msg)
        if rk is not None:
            value = {"user": user, "correlation_id": rk[2], "video_id": vid, "like_count": max(0, shown - 1),
                     "status": "ok", "liked_at": iso(now), "expires_at": iso(now + self.requests.window),
                     "schema_version": docs.SCHEMA, "batch": gid}
            writes.append(KvWrite(request_key(rk), docs.dump(value), None, ttl_seconds=self.requests.window))
        # The user's totals ride on the record; their key in ``values`` keeps
        # the user's likes waiting while this flies (``_busy``, the likes committer).
        values = {likes_key(ns, vid): likes, user_key(ns, user): totals, record_key(ns, vid, user): record}
        if curator is not None:
            writes.append(self._uncredit(ns, fold_user(curator), curator, liked_at, now, gid, values, hours))
        self.flying.add(UnlikeGroup(gid, tuple(writes), msg, values, claim, conflicts, now, hours))
        return [Commit("likes", gid, tuple(writes), marker_key=record_key(ns, vid, user))]

    def _uncredit(self, ns: str, c: str, name: str, liked_at: float, now: float, gid: str, values: dict,
                  hours: dict) -> KvWrite:
        """The curator's ``likes_received`` one less, out of the like's hour."""
        curators = self.read.book(ns).curators
        count, rev = curators.of("likes", c)
        key = curator_key(ns, c)
        hours[key] = curators.windows["likes"].after(c, liked_at, -1)
        values[key] = docs.curator_value(c, curators.name_of(c) or name, "likes_received", max(0, count - 1), now,
                                         hours_field(hours[key]), gid)
        return KvWrite(key, docs.dump(values[key]), rev)

    # --- outcomes ------------------------------------------------------------------------------

    def landed(self, g: UnlikeGroup, landed: Landed, now: float) -> list:
        msg = g.unlike
        ns, vid, user = msg.namespace, msg.media.video_id, msg.user
        book = self.read.book(ns)
        likes, totals = g.values[likes_key(ns, vid)], g.values[user_key(ns, user)]
        rev = landed.revisions.get(likes_key(ns, vid))
        if rev is not None and rev > book.table.likes_revision(vid):
            book.set_likes_written(vid, rev, likes["like_count"], g.now, likes["title"], g.hours[likes_key(ns, vid)])
        rev = landed.revisions.get(record_key(ns, vid, user))
        if rev is not None:
            book.records.offer_totals(user, totals["username"], totals["likes_given"], rev)
        book.records.forget(vid, user)
        curator = book.curators.credit_of(vid, user)
        book.curators.withdrawn(vid, user)
        for key, v in g.values.items():
            rev = landed.revisions.get(key)
            if "likes_received" in v and rev is not None and rev > book.curators.of("likes", v["user"])[1]:
                book.curators.set("likes", v["user"], v["username"], v["likes_received"], rev, g.hours[key])
        self.read.ranking_moved(ns, "liked")
        shown = g.values[record_key(ns, vid, user)]["like_count"]
        outcome = {"video_id": vid, "like_count": shown}
        ev = event(f"{g.group_id}.0", "unlike", ns, username=totals["username"], user=user, video_id=vid,
                   media_type=msg.media.media_type, title=book.title(vid), curator=curator,
                   like_count=shown, play_count=book.play_count(vid), at=iso(g.now))
        published = self.flying.outbox.stored(g.group_id, "likes", min(landed.revisions.values(), default=0),
                                              (record_key(ns, vid, user),), (ev,), fresh=True)
        return [*self._answer(msg, lambda to: wire.ok(to, **outcome), g.now, outcome),
                ClaimsSettled(withdrawn=(g.claim,)), *published]

    def conflicted(self, g: UnlikeGroup, conflict: Conflict, now: float) -> list:
        msg = g.unlike
        ns, vid = msg.namespace, msg.media.video_id
        book = self.read.book(ns)
        book.set_likes(vid, conflict.current.get(likes_key(ns, vid)) or StoredEntry(0, None))
        for key, v in g.values.items():
            if "likes_received" in v:
                book.curators.take("likes", v["user"], conflict.current.get(key))
        take_totals_of_records(self.read, conflict)
        if g.conflicts + 1 >= MAX_CONFLICTS:
            why = "the unlike's keys keep changing under us"
            return self._answer(msg, lambda to: wire.error(to, "internal_error", why), now)
        self.pending.appendleft((msg, g.conflicts + 1))
        return []

    def fenced(self, g: UnlikeGroup, now: float) -> list:
        return self._answer(g.unlike, lambda to: wire.error(to, "unavailable", FENCED), now)
