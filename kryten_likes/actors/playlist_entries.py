"""Which playlist entry plays, and who queued it: the curator of a play.

CyTube names every entry of a channel's playlist by a ``uid``; the bridge's
queue events carry it with ``queueby`` (who queued it), ``setCurrent`` says
which uid plays, and at start the bridge's KV holds the playlist (``items``)
and what plays (``current.uid``). A play's curator is the ``queueby`` of the
entry playing (docs/contract-social-web.md, "Curators"):

1. the uid the change names (the bridge may send it with ``changeMedia``),
   else the last ``setCurrent``, when that entry holds the same media;
2. else the newest known entry of the same media (``setCurrent`` may come
   after ``changeMedia``);
3. else no one: a play whose curator is unknown credits no one.

Kept: the last ``MAX_ENTRIES`` entries seen (a playlist is far shorter).
"""

from __future__ import annotations

from ..domain import Media

MAX_ENTRIES = 10_000


def _key(media: Media) -> str:
    return f"{media.media_type}:{media.video_id}"


class PlaylistEntries:
    def __init__(self, entries: list[tuple[str, Media, str | None]] = (), current_uid: str | None = None) -> None:
        self.by_uid: dict[str, tuple[str, str | None]] = {}  # uid -> (media key, queued by), oldest first
        self.current_uid = current_uid
        for uid, media, by in entries:
            self.queued(uid, media, by)

    def queued(self, uid: str, media: Media, queued_by: str | None) -> None:
        self.by_uid.pop(uid, None)
        self.by_uid[uid] = (_key(media), queued_by)
        while len(self.by_uid) > MAX_ENTRIES:
            del self.by_uid[next(iter(self.by_uid))]

    def playing(self, uid: str) -> None:
        self.current_uid = uid

    def curator_of(self, media: Media, uid: str | None = None) -> str | None:
        k = _key(media)
        for u in (uid, self.current_uid):
            entry = self.by_uid.get(u) if u is not None else None
            if entry is not None and entry[0] == k:
                if uid is not None:
                    self.current_uid = uid
                return entry[1]
        for key, by in reversed(self.by_uid.values()):
            if key == k:
                return by
        return None
