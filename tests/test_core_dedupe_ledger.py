"""DedupeLedger: reserve / duplicate / wait behind a reservation; settle; expire.

Unit tests of each transition, then a state machine that plays the counter
writer's part (confirming or releasing outstanding reservations) against a
model: a dict of live claims, the outstanding reservations and the waiters
queued behind each.
"""

from __future__ import annotations

import attrs
import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from kryten_likes.actors.dedupe_ledger import DedupeLedger
from support.contract_oracle import fold
from kryten_likes.messages import (
    Claim, ClaimsSettled, LikeDuplicate, LikeForItem, LikeReserved, Media, ReplyTo, Tick,
)

T0 = 1_767_225_600.0
W = 100.0
V1 = Media("v1", "yt", "one")
V2 = Media("v2", "yt", "two")


def to(n: int) -> ReplyTo:
    return ReplyTo(f"inbox.{n}", None)


def like(n: int, user: str = "alice", media: Media = V1, ns: str = "ns1") -> LikeForItem:
    return LikeForItem(to(n), ns, user, media)


def reserved(n: int, user: str, media: Media, at: float, ns: str = "ns1") -> LikeReserved | LikeDuplicate:
    return LikeReserved(to(n), ns, media,
                                                  Claim(ns, media.video_id, user, at, at + W), user)


def dup(n: int, media: Media = V1, ns: str = "ns1", user: str = "alice") -> LikeReserved | LikeDuplicate:
    return LikeDuplicate(to(n), ns, media, user)


# --- unit tests -------------------------------------------------------------------------


def test_first_like_reserves_with_a_claim_for_the_window():
    led = DedupeLedger(W)
    [fwd] = led.step(like(1), T0)
    assert fwd == reserved(1, "alice", V1, T0)
    claim = fwd.claim
    assert (claim.liked_at, claim.expires_at, claim.expected_revision) == (T0, T0 + W, 0)
    assert ("ns1", "v1", "alice") in led.reserved


def test_like_after_confirm_is_duplicate_until_expiry():
    led = DedupeLedger(W)
    [fwd] = led.step(like(1), T0)
    assert led.step(ClaimsSettled(confirmed=(fwd.claim,)), T0 + 1) == []
    assert led.reserved == {}
    assert led.step(like(2), T0 + 2) == [dup(2)]
    assert led.step(like(3), T0 + W - 0.001) == [dup(3)]
    # At expires_at the claim is no longer live, even before a Tick removes it.
    assert led.step(like(4), T0 + W) == [reserved(4, "alice", V1, T0 + W)]


def test_other_user_item_or_namespace_is_another_key():
    led = DedupeLedger(W)
    [fwd] = led.step(like(1), T0)
    led.step(ClaimsSettled(confirmed=(fwd.claim,)), T0)
    assert led.step(like(2, "bob"), T0) == [reserved(2, "bob", V1, T0)]
    assert led.step(like(3, "alice", V2), T0) == [reserved(3, "alice", V2, T0)]
    assert led.step(like(4, "alice", V1, ns="ns2"), T0) == [reserved(4, "alice", V1, T0, ns="ns2")]


def test_waiters_become_duplicates_when_the_reservation_is_confirmed():
    led = DedupeLedger(W)
    [fwd] = led.step(like(1), T0)
    assert led.step(like(2), T0 + 1) == []
    assert led.step(like(3), T0 + 2) == []
    assert led.held_requests() == [to(2), to(3)]
    out = led.step(ClaimsSettled(confirmed=(fwd.claim,)), T0 + 3)
    assert out == [dup(2), dup(3)]
    assert led.held_requests() == [] and led.reserved == {}


def test_first_waiter_takes_a_released_reservation_the_rest_keep_waiting():
    led = DedupeLedger(W)
    [fwd] = led.step(like(1), T0)
    led.step(like(2), T0 + 1)
    led.step(like(3), T0 + 2)
    out = led.step(ClaimsSettled(released=(fwd.claim,)), T0 + 5)
    # A new claim, dated when it was reserved again.
    assert out == [reserved(2, "alice", V1, T0 + 5)]
    assert led.held_requests() == [to(3)]
    # ... and when that one is confirmed, the last waiter is a duplicate.
    assert led.step(ClaimsSettled(confirmed=(out[0].claim,)), T0 + 6) == [dup(3)]
    assert led.reserved == {}


def test_release_without_waiters_frees_the_key():
    led = DedupeLedger(W)
    [fwd] = led.step(like(1), T0)
    assert led.step(ClaimsSettled(released=(fwd.claim,)), T0) == []
    assert led.reserved == {} and led.claims == {}
    assert led.step(like(2), T0 + 1) == [reserved(2, "alice", V1, T0 + 1)]


