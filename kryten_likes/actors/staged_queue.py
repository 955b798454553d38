"""The journalled likes answered and not yet stored, in journal order.

A queue the likes committer owns (like_journal.py tells why likes wait
here). Besides the order it keeps what the committer asks of it on every
flush: which items and which (item, user) pairs have likes here. Counted as
likes come and go, so asking costs the same with ten thousand likes
waiting as with one (a scan per flush was a fifth of the daemon's time with
likes spread over ten thousand namespaces).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

from .groups import StagedLike
from .like_writes import liker

Item = tuple[str, str]  # (namespace, video_id)


class StagedQueue:
    def __init__(self) -> None:
        self._likes: deque[StagedLike] = deque()
        self.items: dict[Item, int] = {}
        self.pairs: dict[tuple[str, str, str], int] = {}  # (namespace, video_id, user)

    def __len__(self) -> int:
        return len(self._likes)

    def __bool__(self) -> bool:
        return bool(self._likes)

    def __iter__(self) -> Iterator[StagedLike]:
        return iter(self._likes)

    def __contains__(self, s: object) -> bool:
        return s in self._likes

    def add(self, likes: Iterable[StagedLike]) -> None:
        """Landed journal entries' likes; answers come in order but for a
        lost one, which lands below the newest."""
        likes = list(likes)
        self._count(likes, 1)
        if self._likes and likes and self._likes[-1].revision > likes[0].revision:
            self._likes = deque(sorted([*self._likes, *likes], key=lambda s: s.revision))  # (stable: entries keep theirs)
        else:
            self._likes.extend(likes)

    def first_revision(self) -> int:
        return self._likes[0].revision

    def last_revision(self) -> int:
        return self._likes[-1].revision

    def entry_at(self, i: int) -> list[StagedLike]:
        """The likes of the entry starting at ``i`` (an entry is stored whole)."""
        rev = self._likes[i].revision
        j = i
        while j < len(self._likes) and self._likes[j].revision == rev:
            j += 1
        return [self._likes[k] for k in range(i, j)]

    def take_front(self, n: int) -> None:
        """The first ``n`` are in a group now."""
        pop = self._likes.popleft
        self._count([pop() for _ in range(n)], -1)

    def put_back(self, likes: list[StagedLike]) -> None:
        """A group's refused: its likes go first again."""
        self._likes.extendleft(reversed(likes))
        self._count(likes, 1)

    def _count(self, likes: list[StagedLike], n: int) -> None:
        # (plain dicts: a Counter's own item methods cost twice as much, and
        # every staged like passes here twice)
        items, pairs = self.items, self.pairs
        get = dict.get
        for s in likes:
            like = s.like
            item = (like.namespace, like.media.video_id)
            pair = (*item, liker(like))
            k = get(items, item, 0) + n
            if k:
                items[item] = k
            else:
                del items[item]
            k = get(pairs, pair, 0) + n
            if k:
                pairs[pair] = k
            else:
                del pairs[pair]
