"""The like's path: one write to a journal, then a group stores it.

Theory of operation
-------------------
nats-server stages every atomic batch in a store made for it (on an R1 file
stream about 4 ms of server time, however small the batch), and while it
does, the stream's other writes wait. Group commit shares a batch among the
likes that wait, but a like that is alone (one viewer, a quiet channel, the
first likes of a burst) paid all of it, and the likes of a burst waited for
the batch before theirs. So the likes that may are counted by **one write**
to a bucket of the project's own, ``kryten_likes_journal``, whose writes no
batch holds up: the *entry* ``ns/{ns}/journal/{id}`` (``ns``: the daemon's
namespace) carries every like that waited when it was sent (at most
journal_committer's ``ENTRY_MAX``, each user once) and everything each
changes (its namespace, item, user, names, curator, count, ``event_id``,
claim, ``correlation_id``). It expects only the fence (that bucket has its own
``writer`` key, moved with the others: store/batch.py, ``_attempt_single``),
so a daemon that lost its lease stores nothing. Once it lands its likes are
answered ``ok`` and their events published; they are then **staged**:
counted in every answer (counter_book's ``staged_likes``), in the like index
and its user's totals, not yet in its item's document.

Staged likes are stored together (a batch costs the server as much for one
like as for thirty): at ``STAGED_BATCH``, at the next tick, or at once when
something waits for them. A likes group stores them (staged_storing's ``choose``,
staged likes first, in journal order, whole entries only): their items' documents, claims (for
what is left of the window), curators, records, request keys, and the **mark**
``ns/{ns}/journal_mark`` (``{"revision": N}``, compare-and-set), all in one
atomic batch of the likes bucket. The mark says: every entry of this
daemon's journal at a revision up to N is stored. So a group takes staged
likes as a prefix of the journal, and only below every journal write still
in flight (whose revision is not known yet: its *floor*, the highest journal
revision seen when it was sent, bounds it). Whatever instant a crash comes
at, an entry above the mark is a like counted nowhere else: a writer that
starts (or restarts) reads the journal, counts those entries in its answers,
index and totals, gives their claims to the ledger (``recover``) and stores
them first. Entries at or below the mark are removed (``PurgeJournal``).

When a like may go alone (``journalable``):

- it has a user, and if it has a ``correlation_id`` the writer's memory
  holds every live request key (``RequestMemory.whole``: none forgotten for
  room), so that memory, not a create-if-absent of the key, is the word on
  a retry. Its entry carries the ``correlation_id``: until a group stores
  its request key with it (for what is left of the window), a retry is
  answered from the staged likes (``staged_requests``), and a start reads
  the outcome back from the entry;
- no group in flight writes for its user (their totals must not cross);
- with dedupe on, its user has no like of the item younger than the window
  in the like index: the ledger's memory is then not the only word on a
  duplicate (a ledger restarted while a group flew may not know a claim),
  and such a like goes in a group, whose create-if-absent of the claim
  decides;
- fewer than ``journal_max`` journal writes fly (a like that may go waits
  for one to land rather than for a group), and no earlier like of its
  item waits for a group.

Likes that may not (no user, a like of the pair in the window, a
``correlation_id`` once memory forgot one) go in groups as before, after
their item's staged likes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..clock import iso, parse_iso
from ..domain import Claim, Media
from ..messages import LikeReserved, ReplyTo
from ..store import documents as docs
from ..store.keys import journal_key, user_key
from ..store.values import KvWrite, StoredEntry
from .event_bodies import event
from .groups import JournalGroup, StagedLike
from .like_writes import curator_of, liker
from .read_model import ReadModel

if TYPE_CHECKING:
    from .counter_book import CounterBook
    from .dedupe_ledger import LiveClaims

JOURNAL_MAX = 2  # journal writes in flight at once (each carries every like that waited for it)


def journalable(like: LikeReserved, busy: set[str], read: ReadModel, now: float, retries_known: bool) -> bool:
    """``retries_known``: every live request key is in the writer's memory
    (``RequestMemory.whole``)."""
    user = liker(like)
    if not user or (like.reply.correlation_id is not None and not retries_known):
        return False
    ns, vid = like.namespace, like.media.video_id
    if user_key(ns, user) in busy:
        return False
    c = like.claim
    if c is not None:
        liked_at = read.book(ns).records.liked_at(vid, user)
        if liked_at is not None and liked_at + (c.expires_at - c.liked_at) > now:
            return False
    return True


def draft_journal(gid: str, home: str, likes: list[LikeReserved], counts: list[int], floor: int,
                  now: float) -> JournalGroup:
    """``home``: the daemon's namespace (whose journal and fence these are).
    ``likes``: each user at most once (a group stores a record once)."""
    entries = []
    for i, (like, count) in enumerate(zip(likes, counts)):
        user, c = liker(like), like.claim
        entries.append({"namespace": like.namespace, "video_id": like.media.video_id, "user": user,
                        "username": like.username or user,
                        "play_started_at": iso(like.play_at) if like.play_at else None,
                        "curator": like.curator, "type": like.media.media_type or None,
                        "title": like.media.title or None, "like_count": count, "event_id": f"{gid}.{i}",
                        "claim_liked_at": iso(c.liked_at) if c is not None else None,
                        "claim_expires_at": iso(c.expires_at) if c is not None else None,
                        **({"correlation_id": like.reply.correlation_id} if like.reply.correlation_id else {})})
    value = {"liked_at": iso(now), "likes": entries, "schema_version": docs.SCHEMA, "batch": gid}
    return JournalGroup(gid, (KvWrite(journal_key(home, gid), docs.dump(value), None),), likes, counts,
                        {user_key(l.namespace, liker(l)): {} for l in likes}, now, floor)


def staged_from_entry(revision: int, v: dict) -> list[StagedLike] | None:
    """A journal entry, as the likes a group must store (None: not an entry;
    an entry of one like, as the first version wrote, is read too)."""
    try:
        at = parse_iso(v["liked_at"])
        return [_staged(revision, at, e) for e in (v["likes"] if "likes" in v else [v])]
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _staged(revision: int, at: float, v: dict) -> StagedLike:
    ns, vid, user = str(v["namespace"]), str(v["video_id"]), str(v["user"])
    ends = v.get("claim_expires_at")
    claim = Claim(ns, vid, user, parse_iso(v.get("claim_liked_at") or v.get("liked_at")), parse_iso(ends)) \
        if ends else None
    play = v.get("play_started_at")
    cid = v.get("correlation_id")
    media = Media(vid, str(v.get("type") or ""), str(v.get("title") or ""))
    like = LikeReserved(ReplyTo(None, str(cid) if cid else None), ns, media,
                        claim, user, str(v.get("username") or user), parse_iso(play) if play else 0.0,
                        v.get("curator") or None)
    return StagedLike(like, int(v["like_count"]), str(v["event_id"]), at, revision)


def journal_event(s: StagedLike, book: CounterBook) -> dict:
    like = s.like
    vid, user = like.media.video_id, liker(like)
    return event(s.event_id, "like", like.namespace, username=like.username or user, user=user, video_id=vid,
                 media_type=like.media.media_type, title=like.media.title or book.title(vid),
                 curator=like.curator, like_count=s.count, play_count=book.play_count(vid), at=iso(s.at))


def stage_rows(staged: Sequence[StagedLike]) -> list[tuple[str, str, str | None, float, str | None]]:
    """What ``CounterBook.stage`` moves for each: (video_id, user, curator, at, title)."""
    return [(s.like.media.video_id, liker(s.like), curator_of(s.like), s.at, s.like.media.title or None)
            for s in staged]


def staged_in_memory(book: CounterBook, staged: Sequence[StagedLike]) -> None:
    """Journalled likes of the book's namespace, counted by its answers,
    index and totals (their items' documents, curators and records hold
    them once a group stores them)."""
    book.stage(stage_rows(staged), 1)
    for s in staged:
        like = s.like
        if like.curator:
            book.curators.credited(like.media.video_id, liker(like), s.at, like.curator)
            book.curators.names.setdefault(curator_of(like), like.curator)  # as a stored total would say it


def mark_of_entry(entry: StoredEntry | None, identity: str | None) -> tuple[int, int]:
    """``(N, revision of the mark document)``: entries up to N are stored.
    A mark of another journal (the bucket was made again since: its
    revisions start again from 1) stores nothing of this one."""
    if entry is None or not entry.value:
        return 0, entry.revision if entry is not None else 0
    n = entry.value.get("revision")
    if type(n) is not int or entry.value.get("journal") != identity:
        return 0, entry.revision
    return n, entry.revision


def mark_of(book: CounterBook | None, identity: str | None) -> tuple[int, int]:
    return mark_of_entry(book.journal_mark if book is not None else None, identity)


def recover(books: dict[str, CounterBook], claims: LiveClaims, now: float, new_book, identity: str | None) -> None:
    """At a start, before the like index is frozen: each book's journal
    entries above its mark, counted (``staged_in_memory``), indexed, their
    claims given to the ledger; the book keeps them for its writer."""
    for book in list(books.values()):
        if not book.journal_entries:
            continue
        n, _ = mark_of(book, identity)
        found = [s for rev, v in sorted(book.journal_entries, key=lambda e: e[0]) if rev > n
                 for s in staged_from_entry(rev, v) or ()]
        book.journal_entries = []
        for s in found:
            like = s.like
            target = books.get(like.namespace) or new_book(like.namespace)
            target.records.load(like.media.video_id, like.user, like.username, s.at)
            staged_in_memory(target, [s])
            if like.claim is not None and like.claim.expires_at > now:
                claims.add((like.namespace, like.media.video_id, like.user), like.claim.expires_at)
        book.staged_records = [(s.revision, s) for s in found]
