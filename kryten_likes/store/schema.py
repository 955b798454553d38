"""Which stored documents this kryten-likes can read: ``schema_version`` 1.

Other services read the layout, and a later kryten-likes may change a
document's shape only with a ``schema_version`` bump (docs/kv-schema.md). A
daemon that met such a document and read it as version 1 would misread it
and then overwrite it in the old shape, so the start-up scan stops at the
first one, naming the key. A document without ``schema_version`` is read
as 1 (older writers, hand-made keys): lenient for missing, strict for any
other value.
"""

from __future__ import annotations

from collections.abc import Callable

from .batch import StoredEntry
from .buckets import StoreError
from .documents import SCHEMA
from .keys import split_key


class UnknownSchema(StoreError):
    """A stored document has a ``schema_version`` this kryten-likes does not know."""


def schema_problem(key: str, value: dict) -> str | None:
    """Why ``value`` (stored at ``key``) must not be read, or None."""
    if "schema_version" not in value:
        return None
    v = value["schema_version"]
    if type(v) is int and v == SCHEMA:
        return None
    if type(v) is int and v > SCHEMA:
        return f"{key} has schema_version {v}; this kryten-likes understands {SCHEMA}: upgrade kryten-likes"
    return (f"{key} has schema_version {v!r}; this kryten-likes understands {SCHEMA}: "
            "the document was not written by kryten-likes; repair or delete it")


class SchemaCheck:
    """Wraps the start-up scan's ``take``: keys of the layout (``ns/...``) with a
    version it does not know are kept from the books and remembered; after the
    scan ``raise_if_unknown`` stops the start. (Raising inside ``take`` would
    not stop the scan: it runs in a subscription callback.)"""

    def __init__(self) -> None:
        self.first: str | None = None
        self.count = 0

    def wrap(self, take: Callable[[str, StoredEntry | None], None]) -> Callable[[str, StoredEntry | None], None]:
        def checked(key: str, entry: StoredEntry | None) -> None:
            if entry is not None and entry.value is not None and split_key(key) is not None:
                problem = schema_problem(key, entry.value)
                if problem is not None:
                    self.count += 1
                    self.first = self.first or problem
                    return
            take(key, entry)

        return checked

    def raise_if_unknown(self) -> None:
        if self.first is not None:
            more = f" (and {self.count - 1} more such documents)" if self.count > 1 else ""
            raise UnknownSchema(self.first + more)
