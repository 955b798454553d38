"""The values of the store: what a batch writes and what comes back.

Pure data, apart from nats I/O (``batch``), so that the actors' cores can
use them without importing nats.
"""

from __future__ import annotations

import attrs

# nats-server stores at most this many messages in one atomic batch (ADR-50;
# a larger one is refused whole).
SERVER_BATCH_LIMIT = 1000
# The writes of one group: its batch adds the fence's check, so the largest
# batch is 991 messages. Larger groups cost the server less a like: each
# batch is staged in a store made for it (about 1 ms on an R1 stream,
# ``python -m bench.server_profile``).
MAX_GROUP_WRITES = 990


@attrs.frozen
class KvWrite:
    key: str
    value: bytes
    expected_revision: int | None  # 0: only if the key holds nothing; None: whatever it holds
    ttl_seconds: float | None = None


@attrs.frozen
class StoredEntry:
    """What a key holds now; ``value`` is None for a delete marker."""

    revision: int
    value: dict | None


@attrs.frozen
class Landed:
    group_id: str
    revisions: dict[str, int]


@attrs.frozen
class Conflict:
    group_id: str
    current: dict[str, StoredEntry | None]


@attrs.frozen
class Fenced:
    """Nothing was stored: the fence moved, so another daemon is the active
    one for this namespace (lease). Never retried."""

    group_id: str


@attrs.frozen
class Fence:
    """The fence as this daemon found it when it became active: ``key``'s
    revision. Each batch also writes ``check_key`` (who wrote last), with the
    expectation on ``key``."""

    key: str
    revision: int
    check_key: str
    check_value: bytes

    @property
    def revoked(self) -> bool:
        return self.revision < 0


# The fence of a daemon that stepped down: every commit is Fenced at once.
REVOKED = Fence("", -1, "", b"")
