"""A CounterWriter against a fake KV, and builders of what it is sent.

``FakeKV`` is a dict ``key → (revision, value)`` with one global sequence per
bucket. It applies a ``Commit`` the way the server applies an atomic batch:
every write's ``expected_revision`` must equal the key's current revision
(0 = absent), else nothing is stored and the answer is a ``Conflict`` with the
current entry of every key; otherwise the writes get consecutive revisions
and the answer is ``Landed``. It stands in for nothing at the network level
(the real server is tested elsewhere): it checks the core's group-commit
logic.
"""

from __future__ import annotations

import json

from kryten_likes.actors.counter_writer import CounterWriter
from kryten_likes.clock import iso
from kryten_likes.messages import Claim, ClaimsSettled, CommitFinished, LikeReserved, Media, ReplyTo
from kryten_likes.effects import Commit, Reply
from kryten_likes.store import Conflict, Landed, StoredEntry, encode_token, likes_key
from support.effect_router import to_mailbox


T0 = 1_767_225_600.0
NS = "ns1"
WINDOW = 86400.0


class FakeKV:
    """One bucket: ``key → StoredEntry``, revisions from one sequence."""

    def __init__(self) -> None:
        self.entries: dict[str, StoredEntry] = {}
        self.seq = 0
        self.commits: list[Commit] = []

    def revision(self, key: str) -> int:
        e = self.entries.get(key)
        return e.revision if e is not None else 0

    def value(self, key: str) -> dict | None:
        e = self.entries.get(key)
        return e.value if e is not None else None

    def likes_given(self, ns: str, user: str) -> int:
        """The user's totals as stored: in their like record of highest
        revision (docs/kv-schema.md, "Like records and user totals")."""
        tail = f".{encode_token(user)}"
        mine = [e for k, e in self.entries.items()
                if k.startswith(f"ns/{ns}/liked.") and k.endswith(tail) and e.value is not None]
        return max(mine, key=lambda e: e.revision).value.get("likes_given", 0) if mine else 0

    def put(self, key: str, value: dict) -> int:
        self.seq += 1
        self.entries[key] = StoredEntry(self.seq, value)
        return self.seq

    def apply(self, commit: Commit) -> Landed | Conflict:
        self.commits.append(commit)
        keys = [w.key for w in commit.writes]
        assert keys, "an empty batch"
        assert len(set(keys)) == len(keys), f"a key written twice in one batch: {keys}"
        if any(w.expected_revision not in (None, self.revision(w.key)) for w in commit.writes):
            return Conflict(commit.group_id, {k: self.entries.get(k) for k in keys})
        return Landed(commit.group_id, {w.key: self.put(w.key, json.loads(w.value)) for w in commit.writes})


def to(n: int | str) -> ReplyTo:
    return ReplyTo(f"inbox.{n}", None)


def claim(video_id: str, user: str, at: float = T0, window: float = WINDOW) -> Claim:
    return Claim(NS, video_id, user, at, at + window)


def reserved(n: int, media: Media, user: str | None, at: float = T0) -> LikeReserved:
    return LikeReserved(to(n), NS, media, claim(media.video_id, user, at) if user is not None else None)


def claim_doc(video_id: str, user: str, liked_at: float, expires_at: float) -> dict:
    return {"liked_at": iso(liked_at), "expires_at": iso(expires_at), "schema_version": 1,
            "video_id": video_id, "user": user, "batch": "someone-else"}


V1 = Media("v1", "yt", "One", 100)
V2 = Media("v2", "yt", "Two", 200)
V3 = Media("v3", "yt", "Three", None)


class Rig:
    """A writer, a fake KV per bucket, and what the writer said."""

    def __init__(self, books: dict | None = None, **kw) -> None:
        self.w = CounterWriter(books if books is not None else {}, NS, group_prefix="g-", **kw)
        self.kv = {"likes": FakeKV(), "analytics": FakeKV()}
        self.now = T0
        self.sent: list[Commit] = []

    def step(self, msg) -> list:
        return self.w.step(msg, self.now)

    def flush(self) -> list[Commit]:
        out, self.sent = self.sent + self.w.flush(self.now), []
        assert all(isinstance(c, (Commit, Reply)) for c in out), out  # replies: unlikes decided at once
        return out

    def finish(self, commit: Commit) -> list:
        """The outcome's effects; a next group sent with them (the writer sends it
        before its replies) comes out of the next ``flush``."""
        effects = self.step(CommitFinished(commit.group_id, self.kv[commit.bucket].apply(commit)))
        self.sent += [e for e in effects if isinstance(e, Commit)]
        return [e for e in effects if not isinstance(e, Commit)]

    def like_doc(self, vid: str) -> dict | None:
        return self.kv["likes"].value(likes_key(NS, vid))

    def seed_likes(self, media: Media, count: int) -> None:
        """KV and the writer's book both hold ``count`` likes (as after a start-up scan)."""
        key = likes_key(NS, media.video_id)
        rev = self.kv["likes"].put(key, {"video_id": media.video_id, "like_count": count, "title": media.title})
        self.w.book(NS).load(("items", media.video_id, "likes"), StoredEntry(rev, self.kv["likes"].value(key)))


def replies(effects: list) -> dict[str, dict]:
    out = {}
    for e in effects:
        if isinstance(e, Reply):
            assert e.to.subject not in out
            out[e.to.subject] = e.body
    return out


def settled(effects: list) -> list[ClaimsSettled]:
    return to_mailbox(effects, "dedupe_ledger")
