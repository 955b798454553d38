"""Hostile input, fuzzed: a Hypothesis run sends arbitrary bytes and arbitrary
JSON (random and real field names, wrong types, huge strings, unicode,
control characters, nested values) to every command of one daemon on a real
nats-server, checks each reply against the contract (an oracle written from
docs/contract.md, not from the gateway), and at the end checks that the
counters moved only by the likes answered ``ok`` (replies, ``stats``,
``top_liked`` and the KV documents agree).

The fuzzed inputs leave out two classes that were once bugs, tested apart in
test_hostile_once_bugs.py: JSON nested ~1000 deep and strings holding lone
surrogates. ``KRYTEN_FUZZ_SCALE=N`` runs N times the examples (default 3000
requests, ~20 s).
"""

from __future__ import annotations

import json
import os
import time
import unicodedata
import uuid
from collections import Counter

import nats.errors
import pytest
from conftest import Harness, playing, wait_until
from hypothesis import HealthCheck, given, settings, strategies as st

from kryten_likes.clock import FakeClock
from kryten_likes.store import ANALYTICS_BUCKET, LIKES_BUCKET, decode_token, encode_token, likes_key
from support.hostile import portal_module  # noqa: F401 (fixture)
from support.contract_oracle import ERROR_WORDS, KEY_RE, MAX_BODY, NS_RE, fold as oracle_fold
from support.hostile import FUZZED_COMMANDS, ITEM_FIELDS, all_keys, hostile_config


# --- the oracle: what docs/contract.md says about one request ----------------------------------

def _cats(text: str) -> set[str]:
    return {unicodedata.category(c) for c in text}


def _name_verdict(value, max_len: int, *, fold: bool, required: bool) -> str:
    """"ok", "bad" or "open" (the contract lets the daemon go either way)."""
    if value is None:
        return "bad" if required else "open"  # null for an optional id: absent, or refused
    if not isinstance(value, str):
        return "bad"
    if fold:
        value = oracle_fold(value)
    if not 1 <= len(value) <= max_len:
        return "bad"
    cats = _cats(value)
    if fold and "Cc" in cats:
        return "bad"  # a user "must be 1-64 characters with no control characters"
    if cats & {"Cc", "Cf", "Co", "Cn", "Cs"}:
        return "open"  # format/private/unassigned characters; control characters in ids
    return "ok"


def _limit_verdict(body: dict) -> str:
    if "limit" not in body:
        return "ok"
    v = body["limit"]
    if v is None:
        return "open"
    if isinstance(v, bool):
        return "bad"
    if isinstance(v, int):
        return "ok" if 1 <= v <= 100 else "bad"
    if isinstance(v, float) and v.is_integer() and 1 <= v <= 100:
        return "open"  # 5.0 is an integer in JSON's eyes
    return "bad"


def expectation(command: str, data: bytes) -> tuple[set, set, dict | None, str | None]:
    """(fields that must be refused, fields the contract leaves open, the body, the valid cid)."""
    must, open_ = set(), set()
    if not data:
        body = {}
        open_.add("body")  # no payload at all: an empty request, or not JSON
    else:
        try:
            body = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return {"body"}, set(), None, None
    if not isinstance(body, dict):
        return {"body"}, set(), None, None
    cid = body.get("correlation_id")
    valid_cid = cid if isinstance(cid, str) and len(cid) <= 200 else None
    if len(data) > MAX_BODY:
        return {"body"}, set(), None, valid_cid
    if cid is not None and valid_cid is None:
        must.add("correlation_id")
    ns = body.get("namespace")
    if ns is not None and not (isinstance(ns, str) and NS_RE.fullmatch(ns)):
        must.add("namespace")
    verdicts = {}
    if command == "like":
        verdicts["username"] = _name_verdict(body.get("username"), 64, fold=True, required=True)
        if "video_id" in body:
            verdicts["video_id"] = _name_verdict(body["video_id"], 1000, fold=False, required=False)
    elif command in ("top_liked", "top_played"):
        verdicts["limit"] = _limit_verdict(body)
    elif command == "stats":
        for f in ("video_id", "playlist_id"):
            if f in body:
                verdicts[f] = _name_verdict(body[f], 1000, fold=False, required=False)
    for f, v in verdicts.items():
        if v == "bad":
            must.add(f)
        elif v == "open":
            open_.add(f)
    return must, open_, body, valid_cid


