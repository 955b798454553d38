"""What becomes of a likes group: it landed, KV refused it (a conflict), or
another daemon fenced it. The second half of the likes committer
(likes_committer.py: the likes arriving and the groups sent), kept apart
so that each half reads in a screen or two.

``LikeOutcomes`` is ``LikesCommitter``'s base: it uses the committer's
state (annotated below) and adds none of its own.
"""

from __future__ import annotations

from collections import deque

import attrs

from .. import wire
from ..clock import parse_iso
from ..messages import ClaimsSettled, LikeReserved
from ..store.keys import likes_key, record_key
from ..store.values import Conflict, Landed, StoredEntry
from .event_bodies import like_events
from .groups import FENCED, MAX_CONFLICTS, GroupsInFlight, JournalGroup, LikeGroup
from .journal_committer import JournalCommitter
from .like_writes import claim_key_of, liker, request_key_of, take_totals_of_records
from .read_model import ReadModel
from .request_memory import RequestMemory, replay, request_key


class LikeOutcomes:
    read: ReadModel
    flying: GroupsInFlight
    requests: RequestMemory
    journal: JournalCommitter
    pending: deque[LikeReserved]
    claim_revisions: dict[str, int]
    conflicts_in_row: int

    def landed(self, g: LikeGroup | JournalGroup, landed: Landed, now: float) -> list:
        if isinstance(g, JournalGroup):
            return self.journal.landed(g, landed)
        unstaged = self.journal.stored(g, landed)
        for (ns, vid) in g.before:
            key = likes_key(ns, vid)
            rev = landed.revisions.get(key)
            book = self.read.book(ns)
            k = unstaged.pop((ns, vid), 0)
            # A landing found by reading back names only keys still holding this
            # group's writes; the book never goes back to an older revision.
            if rev is not None and rev > book.table.likes_revision(vid):
                v = g.values[key]
                book.set_likes_written(vid, rev, v["like_count"], g.now, v["title"], g.hours[key], k)
            elif k:
                book.rank_unstaged(vid, k)
            self.read.ranking_moved(ns, "liked")
        for (ns, vid), k in unstaged.items():  # (none: a group's staged likes are in its items)
            self.read.book(ns).rank_unstaged(vid, k)
        self._records_landed(g, landed)
        out: list = []
        claims = []
        for like, count in zip(g.likes, g.counts):
            out.append(wire.ok(like.reply, video_id=like.media.video_id, like_count=count))
            rk = request_key_of(like)
            if rk is not None:
                outcome = {"video_id": like.media.video_id, "like_count": count}
                out += self.requests.retries_answered(rk, outcome, g.now)
            if like.claim is not None:
                claims.append(like.claim)
                if self.claim_revisions:  # only after a conflict
                    self.claim_revisions.pop(claim_key_of(like), None)
        if claims:
            out.append(ClaimsSettled(confirmed=tuple(claims)))
        self.conflicts_in_row = 0
        # The bus event of each like (its ``event_id`` is in its record).
        outbox = self.flying.outbox
        keys, events = like_events(g, self.read.book) if outbox.enabled else ((), ())
        return out + outbox.stored(g.group_id, "likes", min(landed.revisions.values(), default=0), keys, events,
                                   fresh=True)

    def _records_landed(self, g: LikeGroup, landed: Landed) -> None:
        newest: dict[tuple[str, str], int] = {}  # the revision of each user's newest record of the group
        for like in g.likes:
            user = liker(like)
            if user:
                book = self.read.book(like.namespace)
                book.records.liked(like.media.video_id, user, like.username or user, g.now)
                if like.curator:
                    book.curators.credited(like.media.video_id, user, g.now, like.curator)
        for like in [*g.likes, *(s.like for s in g.staged)]:
            user = liker(like)
            if user:
                rev = landed.revisions.get(record_key(like.namespace, like.media.video_id, user), 0)
                if rev > newest.get((like.namespace, user), 0):
                    newest[(like.namespace, user)] = rev
        for key, v in g.values.items():
            if "likes_given" in v:  # the totals its records carry (a found landing lists only what still holds them)
                ns = key.split("/")[1]
                rev = newest.get((ns, v["user"]), 0)
                if rev:
                    self.read.book(ns).records.offer_totals(v["user"], v["username"], v["likes_given"], rev)
            elif "likes_received" in v:
                curators = self.read.book(key.split("/")[1]).curators
                rev = landed.revisions.get(key)
                if rev is not None and rev > curators.of("likes", v["user"])[1]:
                    curators.set("likes", v["user"], v["username"], v["likes_received"], rev, g.hours[key])

    # --- refused ---------------------------------------------------------------------------

    def conflicted(self, g: LikeGroup, conflict: Conflict, now: float) -> list:
        assert isinstance(g, LikeGroup), "a journal write expects nothing but the fence"
        take_totals_of_records(self.read, conflict)
        for key, v in g.values.items():
            if "likes_received" in v:
                self.read.book(key.split("/")[1]).curators.take("likes", v["user"], conflict.current.get(key))
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
        self.journal.refused(g, conflict, give_up, self.claim_revisions)
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
                return replay(like, outcome) + self.requests.retries_answered(rk, outcome, now)
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

    def fenced(self, g: LikeGroup | JournalGroup, now: float) -> list:
        """Nothing of the group was stored and nothing more will be: another
        daemon is active. Each like hears so, truly. (Journalled likes it
        held stay staged in KV: the active daemon stores them.)"""
        out: list = []
        released = []
        if isinstance(g, JournalGroup):
            self.journal.not_journaling(g)
        for like in g.likes:
            rk = request_key_of(like)
            for r in [like] + (self.requests.settled(rk, None, now) if rk is not None else []):
                out.append(wire.error(r.reply, "unavailable", FENCED))
                if getattr(r, "claim", None) is not None:
                    released.append(r.claim)
        if released:
            out.append(ClaimsSettled(released=tuple(released)))
        return out
