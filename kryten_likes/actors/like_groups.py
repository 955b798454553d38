"""The counter writer's likes: claims and counts stored in groups.

``CounterWriter`` (counter_writer.py, whose docstring tells the whole story)
takes these methods as a mixin: they read and change the writer's own
state (pending likes, groups in flight, books, request memory), so they
are one actor's rules kept in a second file, not a second actor.
"""

from __future__ import annotations

import attrs

from .. import wire
from ..clock import iso, parse_iso
from ..messages import ClaimsSettled, Commit, Forward, LikeDuplicate, LikeReserved
from ..store.values import Conflict, KvWrite, Landed, StoredEntry
from ..store.keys import dedupe_key, likes_key
from ..store import documents as docs
from .request_memory import RequestKey, request_key

MAX_CONFLICTS = 5
MAX_LIKE_GROUPS = 3  # likes batches in flight at once (nats-server allows 50 per stream)
PIPELINE_MIN = 32  # likes waiting before a group is sent while another is in flight


@attrs.define
class Group:
    kind: str  # "likes" | "plays"
    group_id: str
    writes: tuple[KvWrite, ...]
    likes: list[LikeReserved] = attrs.Factory(list)
    changes: list = attrs.Factory(list)  # analytics: (change, enqueues in flight when it arrived)
    draft: object = None
    # likes: (namespace, video_id) -> count before this group
    before: dict[tuple[str, str], int] = attrs.Factory(dict)
    values: dict[str, dict] = attrs.Factory(dict)  # key -> the document written
    counts: list[int] = attrs.Factory(list)  # likes: the count each like gets
    now: float = 0.0
    conflicts: int = 0  # analytics: conflicts in a row before it (likes: the writer counts them)