def test_one_settlement_can_confirm_and_release_many():
    led = DedupeLedger(W)
    [a] = led.step(like(1, "alice"), T0)
    [b] = led.step(like(2, "bob"), T0)
    led.step(like(3, "alice"), T0)
    led.step(like(4, "bob"), T0)
    out = led.step(ClaimsSettled(confirmed=(a.claim,), released=(b.claim,)), T0 + 1)
    assert out == [dup(3), reserved(4, "bob", V1, T0 + 1)]


def test_tick_forgets_expired_claims():
    led = DedupeLedger(W, claims={("ns1", "v1", "old"): T0 + 10, ("ns1", "v1", "new"): T0 + 50})
    # Claims rebuilt from KV at start are honoured.
    assert led.step(like(1, "old"), T0) == [dup(1, user="old")]
    assert led.step(Tick(), T0 + 10) == []
    assert set(led.claims) == {("ns1", "v1", "new")}
    assert led.step(like(2, "old"), T0 + 10) == [reserved(2, "old", V1, T0 + 10)]
    led.step(Tick(), T0 + 60)
    assert led.claims == {}


def test_expired_claims_are_swept_at_most_every_sweep_interval_but_never_answered():
    led = DedupeLedger(W, claims={("ns1", "v1", "a"): T0 + 1, ("ns1", "v1", "b"): T0 + 3,
                                  ("ns1", "v2", "c"): T0 + 50})
    assert led.sweep_every == W / 10
    led.step(Tick(), T0 + 2)  # sweeps: a goes
    assert set(led.claims) == {("ns1", "v1", "b"), ("ns1", "v2", "c")}
    led.step(Tick(), T0 + 4)  # too soon after the last sweep: b stays in memory ...
    assert ("ns1", "v1", "b") in led.claims
    # ... but is not live: a like of b's is reserved, not a duplicate.
    assert led.step(like(1, "b"), T0 + 4) == [reserved(1, "b", V1, T0 + 4)]
    led.step(Tick(), T0 + 2 + led.sweep_every)
    assert set(led.claims) == {("ns1", "v2", "c")}
    led.step(Tick(), T0 + 60)
    assert led.claims == {} and len(led.live) == 0


def test_reconfirmed_key_is_not_expired_by_its_old_expiry():
    led = DedupeLedger(W)
    [a] = led.step(like(1), T0)
    led.step(ClaimsSettled(confirmed=(a.claim,)), T0)
    [b] = led.step(like(2), T0 + W)  # the old claim ran out
    led.step(ClaimsSettled(confirmed=(b.claim,)), T0 + W)
    led.step(Tick(), T0 + W + 1)  # the old expiry (T0 + W) is past; the new one holds
    assert led.claims == {("ns1", "v1", "alice"): T0 + 2 * W}
    assert led.step(like(3), T0 + W + 2) == [dup(3)]


def test_confirmed_with_the_stored_expiry_uses_it():
    # After a KV conflict the writer confirms with the expiry KV holds.
    led = DedupeLedger(W)
    [a] = led.step(like(1), T0)
    stored = attrs.evolve(a.claim, expires_at=T0 + 5)
    led.step(ClaimsSettled(confirmed=(stored,)), T0)
    assert led.step(like(2), T0 + 4) == [dup(2)]
    assert led.step(like(3), T0 + 5) == [reserved(3, "alice", V1, T0 + 5)]


def test_disabled_forwards_every_like_without_a_claim():
    led = DedupeLedger(W, enabled=False)
    for n in range(1, 4):
        assert led.step(like(n), T0) == [LikeReserved(to(n), "ns1", V1, None, "alice")]
    assert led.reserved == {} and led.claims == {}


def test_usernames_are_keys_as_given():
    # Folding (NFKC + casefold) is the gateway's job; the ledger compares as given.
    led = DedupeLedger(W)
    [a] = led.step(like(1, "strasse"), T0)
    led.step(ClaimsSettled(confirmed=(a.claim,)), T0)
    assert led.step(like(2, "strasse"), T0) == [dup(2, user="strasse")]
    assert led.step(like(3, "straße"), T0) == [reserved(3, "straße", V1, T0)]


def test_unknown_message_raises():
    with pytest.raises(TypeError):
        DedupeLedger(W).step(object(), T0)


# --- stateful ---------------------------------------------------------------------------------

USERS = ["alice", "bob", "strasse", "zoë"]
ITEMS = [V1, V2]


def _folded(u: str) -> bool:
    return fold(u) == u