# --- the Hypothesis run ---------------------------------------------------------------------------

TITLE = "Fuzz ✓ title"


@pytest.fixture(scope="module")
def fuzz_daemon(portal_module, nats_server):
    # A generous rate limit: no fuzzed like may be rate_limited (the clock does not move).
    config = hostile_config(likes={"rate_per_minute": 6e6, "rate_burst": 10 ** 6},
                            limits={"global_likes_per_second": 1e6, "global_likes_burst": 10 ** 6})
    h = Harness(portal_module, nats_server.url, config, FakeClock())
    h.start()
    vid = f"fuzz-{uuid.uuid4().hex[:8]}"  # never seen before in any namespace: every count starts at 0
    h.change_media(vid, title=TITLE)
    playing(h, vid)
    wait_until(lambda: h.request("stats", {})["global"]["items_played"] == 1)
    yield h, vid
    h.close()


def request_strategy(own_ns: str, vid: str):
    text = st.one_of(
        st.text(max_size=40),
        st.text(alphabet=st.characters(codec="utf-8", categories=["Cc", "Cf", "Co", "Zs", "Mn", "Lo", "So"]),
                max_size=12),
        st.sampled_from(["", "alice", "Alice", "ALICE", "ａｌｉｃｅ", "Strauß", "STRAUSS", "ﷺ", "a\x00b", "a\u200db",
                         "..", ">", "*", "a.b", "a/b", "=", "\n", "x" * 64, "x" * 65, "ß" * 33, "é" * 64]),
        st.integers(990, 1010).map(lambda n: "v" * n),
        st.integers(60_000, 70_000).map(lambda n: "h" * n),  # huge
    )
    scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-(10 ** 30), 10 ** 30),
                       st.floats(allow_nan=False), text)
    value = st.recursive(scalar, lambda c: st.lists(c, max_size=3) | st.dictionaries(text, c, max_size=3),
                         max_leaves=6)
    users = st.one_of(st.sampled_from(["alice", "Alice", "ＡＬＩＣＥ", "bob", "Strauß", "strauss", "名前", "zoë"]),
                      text, value)
    ids = st.one_of(st.just(vid), st.just(vid.upper()), st.text(max_size=10), text, value)
    namespaces = st.one_of(st.just(own_ns), st.none(), st.sampled_from([f"{own_ns}-b", f"{own_ns}_c"]),
                           st.from_regex(NS_RE, fullmatch=True), text, value)
    cids = st.one_of(st.none(), st.text(max_size=20), st.text(min_size=195, max_size=205), value)
    real = st.fixed_dictionaries({}, optional={
        "username": users, "video_id": ids, "playlist_id": ids,
        "limit": st.one_of(st.integers(-1, 102), st.sampled_from([5.0, 5.5, "5", True, None]), value),
        "namespace": namespaces, "correlation_id": cids, "unknown": value,
    })
    random_obj = st.dictionaries(st.one_of(text, st.sampled_from(["username", "video_id", "limit", "namespace"])),
                                 value, max_size=5)

    def dumps(v, ascii_only):
        return json.dumps(v, ensure_ascii=ascii_only).encode()

    def padded(body: dict, size: int) -> bytes:  # a body of exactly ``size`` bytes (when it fits)
        raw = dumps({**body, "pad": ""}, True)
        return raw[:-2] + b"p" * max(0, size - len(raw)) + b'"}'

    bodies = st.one_of(
        st.binary(max_size=300),
        st.builds(dumps, value, st.booleans()),
        st.builds(dumps, random_obj, st.booleans()),
        st.builds(dumps, real, st.booleans()),
        st.builds(dumps, real, st.booleans()),
        st.builds(dumps, real, st.booleans()),
        st.builds(dumps, real, st.booleans()).flatmap(lambda b: st.integers(0, len(b)).map(lambda i: b[:i])),
        st.builds(padded, real, st.integers(MAX_BODY - 2, MAX_BODY + 2)),  # around the 64 KiB bound
        st.sampled_from([b"", b"{}", b"null", b"[]", b"\xef\xbb\xbf{}", b"NaN", b'{"limit": NaN}',
                         b'{"username": "u", "username": 7}', b"\xff\xfe{\x00}\x00"]),
    )
    # Likes that mostly pass validation, so that counting, dedupe across
    # namespaces and not_current are exercised, not only the refusals.
    like_names = st.one_of(st.sampled_from(["alice", "Alice", "ＡＬＩＣＥ", "bob", "Strauß", "strauss", "名前", "zoë",
                                            "ﬁsh", "FISH", "x" * 64, "ß" * 32]),
                           st.text(min_size=1, max_size=20),
                           st.text(alphabet=st.characters(codec="utf-8", categories=["Lu", "Ll", "Lo", "Nd"]),
                                   min_size=1, max_size=64))
    likes = st.fixed_dictionaries({"username": like_names}, optional={
        "video_id": st.sampled_from([vid, vid, vid.upper(), "other", ""]),
        "namespace": st.sampled_from([own_ns, own_ns, f"{own_ns}-b", f"{own_ns}_c", None, "a.b"]),
        "correlation_id": st.one_of(st.text(max_size=20), st.none()),
        "unknown": value,
    })
    return st.one_of(
        st.tuples(st.sampled_from(FUZZED_COMMANDS), bodies),
        st.tuples(st.just("like"), st.builds(dumps, likes, st.booleans())),
    )


