"""The titles of the item table, packed as UTF-8 in one shared buffer.

A string object costs CPython 49 bytes before its first character; a
title here costs its UTF-8 bytes and one 64-bit handle in one of the
table's ``array`` columns. Titles no row names any more are dropped by
``repack``, which the table calls once they are over 1 MiB and half the
buffer.
"""

from __future__ import annotations

from array import array

NO_TITLE = 0  # the handle of None


class TitleBuffer:
    """Strings packed as UTF-8 in one buffer, each named by one 64-bit handle:
    ``offset << 24 | (length + 1)``; 0 is None."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._handles: dict[str, int] = {}  # the last few stored: a title comes twice (item, likes)

    def put(self, text: str | None) -> int:
        if text is None:
            return NO_TITLE
        h = self._handles.get(text)
        if h is None:
            data = text.encode("utf-8", "surrogatepass")
            if len(data) >= 2**24 - 1:
                raise ValueError("title too long")
            h = len(self._buf) << 24 | (len(data) + 1)
            self._buf += data
            if len(self._handles) >= 64:
                self._handles.clear()
            self._handles[text] = h
        return h

    def get(self, h: int) -> str | None:
        if h == NO_TITLE:
            return None
        start, n = h >> 24, (h & 0xFFFFFF) - 1
        return self._buf[start:start + n].decode("utf-8", "surrogatepass")

    def __len__(self) -> int:
        return len(self._buf)

    def repack(self, columns: list[array]) -> None:
        """Drop the bytes of titles no column names any more."""
        old, self._buf, self._handles = self._buf, bytearray(), {}
        moved: dict[int, int] = {NO_TITLE: NO_TITLE}
        for col in columns:
            for i, h in enumerate(col):
                if h not in moved:
                    start, n = h >> 24, (h & 0xFFFFFF) - 1
                    moved[h] = len(self._buf) << 24 | (n + 1)
                    self._buf += old[start:start + n]
                col[i] = moved[h]
