"""The whole daemon against a plain model (Hypothesis stateful), on a real
nats-server: random changeMedia events (new, replayed, re-sent), likes by a
few users (case variants of one name among them), unlikes, items queued by
curators, clock advances, queries, restarts of the whole daemon and crashes
of single actors with a like inside. After every step the replies, the KV
documents, the rankings and the curators' credit must be what the model
says."""

from __future__ import annotations

import anyio.from_thread
import attrs
import pytest
from conftest import Harness, unique_config, wait_until
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kryten_likes.actors.gateway import Inbound
from kryten_likes.clock import FakeClock
from kryten_likes.messages import LikeAllowed, LikeDuplicate, LikeForItem, LikeRequested, LikeReserved
from kryten_likes.store import LIKES_BUCKET, likes_key
from support.events import queue_item

USERS = ["ann", "Ann", "ANN", "bob", "carl", "Ｄｅｅ"]
ITEMS = ["i1", "i2", "https://media.example.com/m/x.json"]
CURATORS = ["Quinn", "quinn", "Rae"]
WINDOW = 50.0
UNLIKE_WINDOW = 90.0
BURST = 2
PER_SECOND = 1.0  # rate_per_minute = 60


from support.contract_oracle import fold  # noqa: E402


CRASH_ON = {  # the message each actor gets for a like
    "gateway": (Inbound,),
    "rate_buckets": (LikeRequested,),
    "playback": (LikeAllowed,),
    "dedupe_ledger": (LikeForItem,),
    "counter_writer": (LikeReserved, LikeDuplicate),
}


class OneShotFault:
    """A test's fault hook: the armed actor raises on its next message of a kind."""

    def __init__(self) -> None:
        self.armed: tuple[str, tuple] | None = None

    def arm(self, actor: str, kinds: tuple) -> None:
        self.armed = (actor, kinds)

    def disarm(self) -> None:
        self.armed = None

    def __call__(self, actor: str, msg: object) -> bool:
        if self.armed is not None and actor == self.armed[0] and isinstance(msg, self.armed[1]):
            self.armed = None
            return True
        return False


