"""The outbox's mark (actors/outbox.py) against a plain model of the server:
groups are stored in the order they are sent (their revisions grow), their
answers and the publishers' acks come back in any order. The mark must never
reach a revision whose events are not published yet, and once everything is
answered and published it reaches the last revision; a record waits while
its event is out."""

from __future__ import annotations

from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from kryten_likes.actors.outbox import MAX_UNPUBLISHED_PLAYS, Outbox
from kryten_likes.effects import PublishEvents


class OutboxMachine(RuleBasedStateMachine):
    @initialize(start=st.integers(0, 50))
    def setup(self, start):
        self.outbox = Outbox(enabled=True, marks={"likes": start})
        self.seq = start  # the server's last revision in the likes bucket
        self.sent: dict[str, list[int]] = {}  # group -> its revisions, stored but not answered
        self.answered: dict[str, list[int]] = {}  # group -> revisions, answered, events out
        self.n = 0

    @rule(size=st.integers(1, 3), lands=st.booleans())
    def send(self, size, lands):
        """The writer sends a group; the server stores it at once (or refuses it)."""
        self.n += 1
        gid = f"g{self.n}"
        self.outbox.sent(gid, "likes")
        if lands:
            self.sent[gid] = [self.seq + i + 1 for i in range(size)]
            self.seq += size
        else:
            self.sent[gid] = []

    @rule(other=st.integers(1, 3))
    def someone_else_writes(self, other):
        self.seq += other  # revisions of other keys (ranking snapshots, the lease)

    @precondition(lambda self: self.sent)
    @rule(data=st.data())
    def answer(self, data):
        gid = data.draw(st.sampled_from(sorted(self.sent)))
        revisions = self.sent.pop(gid)
        if not revisions:
            self.outbox.finished(gid, None)
            return
        keys = (f"rec-{gid}",)
        effects = self.outbox.stored(gid, "likes", min(revisions), keys, ({"event_id": gid},))
        assert effects == [PublishEvents(gid, ({"event_id": gid},))]
        assert self.outbox.is_busy(keys[0])
        self.outbox.finished(gid, {f"k{r}": r for r in revisions})
        self.answered[gid] = revisions

    @precondition(lambda self: self.answered)
    @rule(data=st.data())
    def published(self, data):
        gid = data.draw(st.sampled_from(sorted(self.answered)))
        del self.answered[gid]
        self.outbox.published(gid)
        assert not self.outbox.is_busy(f"rec-{gid}")

    @invariant()
    def the_mark_never_passes_an_unpublished_event(self):
        if not hasattr(self, "outbox"):
            return
        mark = self.outbox.mark("likes")
        out = [r for rs in [*self.sent.values(), *self.answered.values()] for r in rs]
        if out:
            assert mark < min(out), (mark, out)
        assert mark <= self.seq

    def teardown(self):
        if not hasattr(self, "outbox"):
            return
        for gid in sorted(self.sent):
            revisions = self.sent.pop(gid)
            self.outbox.stored(gid, "likes", min(revisions or [0]), (), ({"event_id": gid},) if revisions else ())
            self.outbox.finished(gid, {f"k{r}": r for r in revisions} or None)
            self.outbox.published(gid)
        for gid in list(self.answered):
            self.outbox.published(gid)
        landed = [g for g in range(1, self.n + 1)]
        assert not self.outbox.busy and not self.outbox.waiting
        if landed and self.outbox.last_landed["likes"]:
            assert self.outbox.mark("likes") == self.outbox.last_landed["likes"]


OutboxMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestOutboxMark = OutboxMachine.TestCase


def test_marks_are_stored_only_when_they_move_and_the_bound_holds():
    box = Outbox(enabled=True)
    assert box.marks_to_store() is None
    box.sent("g1", "analytics")
    box.stored("g1", "analytics", 5, (), tuple({"event_id": str(i)} for i in range(MAX_UNPUBLISHED_PLAYS)))
    box.finished("g1", {"a": 5, "b": 6})
    assert box.full("analytics") and box.mark("analytics") == 4
    box.published("g1")
    assert not box.full("analytics")
    assert box.marks_to_store() == {"likes": 0, "analytics": 6}
    assert box.marks_to_store() is None


def test_a_disabled_outbox_publishes_nothing_and_blocks_nothing():
    box = Outbox()
    box.sent("g1", "likes")
    assert box.stored("g1", "likes", 1, ("r",), ({"event_id": "x"},)) == []
    assert not box.is_busy("r") and not box.full("likes") and box.marks_to_store() is None
