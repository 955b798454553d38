"""The bus events' bodies (docs/contract-social-web.md, "Events for other
services"), built when a change lands, or again at start from what KV holds
(a like record, the global document's ``recent_plays``). The publisher adds
``channel``. Pure functions of their arguments."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..clock import iso
from ..domain import Media
from ..effects import PublishEvents
from ..store.keys import record_key
from .like_writes import liker
from .outbox import Outbox

if TYPE_CHECKING:
    from .counter_book import CounterBook
    from .groups import LikeGroup


def event(event_id: str, kind: str, namespace: str, *, username: str | None, user: str | None, video_id: str,
          media_type: str | None, title: str | None, curator: str | None, like_count: int, play_count: int,
          at: str) -> dict:
    return {"event_id": event_id, "kind": kind, "namespace": namespace, "username": username, "user": user,
            "video_id": video_id, "type": media_type or None, "title": title or None, "curator": curator,
            "like_count": like_count, "play_count": play_count, "at": at}


def play_event(event_id: str, namespace: str, media: Media, curator: str | None, like_count: int,
               play_count: int, at: float) -> dict:
    return event(event_id, "play", namespace, username=None, user=None, video_id=media.video_id,
                 media_type=media.media_type, title=media.title, curator=curator, like_count=like_count,
                 play_count=play_count, at=iso(at))


def like_events(g: LikeGroup, book: Callable[[str], CounterBook]) -> tuple[tuple[str, ...], tuple[dict, ...]]:
    """A landed likes group's events, and the record keys that wait for them."""
    events, keys = [], []
    for i, (like, count) in enumerate(zip(g.likes, g.counts)):
        user = liker(like)
        if not user:
            continue
        b, vid = book(like.namespace), like.media.video_id
        keys.append(record_key(like.namespace, vid, user))
        events.append(event(f"{g.group_id}.{i}", "like", like.namespace, username=like.username or user, user=user,
                            video_id=vid, media_type=like.media.media_type, title=like.media.title or b.title(vid),
                            curator=like.curator, like_count=count, play_count=b.play_count(vid), at=iso(g.now)))
    return tuple(keys), tuple(events)


def record_event(namespace: str, record: dict, title: str | None, play_count: int) -> dict | None:
    """The event of a stored like record: its like, or its unlike once unliked
    (a record is written again only once its last event was published, so an
    unliked record's like event left before). None: not one we wrote."""
    try:
        unliked = record.get("unliked_at")
        return event(str(record["event_id"]), "unlike" if unliked else "like", namespace,
                     username=record.get("username"), user=record["user"], video_id=record["video_id"],
                     media_type=record.get("type"), title=title, curator=record.get("curator"),
                     like_count=int(record.get("like_count", 0)), play_count=play_count,
                     at=str(unliked or record["liked_at"]))
    except (KeyError, TypeError, ValueError):
        return None


def republish(books: dict[str, CounterBook], namespace: str, outbox: Outbox, prefix: str) -> list[PublishEvents]:
    """At a writer's start: the events of what is stored above the marks (a
    crash may have left them unpublished), as two groups of the outbox, so
    the mark stays below them until they are out. Some were published
    before: same ``event_id``, dropped by the stream or the consumer.

    Only the configured namespace's: the buckets hold other namespaces'
    records too, written by other daemons (other channels) whose events are
    theirs to publish; a crash may leave the events of a like sent here for
    another namespace unpublished (docs/kv-schema.md)."""
    out: list[PublishEvents] = []
    marks = {b: outbox.last_landed[b] for b in ("likes", "analytics")}
    records: list[tuple[str, ...]] = []
    events: list[dict] = []
    plays: list[dict] = []
    covers = dict(marks)
    for ns, book in books.items():
        if ns != namespace:
            book.recent_records = []
            continue
        for revision, _, value in sorted(book.recent_records):
            covers["likes"] = max(covers["likes"], revision)
            vid = value.get("video_id")
            ev = record_event(ns, value, book.title(vid), book.play_count(vid)) if isinstance(vid, str) else None
            if revision > marks["likes"] and ev is not None:
                records.append(record_key(ns, vid, ev["user"]))
                events.append(ev)
        book.recent_records = []
        np = book.now_playing
        if np is not None and np.value and np.revision > marks["analytics"]:
            covers["analytics"] = max(covers["analytics"], np.revision)
            plays += [p for p in np.value.get("recent_plays") or () if isinstance(p, dict) and p.get("event_id")]
    out += outbox.stored(f"{prefix}republish-likes", "likes", marks["likes"] + 1, tuple(records), tuple(events),
                         covers["likes"])
    out += outbox.stored(f"{prefix}republish-plays", "analytics", marks["analytics"] + 1, (), tuple(plays),
                         covers["analytics"])
    return out
