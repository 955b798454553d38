"""What one likes group writes, as one atomic batch (the likes committer
chooses the likes; this drafts their writes):

- each reserved **claim** (create-if-absent, or over an expired claim at its
  revision), with the dedupe window as TTL;
- each liked item's **counter document**, compare-and-set at the revision
  the read model holds, with the count plus the group's likes of it;
- each like's **record** ``ns/{ns}/liked.{item}.{user}`` (item, user folded
  and as typed, time, the play it was given on, its ``event_id``): written
  whatever the key holds, since it is the user's *latest* like of the item,
  and no other group can write it meanwhile (it would write the item's
  counter document too, which waits while this group flies);
- each liker's **totals** (``likes_given``, the name as first seen) in each
  of their records of the group: the user's record of highest revision
  holds them, so they cost no write of their own (a third of a batch's
  messages once). Two groups with likes of one user never fly at once (the
  user's ``users/`` key stands for them in the group's ``values``), so the
  totals a record carries are never behind another record's;
- a **request key** per like sent with a ``correlation_id`` (a journalled
  one's too, for what is left of its window).

The marker read when the answer is lost is a key only this group writes:
the first claim, else the first record.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..clock import iso
from ..messages import LikeReserved
from ..store import documents as docs
from ..contract import fold_user
from ..store.keys import curator_key, dedupe_key, likes_key, record_key, user_key
from ..store.values import KvWrite
from .groups import LikeGroup, StagedLike
from .read_model import ReadModel
from .request_memory import RequestKey, request_key
from .window_counts import KEPT, hour_of, hours_field

Item = tuple[str, str]  # (namespace, video_id)


def request_key_of(like) -> RequestKey | None:
    cid = like.reply.correlation_id
    user = like.user or (like.claim.user if isinstance(like, LikeReserved) and like.claim else "")
    return (like.namespace, user, cid) if cid and user else None


def claim_key_of(like: LikeReserved) -> str:
    c = like.claim
    assert c is not None
    return dedupe_key(c.namespace, c.video_id, c.user)


def liker(like: LikeReserved) -> str:
    return like.user or (like.claim.user if like.claim is not None else "")


def draft_group(gid: str, likes: list[LikeReserved], per_item: dict[Item, int], read: ReadModel,
                revisions: dict[str, int], window: float, now: float,
                staged: Sequence[StagedLike] = (), mark: tuple[str, dict, int] | None = None) -> LikeGroup:
    """``revisions``: claim and request keys' revisions learnt from a conflict.
    ``staged``: journalled likes stored by this group too (counted in
    ``per_item``), with the counts and event ids they were answered with;
    ``mark``: the journal's mark that says so (key, value, its revision)."""
    writes = [_claim(like, gid, revisions) for like in likes if like.claim is not None]
    writes += [_staged_claim(s.like.claim, gid, revisions, now) for s in staged
               if s.like.claim is not None and s.like.claim.expires_at > now]
    values: dict[str, dict] = {}
    hours: dict[str, dict[int, int]] = {}
    # A journalled like counts in the hour it was answered, not the hour it is stored.
    ats: dict[tuple[str, str], list[float]] = {}
    for s in staged:
        ats.setdefault((s.like.namespace, s.like.media.video_id), []).append(s.at)
        c = curator_of(s.like)
        if c:
            ats.setdefault((s.like.namespace, "curator:" + c), []).append(s.at)
    before = _counts(per_item, likes + [s.like for s in staged], read, gid, now, values, hours, writes, ats)
    counts: list[int] = []
    seen: dict[Item, int] = {}
    for s in staged:  # they come first: the new likes' counts follow theirs
        item = (s.like.namespace, s.like.media.video_id)
        seen[item] = seen.get(item, 0) + 1
    given: dict[tuple[str, str], int] = {}  # each user's likes stored by this group (their records carry the sum)
    for like in [*likes, *(s.like for s in staged)]:
        user = liker(like)
        if user:
            given[(like.namespace, user)] = given.get((like.namespace, user), 0) + 1
    names = {(l.namespace, liker(l)): l.username for l in [*likes, *(s.like for s in staged)]}
    for (ns, user), n in given.items():
        records = read.book(ns).records
        values[user_key(ns, user)] = docs.user_value(user, records.name_of(user) or names[(ns, user)] or user,
                                                     records.totals(user)[0] + n, now, gid)
    for s in staged:  # its record (and request key), with what it was answered
        like, user = s.like, liker(s.like)
        totals = values[user_key(like.namespace, user)]
        value = docs.record_value(like.media.video_id, user, like.username or user, s.at, like.play_at,
                                  s.event_id, gid, like.curator, like.media.media_type, s.count,
                                  totals["likes_given"], totals["username"])
        writes.append(KvWrite(record_key(like.namespace, like.media.video_id, user), docs.dump(value), None))
        rk = request_key_of(like)
        if rk is not None and s.at + window > now:
            writes.append(_staged_request(rk, s, gid, window, now))
    for i, like in enumerate(likes):
        item = (like.namespace, like.media.video_id)
        seen[item] = seen.get(item, 0) + 1
        counts.append(before[item] + seen[item])
        user = liker(like)
        if user:
            totals = values[user_key(like.namespace, user)]
            value = docs.record_value(like.media.video_id, user, like.username or user, now, like.play_at,
                                      f"{gid}.{i}", gid, like.curator, like.media.media_type, counts[-1],
                                      totals["likes_given"], totals["username"])
            writes.append(KvWrite(record_key(like.namespace, like.media.video_id, user), docs.dump(value), None))
        rk = request_key_of(like)
        if rk is not None:
            writes.append(_request(rk, like, counts[-1], now, gid, window, revisions))
    _credit(likes + [s.like for s in staged], read, gid, now, values, hours, writes, ats)
    if mark is not None:
        key, value, rev = mark
        values[key] = {**value, "batch": gid}
        writes.append(KvWrite(key, docs.dump(values[key]), rev))
    return LikeGroup(gid, tuple(writes), likes, before, values, counts, now, hours, list(staged))


