"""Groups: what the counter writer's committers store as one atomic batch.

One class per kind, each with only the fields its kind has, and the
``GroupsInFlight`` they all register with. The register is what keeps the
committers from racing each other inside the daemon: a group may only expect
a document's revision when no group in flight writes that document, and each
bucket's committers take turns through it (see counter_writer's docstring).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Union

import attrs

from ..domain import Claim
from ..messages import LikeReserved, UnlikeForItem
from ..store.values import KvWrite
from .outbox import Outbox

if TYPE_CHECKING:
    from .adjustments import Adjustment
    from .analytics_changes import Draft

MAX_CONFLICTS = 5  # batches of one group refused in a row before it is given up
# What a request in a fenced group hears: nothing of it was stored, and another daemon is active.
FENCED = "this daemon is no longer the active one for the namespace; retry"


@attrs.define
class LikeGroup:
    """Likes of one or more items: their claims, their counter documents and
    their request keys."""

    group_id: str
    writes: tuple[KvWrite, ...]
    likes: list[LikeReserved]
    before: dict[tuple[str, str], int]  # (namespace, video_id) -> count before this group
    values: dict[str, dict]  # counter document key -> the document written
    counts: list[int]  # the count each like gets, in order
    now: float
    hours: dict[str, dict[int, int]] = attrs.field(factory=dict)  # counter document key -> its likes by hour
    staged: list[StagedLike] = attrs.field(factory=list)  # journalled likes it stores (answered already)
    bucket: Literal["likes"] = "likes"


@attrs.frozen
class StagedLike:
    """A like whose journal entry landed (it was answered), waiting for a
    likes group to store what it counts (actors/like_journal.py). ``like``'s
    reply is spent; one found at start has none."""

    like: LikeReserved
    count: int  # the count it was answered with (its event's and record's)
    event_id: str
    at: float  # when it was counted (its record's ``liked_at``)
    revision: int  # its entry's revision in the journal bucket


@attrs.define
class JournalGroup:
    """Likes counted by one plain write: their journal entry (actors/like_journal.py)."""

    group_id: str
    writes: tuple[KvWrite, ...]
    likes: list[LikeReserved]
    counts: list[int]  # the count each like is answered with, in order
    values: dict[str, dict]  # its users' keys: groups with likes of its users wait meanwhile
    now: float
    floor: int  # the journal's highest revision seen when it was sent: it lands above
    bucket: Literal["likes"] = "likes"  # (its write goes to the journal bucket; it holds likes' keys)


@attrs.define
class AnalyticsGroup:
    """Plays, queue events and applies: the documents a ``Draft`` touched."""

    group_id: str
    writes: tuple[KvWrite, ...]
    changes: list  # (change, enqueues in flight when it arrived)
    draft: Draft
    conflicts: int  # batches of these changes refused in a row before this one
    bucket: Literal["analytics"] = "analytics"

    @property
    def values(self) -> dict[str, dict]:
        return self.draft.values


@attrs.define
class CorrectionGroup:
    """One operator's correction of one count, and its audit record."""

    group_id: str
    writes: tuple[KvWrite, ...]
    correction: Adjustment
    values: dict[str, dict]
    old: int
    bucket: Literal["likes", "analytics"]


@attrs.define
class UnlikeGroup:
    """One unlike: the item's counter document and the user's totals one less,
    the record marked unliked, the claim stored as expired."""

    group_id: str
    writes: tuple[KvWrite, ...]
    unlike: UnlikeForItem
    values: dict[str, dict]
    claim: Claim  # for the ledger, once landed
    conflicts: int
    now: float
    hours: dict[str, dict[int, int]] = attrs.field(factory=dict)  # document key -> its hours, as written
    bucket: Literal["likes"] = "likes"


Group = Union[LikeGroup, JournalGroup, AnalyticsGroup, CorrectionGroup, UnlikeGroup]


class GroupsInFlight:
    """Every group sent and not yet finished, oldest first."""

    def __init__(self, outbox: Outbox | None = None) -> None:
        self._groups: dict[str, Group] = {}
        # The events of landed groups not yet published: their like records
        # are busy like the documents of a group in flight (actors/outbox.py).
        self.outbox = outbox if outbox is not None else Outbox()

    def add(self, group: Group) -> None:
        self._groups[group.group_id] = group

    def get(self, group_id: str) -> Group | None:
        return self._groups.get(group_id)

    def remove(self, group_id: str) -> None:
        del self._groups[group_id]

    def in_bucket(self, bucket: str) -> list[Group]:
        return [g for g in self._groups.values() if g.bucket == bucket]

    def of_kind(self, kind: type) -> list:
        return [g for g in self._groups.values() if type(g) is kind]

    def writing(self, key: str) -> bool:
        """Does a group in flight write this key (its next revision is unknown)?"""
        return any(key in g.values for g in self._groups.values())

    def keys_written(self, bucket: str) -> set[str]:
        return {k for g in self._groups.values() if g.bucket == bucket for k in g.values}

    def __bool__(self) -> bool:
        return bool(self._groups)

    def __len__(self) -> int:
        return len(self._groups)

    def __iter__(self):
        return iter(list(self._groups.values()))