class DaemonMachine(RuleBasedStateMachine):
    url: str = ""

    def __init__(self) -> None:
        super().__init__()
        self._portal_cm = anyio.from_thread.start_blocking_portal()
        portal = self._portal_cm.__enter__()
        config = unique_config(dedupe_window_seconds=WINDOW, rate_per_minute=60.0, rate_burst=BURST,
                               unlike_window_seconds=UNLIKE_WINDOW)
        config = attrs.evolve(config, supervisor=attrs.evolve(config.supervisor, max_restarts=1000))
        self.fault = OneShotFault()
        self.h = Harness(portal, self.url, config, FakeClock(), self.fault)
        self.h.start()
        # the model
        self.current: str | None = None
        self.likes: dict[str, int] = {}
        self.plays: dict[str, int] = {}
        self.claims: dict[tuple[str, str], float] = {}
        self.tokens: dict[str, tuple[float, float]] = {}  # user -> (tokens, at)
        self.liked: dict[tuple[str, str], tuple[float, str | None]] = {}  # counted, not unliked: (at, curator)
        self.entries: list[tuple[int, str, str]] = []  # (event seq, item, queued by), as playback knows them
        self.seq = 0  # the bridge events published, in stream order
        self.last_play_seq = 0  # the stream sequence of the last counted play
        self.queued: dict[str, int] = {}
        self.curator: str | None = None  # of the play now
        self.received: dict[str, int] = {}  # folded curator -> likes received
        self.curated_plays: dict[str, int] = {}
        self.names: dict[str, str] = {}  # folded curator -> as first seen

    def now(self) -> float:
        return self.h.clock.now()

    def take_token(self, user: str) -> bool:
        tokens, at = self.tokens.get(user, (float(BURST), self.now()))
        tokens = min(float(BURST), tokens + (self.now() - at) * PER_SECOND)
        if tokens < 1.0:
            self.tokens[user] = (tokens, self.now())
            return False
        self.tokens[user] = (tokens - 1.0, self.now())
        return True

    @rule(item=st.sampled_from(ITEMS), by=st.sampled_from(CURATORS))
    def queue(self, item: str, by: str) -> None:
        self.seq += 1
        self.entries.append((self.seq, item, by))
        self.queued[item] = self.queued.get(item, 0) + 1
        self.h.publish_event("queue", queue_item("yt", item, by=by, uid=self.seq))
        wait_until(lambda: self.h.request("stats", {"video_id": item})["item"]["queue_count"] == self.queued[item])

    @rule(item=st.sampled_from(ITEMS), current_time=st.sampled_from([0, 0, 12.5]))
    def change_media(self, item: str, current_time: float) -> None:
        self.seq += 1
        if not (item == self.current and current_time > 0):
            self.plays[item] = self.plays.get(item, 0) + 1
            self.last_play_seq = self.seq
            # The newest entry of the media names the curator (no setCurrent here).
            self.curator = next((by for _, it, by in reversed(self.entries) if it == item), None)
            if self.curator:
                c = fold(self.curator)
                self.names.setdefault(c, self.curator)
                self.curated_plays[c] = self.curated_plays.get(c, 0) + 1
        self.current = item
        self.h.change_media(item, current_time=current_time)
        wait_until(lambda: self.h.request("stats", {"video_id": item})["item"]["play_count"] == self.plays[item]
                   and self.h.request("now_playing", {})["video_id"] == item)

    @rule(name=st.sampled_from(USERS), which=st.sampled_from([None, "current", "other"]))
    def like(self, name: str, which: str | None) -> None:
        user = fold(name)
        body: dict = {"username": name}
        if which == "current" and self.current:
            body["video_id"] = self.current
        elif which == "other":
            body["video_id"] = "elsewhere"
        r = self.h.request("like", body)
        if not self.take_token(user):
            assert (r["status"], r["error"]) == ("error", "rate_limited"), r
            assert r["retry_after_seconds"] > 0
            return
        if self.current is None:
            assert r["error"] == "no_current_item", r
            return
        if body.get("video_id") == "elsewhere":
            assert (r["error"], r["video_id"]) == ("not_current", self.current), r
            return
        item = self.current
        if self.claims.get((item, user), -1.0) > self.now():
            assert (r["status"], r["like_count"]) == ("duplicate", self.likes.get(item, 0)), r
            return
        self.claims[(item, user)] = self.now() + WINDOW
        self.likes[item] = self.likes.get(item, 0) + 1
        assert (r["status"], r["video_id"], r["like_count"]) == ("ok", item, self.likes[item]), r
        self.liked[(item, user)] = (self.now(), self.curator)  # a like again: its record is the latest
        if self.curator:
            self.received[fold(self.curator)] = self.received.get(fold(self.curator), 0) + 1

    @rule(name=st.sampled_from(USERS))
    def unlike(self, name: str) -> None:
        user = fold(name)
        r = self.h.request("unlike", {"username": name})
        if not self.take_token(user):
            assert (r["status"], r["error"]) == ("error", "rate_limited"), r
            return
        if self.current is None:
            assert r["error"] == "no_current_item", r
            return
        item = self.current
        counted = self.liked.get((item, user))
        if counted is None:
            assert (r["status"], r["error"]) == ("error", "not_liked"), r
            return
        if self.now() - int(counted[0]) >= UNLIKE_WINDOW:
            assert (r["status"], r["error"]) == ("error", "unlike_window_passed"), r
            return
        del self.liked[(item, user)]
        self.claims.pop((item, user), None)
        self.likes[item] -= 1
        if counted[1]:
            self.received[fold(counted[1])] -= 1
        assert (r["status"], r["video_id"], r["like_count"]) == ("ok", item, self.likes[item]), r

    @precondition(lambda self: self.current is not None)
    @rule(actor=st.sampled_from(sorted(CRASH_ON)), name=st.sampled_from(USERS))
    def crash_an_actor_with_a_like_inside(self, actor: str, name: str) -> None:
        """The actor raises on the like; it is answered internal_error, changes
        nothing, and the restarted actor (state rebuilt from KV) serves on."""
        user = fold(name)
        # Past its rate limit the like never reaches the deeper actors.
        reaches = actor in ("gateway", "rate_buckets") or self.would_take_token(user)
        self.fault.arm(actor, CRASH_ON[actor])
        r = self.h.request("like", {"username": name})
        if not reaches:
            self.fault.disarm()
            self.take_token(user)
            assert r["error"] == "rate_limited", r
            return
        assert (r["status"], r["error"]) == ("error", "internal_error"), r
        if actor == "playback":
            self.forget_entries()
        if actor == "rate_buckets":
            self.tokens.clear()  # the buckets died with it
        elif actor != "gateway":
            self.take_token(user)

    def would_take_token(self, user: str) -> bool:
        tokens, at = self.tokens.get(user, (float(BURST), self.now()))
        return min(float(BURST), tokens + (self.now() - at) * PER_SECOND) >= 1.0

    @rule(seconds=st.sampled_from([1, 2, 5, 60]))
    def advance(self, seconds: int) -> None:
        self.h.clock.advance(seconds)

    @rule()
    def restart(self) -> None:
        self.h.stop()
        self.h.start()
        self.tokens.clear()  # rate buckets live in memory
        self.forget_entries()

    def forget_entries(self) -> None:
        """A playback that starts knows the bridge's playlist KV (none here) and
        the queue events read again: the stream is read again from the first
        event not stored, which is after the last counted play."""
        self.entries = [e for e in self.entries if e[0] > self.last_play_seq]

    @invariant()
    def rankings_and_documents_match_the_model(self) -> None:
        ns = self.h.config.analytics.namespace
        liked = sorted(((-n, v) for v, n in self.likes.items() if n), key=lambda t: t)
        top = self.h.request("top_liked", {"limit": 10})["items"]
        assert [(i["video_id"], i["count"]) for i in top] == [(v, -n) for n, v in liked]
        for item, n in self.plays.items():
            assert self.h.request("stats", {"video_id": item})["item"]["play_count"] == n, (item, n)
        played = sorted((-n, v) for v, n in self.plays.items() if n)
        top = self.h.request("top_played", {"limit": 10})["items"]
        assert [(i["video_id"], i["count"]) for i in top] == [(v, -n) for n, v in played]
        for item, n in self.likes.items():
            assert self.h.kv(LIKES_BUCKET, likes_key(ns, item))["like_count"] == n
        g = self.h.request("stats", {})["global"]
        assert g["items_played"] == sum(self.plays.values())
        assert self.h.request("now_playing", {})["video_id"] == self.current
        want = sorted((-n, c) for c, n in self.received.items() if n > 0)
        got = self.h.request("top_curators", {"limit": 10})["items"]
        assert [(i["username"], i["likes_received"], i["plays"]) for i in got] == [
            (self.names[c], -n, self.curated_plays.get(c, 0)) for n, c in want]

    def teardown(self) -> None:
        self.h.close()
        self._portal_cm.__exit__(None, None, None)


@pytest.fixture
def machine(nats_server):
    DaemonMachine.url = nats_server.url
    return DaemonMachine


def test_daemon_matches_the_model(machine):
    from hypothesis.stateful import run_state_machine_as_test
    run_state_machine_as_test(machine, settings=settings(
        max_examples=8, stateful_step_count=25, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