def take_totals_of_records(read: ReadModel, conflict) -> None:
    """A refused batch read its keys back: users' totals in the records there."""
    for key, entry in conflict.current.items():
        v = entry.value if entry is not None else None
        if v and "/liked." in key and isinstance(v.get("user"), str):
            totals = docs.record_totals(v, v["user"])
            if totals is not None:
                read.book(key.split("/")[1]).records.offer_totals(v["user"], *totals, entry.revision)


def curator_of(like: LikeReserved) -> str | None:
    """The folded name of who queued the play the like was given on."""
    return fold_user(like.curator) if like.curator else None


def _hours(windows, key: str, now: float, n: int, ats: list[float]) -> dict[int, int]:
    """The key's hours once ``n`` likes are added: those of ``ats`` in their
    own hours (journalled likes), the rest in ``now``'s."""
    hours = windows.after(key, now, n - len(ats))
    oldest = hour_of(now) - KEPT
    for at in ats:
        h = hour_of(at)
        if h > oldest:
            hours[h] = hours.get(h, 0) + 1
    return hours


def _credit(likes: list[LikeReserved], read: ReadModel, gid: str, now: float, values: dict[str, dict],
            hours: dict[str, dict[int, int]], writes: list[KvWrite], ats: dict) -> None:
    """Each curator's ``likes_received``, compare-and-set, with its hours."""
    credit: dict[tuple[str, str], int] = {}
    names: dict[tuple[str, str], str] = {}
    for like in likes:
        c = curator_of(like)
        if c:
            credit[(like.namespace, c)] = credit.get((like.namespace, c), 0) + 1
            names[(like.namespace, c)] = like.curator or c
    for (ns, c), n in credit.items():
        curators = read.book(ns).curators
        count, rev = curators.of("likes", c)
        key = curator_key(ns, c)
        hours[key] = _hours(curators.windows["likes"], c, now, n, ats.get((ns, "curator:" + c), []))
        values[key] = docs.curator_value(c, curators.name_of(c) or names[(ns, c)], "likes_received", count + n,
                                         now, hours_field(hours[key]), gid)
        writes.append(KvWrite(key, docs.dump(values[key]), rev))


def _counts(per_item: dict[Item, int], likes: list[LikeReserved], read: ReadModel, gid: str, now: float,
            values: dict[str, dict], hours: dict[str, dict[int, int]], writes: list[KvWrite],
            ats: dict) -> dict[Item, int]:
    """Each item's counter document, with the group's likes of it (in its
    count and its hour); the counts before."""
    before: dict[Item, int] = {}
    titles = {(l.namespace, l.media.video_id): l.media.title for l in likes}
    for (ns, vid), n in per_item.items():
        book = read.book(ns)
        book.advance(now)
        before[(ns, vid)] = count = book.stored_like_count(vid)
        key = likes_key(ns, vid)
        hours[key] = _hours(book.like_windows, vid, now, n, ats.get((ns, vid), []))
        values[key] = docs.likes_value(vid, count + n, now, titles[(ns, vid)] or book.title(vid), gid,
                                       hours_field(hours[key]))
        writes.append(KvWrite(key, docs.dump(values[key]), book.table.likes_revision(vid)))
    return before


def _claim(like: LikeReserved, gid: str, revisions: dict[str, int]) -> KvWrite:
    c = like.claim
    assert c is not None
    key = claim_key_of(like)
    return KvWrite(key, docs.claim_bytes(c, gid), revisions.get(key, c.expected_revision),
                   ttl_seconds=c.expires_at - c.liked_at)


def _staged_claim(c, gid: str, revisions: dict[str, int], now: float) -> KvWrite:
    """A journalled like's claim, for what is left of its window."""
    key = dedupe_key(c.namespace, c.video_id, c.user)
    return KvWrite(key, docs.claim_bytes(c, gid), revisions.get(key, c.expected_revision),
                   ttl_seconds=c.expires_at - now)


def _request_value(rk: RequestKey, video_id: str, count: int, at: float, gid: str, window: float) -> bytes:
    return docs.dump({"user": rk[1], "correlation_id": rk[2], "video_id": video_id,
                      "like_count": count, "status": "ok", "liked_at": iso(at),
                      "expires_at": iso(at + window), "schema_version": docs.SCHEMA, "batch": gid})


def _request(rk: RequestKey, like: LikeReserved, count: int, now: float, gid: str, window: float,
             revisions: dict[str, int]) -> KvWrite:
    """Create-if-absent: a retry a previous life stored must be found, not overwritten."""
    key = request_key(rk)
    return KvWrite(key, _request_value(rk, like.media.video_id, count, now, gid, window), revisions.get(key, 0),
                   ttl_seconds=window)


def _staged_request(rk: RequestKey, s: StagedLike, gid: str, window: float, now: float) -> KvWrite:
    """A journalled like's request key, for what is left of its window. Its
    entry was the word on its retries until now (like_journal.py), and only
    this group writes the key: written whatever it holds."""
    return KvWrite(request_key(rk), _request_value(rk, s.like.media.video_id, s.count, s.at, gid, window), None,
                   ttl_seconds=s.at + window - now)
