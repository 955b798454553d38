"""The likes committer: claims, like counts and request keys, stored in groups.

One of the counter writer's three parts (counter_writer.py tells the whole
story). It owns the likes waiting to be stored, the memory of requests sent
with a ``correlation_id`` (``RequestMemory``) and what a conflict taught it
about claim and request keys' revisions. A group is every waiting like that
fits in one batch: each reserved claim (create-if-absent, or overwrite of an
expired claim at its revision), one compare-and-set of each liked item's
counter document, and a request key per like sent with a correlation id.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import attrs

from .. import wire
from ..clock import iso, parse_iso
from ..messages import ClaimsSettled, LikeDuplicate, LikeReserved
from ..effects import Commit
from ..store import documents as docs
from ..store.keys import dedupe_key, likes_key
from ..store.values import Conflict, KvWrite, Landed, StoredEntry
from .groups import FENCED, MAX_CONFLICTS, GroupsInFlight, LikeGroup
from .read_model import ReadModel
from .request_memory import RequestKey, RequestMemory, request_key

MAX_LIKE_GROUPS = 3  # likes batches in flight at once (nats-server allows 50 per stream)
PIPELINE_MIN = 32  # likes waiting before a group is sent while another is in flight

Item = tuple[str, str]  # (namespace, video_id)


def request_key_of(msg: LikeReserved | LikeDuplicate) -> RequestKey | None:
    cid = msg.reply.correlation_id
    user = msg.user or (msg.claim.user if isinstance(msg, LikeReserved) and msg.claim else "")
    return (msg.namespace, user, cid) if cid and user else None


def claim_key_of(like: LikeReserved) -> str:
    c = like.claim
    assert c is not None
    return dedupe_key(c.namespace, c.video_id, c.user)


class LikesCommitter:
    def __init__(self, read: ReadModel, flying: GroupsInFlight, new_id: Callable[[], str], requests: RequestMemory,
                 *, max_batch: int, max_groups: int = MAX_LIKE_GROUPS, pipeline_min: int = PIPELINE_MIN) -> None:
        self.read = read
        self.flying = flying  # shared with the other committers
        self.new_id = new_id
        self.requests = requests
        self.max_batch = max_batch
        self.max_groups = max_groups
        self.pipeline_min = pipeline_min
        self.pending: deque[LikeReserved] = deque()
        self.claim_revisions: dict[str, int] = {}  # claim and request keys' revisions, learnt from a conflict
        self.conflicts_in_row = 0

    # --- arriving ---------------------------------------------------------------------

    def take(self, msg: LikeReserved | LikeDuplicate, now: float) -> list:
        rk = request_key_of(msg)
        if rk is not None:
            hit = self.requests.known(rk, now)
            if hit is not None:
                return self._replay(msg, hit)  # a retry: the original outcome
            if (rk in self.requests.owner or isinstance(msg, LikeReserved)) and not self.requests.arrive(rk, msg):
                return []  # the original is being stored; answer with it
        if isinstance(msg, LikeReserved):
            self.pending.append(msg)
            return []
        count = self.read.peek(msg.namespace).like_count(msg.media.video_id)
        return [wire.duplicate(msg.reply, video_id=msg.media.video_id, like_count=count)]

    def held(self) -> list[LikeReserved]:
        return list(self.pending) + [l for g in self.flying.of_kind(LikeGroup) for l in g.likes]

    def held_waiters(self) -> list:
        return [w for ws in self.requests.waiters.values() for w in ws]

    # --- sending ----------------------------------------------------------------------

    def groups(self, now: float) -> list[Commit]:
        out: list[Commit] = []
        while self.pending:
            flying = len(self.flying.in_bucket("likes"))
            if flying and (flying >= self.max_groups or len(self.pending) < self.pipeline_min):
                break  # small groups cost the server more than waiting for the one in flight
            commit = self._group(now)
            if commit is None:
                break
            out.append(commit)
        return out

    def _choose(self) -> tuple[list[LikeReserved], dict[Item, int]]:
        """The waiting likes that fit one batch, in order; the rest keep theirs."""
        likes: list[LikeReserved] = []
        per_item: dict[Item, int] = {}
        cost = 0
        claims: set[str] = set()
        later: list[LikeReserved] = []
        busy = self.flying.keys_written("likes")
        while self.pending:
            like = self.pending[0]
            item = (like.namespace, like.media.video_id)
            extra = (like.claim is not None) + (item not in per_item)
            if cost + extra > self.max_batch:
                break
            self.pending.popleft()
            if busy and likes_key(*item) in busy:
                # Its document's next revision is not known until that group
                # lands: the like waits for the next group, keeping its order.
                later.append(like)
                continue
            if like.claim is not None:
                if claim_key_of(like) in claims:
                    # Two reservations of one claim (a ledger restarted meanwhile):
                    # a batch may write a key once, so this one waits for the next
                    # batch, where the stored claim makes it a duplicate.
                    later.append(like)
                    continue
                claims.add(claim_key_of(like))
            cost += extra
            likes.append(like)
            per_item[item] = per_item.get(item, 0) + 1
        self.pending.extendleft(reversed(later))
        return likes, per_item

    def _group(self, now: float) -> Commit | None:
        likes, per_item = self._choose()
        if not likes:
            return None
        gid = self.new_id()
        writes = [self._claim_write(like, gid) for like in likes if like.claim is not None]
        before: dict[Item, int] = {}
        values: dict[str, dict] = {}
        titles = {(l.namespace, l.media.video_id): l.media.title for l in likes}
        for (ns, vid), n in per_item.items():
            book = self.read.book(ns)
            before[(ns, vid)] = count = book.like_count(vid)
            key = likes_key(ns, vid)
            values[key] = docs.likes_value(vid, count + n, now, titles[(ns, vid)] or book.title(vid), gid)
            writes.append(KvWrite(key, docs.likes_bytes(values[key]), book.table.likes_revision(vid)))
        counts: list[int] = []
        seen: dict[Item, int] = {}
        for like in likes:
            item = (like.namespace, like.media.video_id)
            seen[item] = seen.get(item, 0) + 1
            counts.append(before[item] + seen[item])
            rk = request_key_of(like)
            if rk is not None:
                writes.append(self._request_write(rk, like, counts[-1], now, gid))
        # The marker (read when an answer is lost) is a key only this group
        # writes when it has one (a claim): the item's document is written by
        # the next group of that item, perhaps before this answer is resolved.
        marker = next((w.key for w in writes if w.key not in values), next(iter(values)))
        group = LikeGroup(gid, tuple(writes), likes, before, values, counts, now)
        self.flying.add(group)
        return Commit("likes", gid, group.writes, marker_key=marker)

    def _claim_write(self, like: LikeReserved, gid: str) -> KvWrite:
        c = like.claim
        assert c is not None
        key = claim_key_of(like)
        return KvWrite(key, docs.claim_bytes(c, gid), self.claim_revisions.get(key, c.expected_revision),
                       ttl_seconds=c.expires_at - c.liked_at)

    def _request_write(self, rk: RequestKey, like: LikeReserved, count: int, now: float, gid: str) -> KvWrite:
        key = request_key(rk)
        value = {"user": rk[1], "correlation_id": rk[2], "video_id": like.media.video_id,
                 "like_count": count, "status": "ok", "liked_at": iso(now),
                 "expires_at": iso(now + self.requests.window), "schema_version": docs.SCHEMA, "batch": gid}
        return KvWrite(key, docs.dump(value), self.claim_revisions.get(key, 0), ttl_seconds=self.requests.window)

    # --- outcomes -----------------------------------------------------------------------

    def landed(self, g: LikeGroup, landed: Landed, now: float) -> list:
        for (ns, vid) in g.before:
            key = likes_key(ns, vid)
            rev = landed.revisions.get(key)
            book = self.read.book(ns)
            # A landing found by reading back names only keys still holding this
            # group's writes; the book never goes back to an older revision.
            if rev is not None and rev > book.table.likes_revision(vid):
                v = g.values[key]
                book.set_likes_written(vid, rev, v["like_count"], g.now, v["title"])
            self.read.ranking_moved(ns, "liked")
        out: list = []
        claims = []
        for like, count in zip(g.likes, g.counts):
            out.append(wire.ok(like.reply, video_id=like.media.video_id, like_count=count))
            rk = request_key_of(like)
            if rk is not None:
                outcome = {"video_id": like.media.video_id, "like_count": count}
                for waiter in self.requests.settled(rk, outcome, g.now):
                    out += self._replay(waiter, outcome)
            if like.claim is not None:
                claims.append(like.claim)
                if self.claim_revisions:  # only after a conflict
                    self.claim_revisions.pop(claim_key_of(like), None)
        if claims:
            out.append(ClaimsSettled(confirmed=tuple(claims)))
        self.conflicts_in_row = 0
        return out

    def conflicted(self, g: LikeGroup, conflict: Conflict, now: float) -> list:
        for (ns, vid) in g.before:
            entry = conflict.current.get(likes_key(ns, vid))
            self.read.book(ns).set_likes(vid, entry if entry is not None else StoredEntry(0, None))
        out: list = []
        retry: list[LikeReserved] = []
        confirmed, released = [], []
        give_up = self.conflicts_in_row + 1 >= MAX_CONFLICTS
        for like in g.likes:
            settled = self._settled_by_kv(like, conflict, now, confirmed)
            if settled is not None:
                out += settled
            elif give_up:
                rk = request_key_of(like)
                for f in [like] + (self.requests.settled(rk, None, now) if rk is not None else []):
                    out.append(wire.error(f.reply, "internal_error", "the like's keys keep changing under us"))
                    if getattr(f, "claim", None) is not None:
                        released.append(f.claim)
            else:
                retry.append(like)
        self.pending.extendleft(reversed(retry))
        self.conflicts_in_row = 0 if give_up else self.conflicts_in_row + 1
        if confirmed or released:
            out.append(ClaimsSettled(tuple(confirmed), tuple(released)))
        return out

    def _settled_by_kv(self, like: LikeReserved, conflict: Conflict, now: float, confirmed: list) -> list | None:
        """What KV holds may answer a like whose batch conflicted: a live request
        key (an earlier life stored it) or a live claim (a duplicate). None: it
        must be tried again, at the revisions KV holds now."""
        rk = request_key_of(like)
        if rk is not None:
            entry = conflict.current.get(request_key(rk))
            if entry is not None and entry.value is not None and parse_iso(entry.value["expires_at"]) > now:
                outcome = {"video_id": entry.value["video_id"], "like_count": entry.value["like_count"]}
                out = self._replay(like, outcome)
                for waiter in self.requests.settled(rk, outcome, now):
                    out += self._replay(waiter, outcome)
                return out
            self.claim_revisions[request_key(rk)] = entry.revision if entry is not None else 0
        c = like.claim
        if c is None:
            return None
        key = claim_key_of(like)
        entry = conflict.current.get(key)
        if entry is not None and entry.value is not None and parse_iso(entry.value["expires_at"]) > now:
            count = self.read.book(c.namespace).like_count(c.video_id)
            confirmed.append(attrs.evolve(c, expires_at=parse_iso(entry.value["expires_at"])))
            self.claim_revisions.pop(key, None)
            return [wire.duplicate(d.reply, video_id=c.video_id, like_count=count)
                    for d in [like] + (self.requests.settled(rk, None, now) if rk is not None else [])]
        self.claim_revisions[key] = entry.revision if entry is not None else 0
        return None

    def fenced(self, g: LikeGroup, now: float) -> list:
        """Nothing of the group was stored and nothing more will be: another
        daemon is active. Each like hears so, truly."""
        out: list = []
        released = []
        for like in g.likes:
            rk = request_key_of(like)
            for r in [like] + (self.requests.settled(rk, None, now) if rk is not None else []):
                out.append(wire.error(r.reply, "unavailable", FENCED))
                if getattr(r, "claim", None) is not None:
                    released.append(r.claim)
        if released:
            out.append(ClaimsSettled(released=tuple(released)))
        return out

    def _replay(self, msg: LikeReserved | LikeDuplicate, outcome: dict) -> list:
        """Answer a retry with the original outcome; it counts nothing."""
        out: list = [wire.ok(msg.reply, **outcome)]
        if isinstance(msg, LikeReserved) and msg.claim is not None:
            out.append(ClaimsSettled(released=(msg.claim,)))
        return out
