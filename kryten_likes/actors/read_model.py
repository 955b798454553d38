"""The counter writer's read model: what is stored, as queries see it.

Every namespace's ``CounterBook`` (counts, rankings, the global and
now-playing documents, playlists) as last stored, and the ranking snapshots
written back to KV (``ns/{ns}/rankings/...``) every ``materialise_every``
seconds. The committers move it only after their batch has landed, so a
query never shows a count that a crash could take back; they read from it
the revisions their next batches expect.
"""

from __future__ import annotations

import math
from itertools import chain, islice

from .. import wire
from ..clock import iso
from ..messages import ActivityAsked, LikersOfItem, StatsAsked, TopAsked, UserLikesAsked
from ..effects import PutDocument, Reply
from ..store import documents as docs
from ..store.keys import ranking_key
from .counter_book import RANKED, CounterBook
from .like_index import BadCursor

MATERIALISE_PER_TICK = 32


class ReadModel:
    def __init__(self, books: dict[str, CounterBook], namespace: str, materialise_every: float = 10.0) -> None:
        self.books = books
        self.namespace = namespace  # the daemon's own: plays are counted here
        self.materialise_every = materialise_every
        # (namespace, ranking) whose snapshot is stale, oldest first; the daemon's
        # own namespace apart, so its snapshots go first without a scan.
        self.dirty: dict[tuple[str, str], None] = {}
        self.dirty_home: dict[tuple[str, str], None] = {}
        self._last_materialised = -math.inf

    def peek(self, ns: str) -> CounterBook:
        """A namespace's book for reading; an unknown one is not kept (a read
        of a new namespace must not cost memory for good)."""
        return self.books.get(ns) or CounterBook(ns)

    def book(self, ns: str) -> CounterBook:
        b = self.books.get(ns)
        if b is None:
            b = self.books[ns] = CounterBook(ns)
        return b

    def last_seq(self, kind: str) -> int:
        """The highest bridge event of a kind ("play" or "queue") stored."""
        g = self.book(self.namespace).global_doc
        field = "last_event_seq" if kind == "play" else "last_queue_seq"
        return int(g.value.get(field, 0)) if g is not None and g.value else 0

    def ranking_moved(self, ns: str, ranking: str) -> None:
        (self.dirty_home if ns == self.namespace else self.dirty)[(ns, ranking)] = None

    # --- queries ----------------------------------------------------------------

    def top(self, msg: TopAsked, now: float) -> list:
        book = self.peek(msg.namespace)
        if msg.ranking == "curators":
            items = book.top_curators(msg.window, msg.limit, now)
        else:
            items = book.top_in(msg.ranking, msg.window, msg.limit, now)
        return [wire.ok(msg.reply, window=msg.window, items=items)]

    def stats(self, msg: StatsAsked, now: float) -> list[Reply]:
        book = self.peek(msg.namespace)
        fields: dict = {"global": book.global_value()}
        if msg.video_id is not None:
            fields["item"] = book.item_stats(msg.video_id)
        if msg.playlist_id is not None:
            e = book.playlists.get(msg.playlist_id)
            fields["playlist"] = dict(e.value) if e is not None and e.value else None
        return [wire.ok(msg.reply, **fields)]

    def activity(self, msg: ActivityAsked, now: float) -> list[Reply]:
        return [wire.ok(msg.reply, hours=self.peek(msg.namespace).activity(msg.hours, now))]

    def likers(self, msg: LikersOfItem, now: float) -> list[Reply]:
        book = self.peek(msg.namespace)
        try:
            users, cursor = book.records.likers(msg.video_id, msg.limit, msg.cursor)
        except BadCursor as exc:
            return [wire.error(msg.reply, "invalid_request", f"cursor: {exc}")]
        return [wire.ok(msg.reply, video_id=msg.video_id, like_count=book.like_count(msg.video_id), users=users,
                        cursor=cursor)]

    def user_likes(self, msg: UserLikesAsked, now: float) -> list[Reply]:
        book = self.peek(msg.namespace)
        try:
            liked, cursor = book.records.user_likes(msg.user, msg.limit, msg.cursor)
        except BadCursor as exc:
            return [wire.error(msg.reply, "invalid_request", f"cursor: {exc}")]
        items = [{"video_id": vid, "title": book.title(vid), "liked_at": at} for vid, at in liked]
        name = book.records.name_of(msg.user) or book.curators.name_of(msg.user) or msg.username
        return [wire.ok(msg.reply, username=name, likes_given=book.likes_given(msg.user),
                        likes_received=book.likes_received(msg.user),
                        plays=book.curators.of("analytics", msg.user)[0], items=items, cursor=cursor)]

    # --- ranking snapshots ---------------------------------------------------------

    def materialise(self, now: float) -> list[PutDocument]:
        if not (self.dirty or self.dirty_home) or now - self._last_materialised < self.materialise_every:
            return []
        self._last_materialised = now
        # A bounded number per tick: after likes in thousands of namespaces,
        # thousands of writes at once would stall the daemon. The own
        # namespace's first, then the others' in the order they went stale
        # (a sort of every stale one stalled the writer 125 ms each time
        # once likes had touched 100 000 namespaces; this takes 0.4 ms).
        batch = list(islice(chain(self.dirty_home, self.dirty), MATERIALISE_PER_TICK))
        for d in batch:
            del (self.dirty_home if d[0] == self.namespace else self.dirty)[d]
        out = []
        for ns, ranking in batch:
            items = self.book(ns).top(ranking, RANKED)
            out.append(PutDocument("analytics", ranking_key(ns, ranking),
                                   {"items": items, "updated_at": iso(now), "schema_version": docs.SCHEMA}))
        return out