def check_reply(h: Harness, state: dict, own_ns: str, vid: str, command: str, data: bytes, r: dict) -> None:
    must, open_, body, cid = expectation(command, data)
    # The common shape of every reply.
    assert isinstance(r, dict), r
    assert r["status"] in ("ok", "duplicate", "error"), r
    assert r["status"] != "duplicate" or command == "like", r
    if r["status"] == "error":
        assert r["error"] in ERROR_WORDS, r
    else:
        assert r["error"] is None, r
    assert "detail" not in r or isinstance(r["detail"], str), r
    # Oversized bodies too: the refusal echoes a valid correlation_id
    # (test_oversized_body_still_echoes_its_correlation_id).
    assert r["correlation_id"] == cid, (r, cid)
    state["outcomes"][(command, r["error"] or r["status"])] += 1

    if r["error"] == "invalid_request":
        field = r["detail"].split(":", 1)[0]
        assert field in must | open_, (field, must, open_, r)
        return
    assert not must, f"{command} accepted a request with bad {must}: {r}"
    assert r["error"] not in ("rate_limited", "unavailable", "internal_error", "no_current_item"), r

    ns = body.get("namespace") or own_ns
    if command == "like":
        user = oracle_fold(body["username"])
        asked = body.get("video_id")
        if isinstance(asked, str) and asked != vid:
            assert (r["status"], r["error"], r["video_id"]) == ("error", "not_current", vid), r
            return
        if cid and (ns, user, cid) in state["originals"]:
            # A retry (same user and correlation_id) gets its original reply and counts nothing.
            assert (r["status"], r["like_count"], r["video_id"]) == ("ok", state["originals"][ns, user, cid], vid), r
            state["replays"] += 1
            return
        if (ns, user) in state["users"]:
            assert (r["status"], r["like_count"], r["video_id"]) == ("duplicate", state["count"][ns], vid), r
            return
        assert r["status"] == "ok", r
        state["users"].add((ns, user))
        state["count"][ns] += 1
        state["ok_replies"] += 1
        assert (r["like_count"], r["video_id"]) == (state["count"][ns], vid), r
        if cid:
            state["originals"][ns, user, cid] = r["like_count"]
    elif command == "now_playing":
        assert (r["status"], r["video_id"], r["title"]) == ("ok", vid, TITLE), r
        assert isinstance(r["started_at"], str), r
    elif command in ("top_liked", "top_played"):
        assert r["status"] == "ok", r
        limit = int(body["limit"]) if isinstance(body.get("limit"), (int, float)) else 10
        items = r["items"]
        assert len(items) <= limit, r
        assert all(set(i) >= {"video_id", "title", "count"} for i in items), r
        assert [(-i["count"], i["video_id"]) for i in items] == sorted((-i["count"], i["video_id"]) for i in items)
        if ns == own_ns:
            if command == "top_played":
                assert items == [{"video_id": vid, "title": TITLE, "count": 1}], r
            else:
                want = [{"video_id": vid, "title": TITLE, "count": state["count"][ns]}] if state["count"][ns] else []
                assert items == want, r
    elif command == "stats":
        assert r["status"] == "ok" and isinstance(r["global"], dict), r
        if ns == own_ns:
            assert r["global"] == state["global"], r
        asked = body.get("video_id")
        if isinstance(asked, str):
            item = r["item"]
            assert set(item) >= ITEM_FIELDS, r
            if asked == vid:
                assert item["like_count"] == state["count"][ns], r
                assert item["play_count"] == (1 if ns == own_ns else 0), r
            elif ns == own_ns:  # an unknown item: zeros and nulls
                assert (item["play_count"], item["queue_count"], item["like_count"]) == (0, 0, 0), r
                assert (item["last_played_at"], item["last_queued_at"]) == (None, None), r
        if isinstance(body.get("playlist_id"), str):
            assert "playlist" in r and (r["playlist"] is None or isinstance(r["playlist"], dict)), r