class LikeGroups:
    def _like_groups(self) -> list[Group]:
        return [g for k, g in self.in_flight.items() if k.startswith("likes/")]

    def _like_group(self, now: float) -> Commit | None:
        flying = self._like_groups()
        gid = self._new_id()
        likes: list[LikeReserved] = []
        per_item: dict[tuple[str, str], int] = {}
        cost = 0
        claim_keys: set[str] = set()
        later: list[LikeReserved] = []
        claim_key: dict[int, str] = {}  # id(like) -> its dedupe key, computed once
        busy = {key for g in flying for key in g.values}  # documents a group in flight writes
        while self.pending_likes:
            like = self.pending_likes[0]
            item = (like.namespace, like.media.video_id)
            extra = (like.claim is not None) + (item not in per_item)
            if cost + extra > self.max_batch:
                break
            self.pending_likes.popleft()
            if busy and likes_key(*item) in busy:
                # Its document's next revision is not known until that group
                # lands: the like waits for the next group, keeping its order.
                later.append(like)
                continue
            if like.claim is not None:
                key = claim_key[id(like)] = dedupe_key(like.claim.namespace, like.claim.video_id, like.claim.user)
                if key in claim_keys:
                    # Two reservations of one claim (a ledger restarted meanwhile):
                    # a batch may write a key once, so this one waits for the next
                    # batch, where the stored claim makes it a duplicate.
                    later.append(like)
                    continue
                claim_keys.add(key)
            cost += extra
            likes.append(like)
            per_item[item] = per_item.get(item, 0) + 1
        self.pending_likes.extendleft(reversed(later))
        if not likes:
            return None
        writes: list[KvWrite] = []
        for like in likes:
            c = like.claim
            if c is not None:
                key = claim_key[id(like)]
                writes.append(KvWrite(key, docs.claim_bytes(c, gid),
                                      self._claim_revisions.get(key, c.expected_revision),
                                      ttl_seconds=c.expires_at - c.liked_at))
        before: dict[tuple[str, str], int] = {}
        values: dict[str, dict] = {}
        titles = {(l.namespace, l.media.video_id): l.media.title for l in likes}
        for (ns, vid), n in per_item.items():
            book = self.book(ns)
            before[(ns, vid)] = count = book.like_count(vid)
            key = likes_key(ns, vid)
            values[key] = docs.likes_value(vid, count + n, now, titles[(ns, vid)] or book.title(vid), gid)
            writes.append(KvWrite(key, docs.likes_bytes(values[key]), book.table.likes_revision(vid)))
        counts: list[int] = []
        seen: dict[tuple[str, str], int] = {}
        for like in likes:
            item = (like.namespace, like.media.video_id)
            seen[item] = seen.get(item, 0) + 1
            counts.append(before[item] + seen[item])
            rk = self._rk(like)
            if rk is not None:
                key = request_key(rk)
                value = {"user": rk[1], "correlation_id": rk[2], "video_id": like.media.video_id,
                         "like_count": counts[-1], "status": "ok", "liked_at": iso(now),
                         "expires_at": iso(now + self.requests.window), "schema_version": docs.SCHEMA, "batch": gid}
                writes.append(KvWrite(key, docs.dump(value), self._claim_revisions.get(key, 0),
                                      ttl_seconds=self.requests.window))
        # The marker (read when an answer is lost) is a key only this group
        # writes when it has one (a claim): the item's document is written by
        # the next group of that item, perhaps before this answer is resolved.
        marker = next((w.key for w in writes if w.key not in values), next(iter(values)))
        group = Group("likes", gid, tuple(writes), likes=likes, before=before, values=values, counts=counts, now=now)
        self.in_flight[f"likes/{gid}"] = group
        return Commit("likes", gid, group.writes, marker_key=marker)

    def _likes_landed(self, g: Group, landed: Landed) -> list:
        out: list = []
        for (ns, vid) in g.before:
            key = likes_key(ns, vid)
            rev = landed.revisions.get(key)
            book = self.book(ns)
            # A landing found by reading back names only keys still holding this
            # group's writes; the book never goes back to an older revision.
            if rev is not None and rev > book.table.likes_revision(vid):
                v = g.values[key]
                book.set_likes_written(vid, rev, v["like_count"], g.now, v["title"])
            self._dirty.add((ns, "liked"))
        claims = []
        for like, count in zip(g.likes, g.counts):
            out.append(wire.ok(like.reply, video_id=like.media.video_id, like_count=count))
            rk = self._rk(like)
            if rk is not None:
                outcome = {"video_id": like.media.video_id, "like_count": count}
                for waiter in self.requests.settled(rk, outcome, g.now):
                    out += self._replay(waiter, outcome)
            if like.claim is not None:
                claims.append(like.claim)
                if self._claim_revisions:  # only after a conflict
                    self._claim_revisions.pop(
                        dedupe_key(like.claim.namespace, like.claim.video_id, like.claim.user), None)
        if claims:
            out.append(Forward("dedupe_ledger", ClaimsSettled(confirmed=tuple(claims))))
        self._retry_conflicts["likes"] = 0
        return out

    def _likes_conflicted(self, g: Group, conflict: Conflict, now: float) -> list:
        out: list = []
        for (ns, vid) in g.before:
            entry = conflict.current.get(likes_key(ns, vid))
            self.book(ns).set_likes(vid, entry if entry is not None else StoredEntry(0, None))
        retry: list[LikeReserved] = []
        confirmed, released = [], []
        give_up = self._retry_conflicts["likes"] + 1 >= MAX_CONFLICTS
        for like in g.likes:
            c = like.claim
            rk = self._rk(like)
            if rk is not None:
                entry = conflict.current.get(request_key(rk))
                if entry is not None and entry.value is not None and parse_iso(entry.value["expires_at"]) > now:
                    # A retry whose original was stored by an earlier life of the daemon.
                    outcome = {"video_id": entry.value["video_id"], "like_count": entry.value["like_count"]}
                    out += self._replay(like, outcome)
                    for waiter in self.requests.settled(rk, outcome, now):
                        out += self._replay(waiter, outcome)
                    continue
                self._claim_revisions[request_key(rk)] = entry.revision if entry is not None else 0
            if c is not None:
                key = dedupe_key(c.namespace, c.video_id, c.user)
                entry = conflict.current.get(key)
                if entry is not None and entry.value is not None:
                    exp = parse_iso(entry.value["expires_at"])
                    if exp > now:
                        count = self.book(c.namespace).like_count(c.video_id)
                        for d in [like] + (self.requests.settled(rk, None, now) if rk is not None else []):
                            out.append(wire.duplicate(d.reply, video_id=c.video_id, like_count=count))
                        confirmed.append(attrs.evolve(c, expires_at=exp))
                        self._claim_revisions.pop(key, None)
                        continue
                self._claim_revisions[key] = entry.revision if entry is not None else 0
            if give_up:
                failed = [like] + (self.requests.settled(rk, None, now) if rk is not None else [])
                for f in failed:
                    out.append(wire.error(f.reply, "internal_error", "the like's keys keep changing under us"))
                    if getattr(f, "claim", None) is not None:
                        released.append(f.claim)
            else:
                retry.append(like)
        self.pending_likes.extendleft(reversed(retry))
        self._retry_conflicts["likes"] = 0 if give_up else self._retry_conflicts["likes"] + 1
        if confirmed or released:
            out.append(Forward("dedupe_ledger", ClaimsSettled(tuple(confirmed), tuple(released))))
        return out

    @staticmethod
    def _rk(msg: LikeReserved | LikeDuplicate) -> RequestKey | None:
        cid = msg.reply.correlation_id
        user = msg.user or (msg.claim.user if isinstance(msg, LikeReserved) and msg.claim else "")
        return (msg.namespace, user, cid) if cid and user else None

    def _replay(self, msg: LikeReserved | LikeDuplicate, outcome: dict) -> list:
        """Answer a retry with the original outcome; it counts nothing."""
        out: list = [wire.ok(msg.reply, **outcome)]
        if isinstance(msg, LikeReserved) and msg.claim is not None:
            out.append(Forward("dedupe_ledger", ClaimsSettled(released=(msg.claim,))))
        return out

    def held_waiters(self) -> list:
        return [w for ws in self.requests.waiters.values() for w in ws]

