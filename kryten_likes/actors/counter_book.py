"""What the counter writer knows of one namespace: every counter document as
last stored (value and revision) and the rankings kept beside them.

Only durable facts enter a book: the writer applies a change after its batch
has landed, so queries answered from here never show a count that a crash
could take back.
"""

from __future__ import annotations

from sortedcontainers import SortedList

from ..store import StoredEntry, decode_token
from ..store.documents import zero_global

class CounterBook:
    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.likes: dict[str, StoredEntry] = {}
        self.items: dict[str, StoredEntry] = {}
        self.playlists: dict[str, StoredEntry] = {}
        self.global_doc: StoredEntry | None = None
        self.now_playing: StoredEntry | None = None
        self.expectations: StoredEntry | None = None  # queue events we expect (analytics_changes)
        self.requests: list[StoredEntry] = []  # request keys, handed to the writer's RequestMemory
        # (-count, video_id): highest first, ties by video_id, as the contract says.
        self.top_liked: SortedList = SortedList()
        self.top_played: SortedList = SortedList()

    # --- loading -------------------------------------------------------------

    def load(self, parts: tuple[str, ...], entry: StoredEntry) -> None:
        """Take one scanned key (split by ``store.split_key``) of this namespace."""
        v = entry.value or {}
        match parts:
            case ("counters", "global"):
                self.global_doc = entry
            case ("now_playing",):
                self.now_playing = entry
            case ("queue", "expected"):
                self.expectations = entry
            case ("requests", _, _):
                self.requests.append(entry)
            case ("items", tok):
                self.set_item(v.get("video_id") or decode_token(tok), entry)
            case ("items", tok, "likes"):
                self.set_likes(v.get("video_id") or decode_token(tok), entry)
            case ("playlists", tok):
                self.playlists[v.get("playlist_id") or decode_token(tok)] = entry

    # --- reading ---------------------------------------------------------------

    @staticmethod
    def _count(entry: StoredEntry | None, field: str) -> int:
        if entry is None or entry.value is None:
            return 0
        return int(entry.value.get(field, 0))

    def like_count(self, video_id: str) -> int:
        return self._count(self.likes.get(video_id), "like_count")

    def play_count(self, video_id: str) -> int:
        return self._count(self.items.get(video_id), "play_count")

    def revision(self, table: dict[str, StoredEntry], key: str) -> int:
        e = table.get(key)
        return e.revision if e is not None else 0

    def title(self, video_id: str) -> str | None:
        for table in (self.items, self.likes):
            e = table.get(video_id)
            if e is not None and e.value and e.value.get("title"):
                return e.value["title"]
        return None

    def global_value(self) -> dict:
        g = self.global_doc
        return dict(g.value) if g is not None and g.value else zero_global()

    def top(self, ranking: str, limit: int) -> list[dict]:
        ranked = self.top_liked if ranking == "liked" else self.top_played
        return [{"video_id": vid, "title": self.title(vid), "count": -neg}
                for neg, vid in ranked.islice(0, limit)]

    def item_stats(self, video_id: str) -> dict:
        item = self.items.get(video_id)
        v = item.value if item is not None and item.value else {}
        return {
            "video_id": video_id,
            "title": self.title(video_id),
            "play_count": int(v.get("play_count", 0)),
            "queue_count": int(v.get("queue_count", 0)),
            "like_count": self.like_count(video_id),
            "last_played_at": v.get("last_played_at"),
            "last_queued_at": v.get("last_queued_at"),
            "duration_seconds": v.get("duration_seconds"),
        }

    # --- applying durable changes ------------------------------------------------

    def set_likes(self, video_id: str, entry: StoredEntry) -> None:
        old = self.like_count(video_id)
        self.likes[video_id] = entry
        self._rerank(self.top_liked, video_id, old, self.like_count(video_id))

    def set_item(self, video_id: str, entry: StoredEntry) -> None:
        old = self.play_count(video_id)
        self.items[video_id] = entry
        self._rerank(self.top_played, video_id, old, self.play_count(video_id))

    @staticmethod
    def _rerank(ranked: SortedList, video_id: str, old: int, new: int) -> None:
        if old == new:
            return
        if old > 0:
            ranked.discard((-old, video_id))
        if new > 0:
            ranked.add((-new, video_id))