class DedupeMachine(RuleBasedStateMachine):
    @initialize(enabled=st.booleans(), preloaded=st.lists(
        st.tuples(st.sampled_from(ITEMS), st.sampled_from(USERS), st.integers(1, 150)), max_size=3))
    def setup(self, enabled: bool, preloaded: list) -> None:
        self.now = T0
        self.n = 0
        claims = {("ns1", m.video_id, u): T0 + dt for m, u, dt in preloaded}
        self.ledger = DedupeLedger(W, enabled=enabled, claims=claims)
        self.confirmed: dict[tuple, float] = dict(claims)  # key → expires_at
        self.outstanding: dict[tuple, Claim] = {}  # key → the claim the writer holds
        self.waiters: dict[tuple, list[ReplyTo]] = {}
        self.answered: set[ReplyTo] = set()

    def live(self, key: tuple) -> bool:
        exp = self.confirmed.get(key)
        return exp is not None and exp > self.now

    def _expect_reserve(self, key: tuple, reply: ReplyTo, media: Media, effect: object) -> None:
        assert key not in self.outstanding, f"two reservations for {key}"
        expected = LikeReserved(reply, "ns1", media, Claim("ns1", media.video_id, key[2], self.now, self.now + W),
                                key[2])
        assert effect == expected, effect
        self.outstanding[key] = effect.claim
        self._answer(reply)

    def _answer(self, reply: ReplyTo) -> None:
        assert reply not in self.answered, f"{reply} forwarded twice"
        self.answered.add(reply)

    @rule(media=st.sampled_from(ITEMS), user=st.sampled_from(USERS))
    def like(self, media: Media, user: str) -> None:
        assert _folded(user)
        self.n += 1
        reply = to(self.n)
        key = ("ns1", media.video_id, user)
        out = self.ledger.step(LikeForItem(reply, "ns1", user, media), self.now)
        if not self.ledger.enabled:
            assert out == [LikeReserved(reply, "ns1", media, None, user)]
            self._answer(reply)
        elif self.live(key):
            assert out == [LikeDuplicate(reply, "ns1", media, user)]
            self._answer(reply)
        elif key in self.outstanding:
            assert out == []
            self.waiters.setdefault(key, []).append(reply)
        else:
            [effect] = out
            self._expect_reserve(key, reply, media, effect)

    @precondition(lambda self: self.outstanding)
    @rule(data=st.data())
    def settle(self, data) -> None:
        keys = data.draw(st.lists(st.sampled_from(sorted(self.outstanding)), min_size=1, unique=True))
        confirmed, released = [], []
        for key in keys:
            if data.draw(st.booleans(), label=f"confirm {key}"):
                # Usually the reserved expiry; after a KV conflict, the one KV holds.
                claim = self.outstanding[key]
                exp = data.draw(st.sampled_from([claim.expires_at, self.now + 7.0]), label="expires_at")
                confirmed.append(attrs.evolve(claim, expires_at=exp))
            else:
                released.append(self.outstanding[key])
        out = self.ledger.step(ClaimsSettled(tuple(confirmed), tuple(released)), self.now)
        expected_dups, expected_reserves = [], []
        for c in confirmed:
            key = ("ns1", c.video_id, c.user)
            del self.outstanding[key]
            self.confirmed[key] = c.expires_at
            expected_dups += [(key, r) for r in self.waiters.pop(key, [])]
        for c in released:
            key = ("ns1", c.video_id, c.user)
            del self.outstanding[key]
            queue = self.waiters.pop(key, [])
            if queue:
                expected_reserves.append((key, queue[0]))
                if queue[1:]:
                    self.waiters[key] = queue[1:]
        assert len(out) == len(expected_dups) + len(expected_reserves), out
        for (key, reply), effect in zip(expected_dups, out):
            media = next(m for m in ITEMS if m.video_id == key[1])
            assert effect == LikeDuplicate(reply, "ns1", media, key[2]), effect
            self._answer(reply)
        for (key, reply), effect in zip(expected_reserves, out[len(expected_dups):]):
            media = next(m for m in ITEMS if m.video_id == key[1])
            self._expect_reserve(key, reply, media, effect)

    @rule(dt=st.sampled_from([0.5, 3.0, 7.0, 40.0, 99.0, 100.0, 250.0]))
    def advance(self, dt: float) -> None:
        self.now += dt

    @rule()
    def tick(self) -> None:
        assert self.ledger.step(Tick(), self.now) == []
        held = self.ledger.claims
        # Memory holds every live claim, and after a tick nothing that ran out
        # more than one sweep interval ago.
        assert {k: e for k, e in held.items() if e > self.now} == {
            k: e for k, e in self.confirmed.items() if e > self.now}
        assert all(e > self.now - self.ledger.sweep_every for e in held.values()), held

    @invariant()
    def one_reservation_per_key_and_waiters_in_order(self) -> None:
        if not hasattr(self, "ledger"):
            return
        assert set(self.ledger.reserved) == set(self.outstanding)
        assert {k: [w.reply for w in q] for k, q in self.ledger.reserved.items() if q} == self.waiters
        assert sorted(self.ledger.held_requests(), key=repr) == sorted(
            (r for q in self.waiters.values() for r in q), key=repr)

    @invariant()
    def claims_agree(self) -> None:
        if not hasattr(self, "ledger"):
            return
        for m in ITEMS:
            for u in USERS:
                key = ("ns1", m.video_id, u)
                assert self.ledger.is_claimed(key, self.now) == self.live(key), key


DedupeMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestDedupeLedgerAgainstModel = DedupeMachine.TestCase