FUZZ_STATS: dict = {}
FUZZ_EXAMPLES = int(3000 * float(os.environ.get("KRYTEN_FUZZ_SCALE", "1")))


def test_fuzzed_requests_get_contract_replies_and_move_counters_only_when_ok(fuzz_daemon):
    h, vid = fuzz_daemon
    own_ns = h.config.analytics.namespace
    state = {"users": set(), "count": Counter(), "ok_replies": 0, "sent": 0, "outcomes": Counter(),
             "originals": {}, "replays": 0,
             "global": h.request("stats", {})["global"]}
    assert state["global"]["items_played"] == 1
    started = time.monotonic()

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.large_base_example, HealthCheck.filter_too_much])
    @given(request=request_strategy(own_ns, vid))
    def one_request(request):
        command, data = request
        state["sent"] += 1
        try:
            r = h.request(command, data, timeout=5)
        except nats.errors.TimeoutError:
            raise AssertionError(f"no reply to {command} {data[:300]!r}") from None
        check_reply(h, state, own_ns, vid, command, data, r)

    one_request()

    # The daemon is alive, no actor ever crashed, and its counters moved only
    # by the likes answered ok.
    assert h.request("now_playing", {})["video_id"] == vid
    assert h.daemon.supervisor.restarts == dict.fromkeys(h.daemon.supervisor.restarts, 0)
    assert h.request("stats", {})["global"] == state["global"]
    assert sum(state["count"].values()) == state["ok_replies"]
    keys = set(all_keys(h, LIKES_BUCKET))
    for ns in {own_ns, *state["count"]}:
        n = state["count"][ns]
        assert h.request("stats", {"video_id": vid, "namespace": ns})["item"]["like_count"] == n, ns
        doc = h.kv(LIKES_BUCKET, likes_key(ns, vid))
        assert (doc["like_count"] if doc else 0) == n, (ns, doc)
        top = h.request("top_liked", {"namespace": ns, "limit": 100})["items"]
        assert [i["count"] for i in top if i["video_id"] == vid] == ([n] if n else []), (ns, top)
        # One dedupe claim per user counted, and none for anybody else.
        prefix = f"ns/{ns}/dedupe/{encode_token(vid)}/"
        claimed = {decode_token(k[len(prefix):]) for k in keys if k.startswith(prefix)}
        assert claimed == {u for (n_, u) in state["users"] if n_ == ns}, ns
        # One request key per counted like that carried a correlation_id.
        prefix = f"ns/{ns}/requests/"
        requests = {tuple(decode_token(t) for t in k[len(prefix):].split("/")) for k in keys if k.startswith(prefix)}
        assert requests == {(u, c) for (n_, u, c) in state["originals"] if n_ == ns}, ns
    for bucket in (LIKES_BUCKET, ANALYTICS_BUCKET):
        for key in (keys if bucket == LIKES_BUCKET else all_keys(h, bucket)):
            assert KEY_RE.fullmatch(key), key
    FUZZ_STATS.update(sent=state["sent"], ok_likes=state["ok_replies"], replays=state["replays"],
                      namespaces=len(state["count"]),
                      seconds=round(time.monotonic() - started, 1), outcomes=dict(state["outcomes"]))
    print("\nhostile fuzz:", FUZZ_STATS)
