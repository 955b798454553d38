"""Fuzz of the request decoder (``gateway.decode``) and of the key encoder
(``store/keys.py``): pure functions, so thousands of examples take seconds.

Marked ``fuzz`` (CI runs it briefly by default). Properties:

- ``decode`` never raises and returns the message for the actor that answers (``routes.MAILBOX``) or an ``invalid_request``
  ``Reply`` naming a field; whatever it forwards respects the contract's
  limits (namespace regex, folded user of 1-64 characters without control
  characters, ids of 1-1000 characters, limit 1-100) and carries the request's
  correlation id when it had a valid one;
- ``encode_token``/``decode_token`` round-trip every id of 1-1000 characters,
  and a token never holds ``/`` or ``.``;
- every key built from a valid namespace and any ids matches
  ``^ns/{ns}/[A-Za-z0-9_=./-]+$`` with exactly the expected parts; an invalid
  namespace raises.

Input classes that were once bugs (lone surrogates, nesting ~1000 deep)
are tested apart at the end of the file; the main strategies leave them
out. ``KRYTEN_FUZZ_SCALE=N`` runs N times the examples (default ~6,100).
"""

from __future__ import annotations

import json
import os
import re
import string
import unicodedata

import pytest
from hypothesis import HealthCheck, event, example, given, settings, strategies as st

from kryten_likes.actors import gateway
from kryten_likes.actors.gateway import fits_key, Inbound, decode, fold_user
from kryten_likes.messages import AdjustRequested, LikeRequested, StatsAsked, TopAsked
from kryten_likes.effects import Reply
from kryten_likes.routes import mailbox_of
from kryten_likes.store import keys
from kryten_likes.store.keys import (
    KeyError_, decode_token, dedupe_key, encode_token, global_key, item_key, likes_key, now_playing_key,
    playlist_key, ranking_key, split_key,
)

from support.contract_oracle import (
    MAX_BODY, NS_RE, TOKEN_RE, fold, has_control, valid_correlation_id,
)

pytestmark = pytest.mark.fuzz

DEFAULT_NS = "default-ns"

# KRYTEN_FUZZ_SCALE=20 (say) runs twenty times the examples, for a longer hunt.
SCALE = float(os.environ.get("KRYTEN_FUZZ_SCALE", "1"))


def fuzz(n: int) -> settings:
    return settings(max_examples=max(1, int(n * SCALE)), deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.large_base_example, HealthCheck.filter_too_much])


# --- strategies -----------------------------------------------------------------------------

# Text as a hostile client sends it: anything JSON can carry except lone
# surrogates (once a bug, tested apart at the end), with control
# characters, format characters, fullwidth letters, combining marks.
nasty_text = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=st.characters(codec="utf-8", categories=["Cc", "Cf", "Co", "Zs", "Mn", "Lo"]), max_size=10),
    st.sampled_from(["", "alice", "ALICE", "ａｌｉｃｅ", "Strauß", "ﷺ", "a\x00b", "a\u200db", "..", ".", "/", ">",
                     "*", "a.b", "a/b", "=", "=YQ", "\n", "x" * 64, "x" * 65, "ß" * 40, "ﷺ" * 4]),
    st.integers(1, 1100).map(lambda n: "v" * n),
)
json_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-(10 ** 40), 10 ** 40),
                        st.floats(allow_nan=False, allow_infinity=False), nasty_text)
json_value = st.recursive(json_scalar, lambda c: st.lists(c, max_size=3) | st.dictionaries(nasty_text, c, max_size=3),
                          max_leaves=8)
FIELDS = ("username", "video_id", "playlist_id", "limit", "namespace", "correlation_id", "items", "requested_by")
field_value = st.one_of(
    json_value,
    st.integers(-2, 102),
    st.from_regex(NS_RE, fullmatch=True),
    st.text(min_size=195, max_size=205),
    st.lists(st.fixed_dictionaries({"video_id": nasty_text, "type": nasty_text}), min_size=1, max_size=3),
)
object_body = st.dictionaries(st.one_of(st.sampled_from(FIELDS), nasty_text), field_value, max_size=6)
# Mostly well-formed requests with one or two fields gone wrong: these reach the
# field checks (and the path to the actors) far more often than random objects.
plausible = st.one_of(nasty_text, st.sampled_from(["alice", "v1", "c-1", "default", "ns-2"]))
plausible_body = st.fixed_dictionaries({}, optional={
    "username": st.one_of(plausible, field_value),
    "video_id": st.one_of(plausible, field_value),
    "playlist_id": st.one_of(plausible, field_value),
    "limit": st.one_of(st.integers(0, 101), field_value),
    "like_count": st.one_of(st.integers(-1, 3), field_value),  # adjust: one of these two, a reason
    "reason": st.one_of(plausible, field_value),
    "namespace": st.one_of(st.from_regex(NS_RE, fullmatch=True), st.none(), field_value),
    "correlation_id": st.one_of(st.text(max_size=201), st.none(), field_value),
    "extra": json_value,
})


def _json_bytes(value, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8")


body_bytes = st.one_of(
    st.binary(max_size=200),
    st.builds(_json_bytes, json_value, st.booleans()),
    st.builds(_json_bytes, object_body, st.booleans()),
    st.builds(_json_bytes, plausible_body, st.booleans()),
    st.builds(_json_bytes, plausible_body, st.booleans()),
    st.builds(_json_bytes, plausible_body, st.booleans()),
    st.builds(_json_bytes, object_body, st.booleans()).flatmap(
        lambda b: st.integers(0, len(b)).map(lambda i: b[:i])),  # truncated JSON
    st.sampled_from([b"", b"{}", b"null", b"[]", b"\xef\xbb\xbf{}", b"NaN", b'{"limit": NaN}',
                     b'{"limit": 1e999}', b'{"a": 1, "a": 2}', b"[" * 50 + b"]" * 50]),
    st.integers(MAX_BODY - 40, MAX_BODY + 3).map(  # bodies around the 64 KiB bound
        lambda n: b'{"username": "u", "pad": "' + b"p" * (n - 28) + b'"}'),
)
commands = st.sampled_from([*gateway.COMMANDS * 4, "", "LIKE", "like ", ">", "queue"])  # some unknown


# --- decode -----------------------------------------------------------------------------------

def _check_forwarded(msg, body: dict) -> None:
    """What reaches an actor is within the contract's limits."""
    ns = getattr(msg, "namespace", None)
    if ns is not None:
        assert NS_RE.fullmatch(ns), msg
        assert ns == (body.get("namespace") or DEFAULT_NS), msg
    if isinstance(msg, LikeRequested):
        assert 1 <= len(msg.user) <= 64 and not has_control(msg.user), msg
        assert msg.user == fold_user(body["username"]), msg
        assert msg.video_id is None or 1 <= len(msg.video_id) <= 1000, msg
    if isinstance(msg, StatsAsked):
        for v in (msg.video_id, msg.playlist_id):
            assert v is None or 1 <= len(v) <= 1000, msg
    if isinstance(msg, TopAsked):
        assert type(msg.limit) is int and 1 <= msg.limit <= 100, msg
        assert msg.ranking in ("liked", "played", "curators"), msg
        assert msg.window in ("all", "day", "week", "month"), msg
    if isinstance(msg, AdjustRequested):
        assert 1 <= len(msg.video_id) <= 1000 and 1 <= len(msg.reason) <= 500, msg
        assert type(msg.value) is int and 0 <= msg.value <= gateway.MAX_ADJUSTED, msg
        other = "play_count" if msg.field == "like_count" else "like_count"
        assert body[msg.field] == msg.value and body.get(other) is None, msg  # exactly one count


@fuzz(1500)
@given(command=commands, data=body_bytes, reply_subject=st.one_of(st.none(), st.just("_INBOX.fuzz.1")))
@example(command="like", data=b'{"username": "x", "correlation_id": "' + b"c" * 200 + b'"}', reply_subject="r")
@example(command="like", data=b'{"username": "x", "correlation_id": "' + b"c" * 201 + b'"}', reply_subject="r")
@example(command="stats", data=b'{"namespace": "abc\\n"}', reply_subject="r")
@example(command="top_liked", data=b'{"limit": 100.0}', reply_subject="r")
def test_decode_never_raises_and_answers_or_forwards(command, data, reply_subject):
    out = decode(Inbound.of(command, data, reply_subject), DEFAULT_NS)
    cid = valid_correlation_id(data) if len(data) <= MAX_BODY else None
    if isinstance(out, Reply):
        assert (out.to.subject, out.to.correlation_id) == (reply_subject, cid), out
        body = out.body
        assert (body["status"], body["error"]) == ("error", "invalid_request"), body
        assert body["correlation_id"] == cid, body
        field = body["detail"].split(":", 1)[0]
        event(f"refused: {field.split('[')[0]}")
        assert re.fullmatch(r"[a-z_]+(\[\d+\](\.[a-z_]+)?)?", field), body
        json.dumps(body, ensure_ascii=False).encode("utf-8")  # the reply can go out
        return
    assert mailbox_of(out) != "gateway", out  # a message for the actor that answers it
    assert command in gateway.COMMANDS, (command, out)
    assert len(data) <= MAX_BODY
    body = json.loads(data.decode("utf-8")) if data else {}
    assert isinstance(body, dict)
    msg = out
    event(f"forwarded: {type(msg).__name__}")
    assert (msg.reply.subject, msg.reply.correlation_id) == (reply_subject, cid), msg
    _check_forwarded(msg, body)


@fuzz(500)
@given(ns=st.one_of(nasty_text, json_scalar, st.from_regex(NS_RE, fullmatch=True)),
       command=st.sampled_from(gateway.COMMANDS))
@example(ns="abc\n", command="like")
@example(ns="x" * 65, command="stats")
def test_decode_refuses_every_bad_namespace_and_keeps_every_good_one(ns, command):
    data = json.dumps({"namespace": ns, "username": "u", "playlist_id": "p",
                       "items": [{"video_id": "v", "type": "yt"}],
                       "video_id": "v", "like_count": 1, "reason": "r"}).encode()
    out = decode(Inbound.of(command, data, "r"), DEFAULT_NS)
    good = ns is None or (isinstance(ns, str) and NS_RE.fullmatch(ns) is not None)
    if good:
        assert not isinstance(out, Reply), out
        if hasattr(out, "namespace"):
            assert out.namespace == (ns or DEFAULT_NS)
    else:
        assert isinstance(out, Reply) and out.body["error"] == "invalid_request", out
        assert out.body["detail"].startswith("namespace"), out.body


@fuzz(800)
@given(name=st.one_of(nasty_text, st.text(min_size=60, max_size=70), st.text(alphabet="ßﬁﷺＡａİ\u0301", max_size=70)),
       cid=st.one_of(st.none(), st.text(max_size=200)))
@example(name="ａｌｉｃｅ", cid=None)
@example(name="ß" * 33, cid=None)  # 33 characters, 66 after casefold
def test_like_username_is_folded_then_limited(name, cid):
    data = json.dumps({"username": name, "correlation_id": cid}).encode()
    out = decode(Inbound.of("like", data, "r"), DEFAULT_NS)
    folded = fold(name)  # docs/contract.md, written out again (support.contract_oracle)
    cats = {unicodedata.category(c) for c in folded}
    if not 1 <= len(folded) <= 64 or "Cc" in cats:
        assert isinstance(out, Reply) and out.body["detail"].startswith("username"), out
    elif cats & {"Cf", "Co", "Cn"}:  # "control characters": the contract leaves these open
        assert isinstance(out, LikeRequested) or out.body["detail"].startswith("username"), out
    else:
        msg = out
        assert isinstance(msg, LikeRequested), msg
        assert (msg.reply.subject, msg.reply.correlation_id, msg.namespace, msg.user, msg.video_id) == \
            ("r", cid, DEFAULT_NS, folded, None), msg


# --- key tokens -------------------------------------------------------------------------------

ids = st.one_of(
    st.text(min_size=1, max_size=1000),
    st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=260),  # around the 200 bound
    st.text(alphabet=st.characters(codec="utf-8", categories=["Cc", "Cf", "Co", "Lo", "So"]), min_size=1, max_size=40),
    st.text(alphabet="=./ >*", min_size=1, max_size=10),
    st.sampled_from(["=", "==", "=YQ", "a" * 200, "a" * 201, "https://media.example.com/m/abc.json", "..", "/"]),
)


@fuzz(1000)
@given(raw=ids)
@example(raw="dQw4w9WgXcQ")
@example(raw="https://media.example.com/m/abc.json")
def test_token_round_trips_and_holds_no_separator(raw):
    token = encode_token(raw)
    assert decode_token(token) == raw
    assert TOKEN_RE.fullmatch(token), token
    assert "/" not in token and "." not in token
    safe = re.fullmatch(r"[A-Za-z0-9_-]{1,200}", raw) is not None
    assert (token == raw) == safe and token.startswith("=") != safe, (raw, token)


def test_token_examples_of_the_kv_schema():
    assert encode_token("dQw4w9WgXcQ") == "dQw4w9WgXcQ"
    assert encode_token("https://media.example.com/m/abc.json") == "=aHR0cHM6Ly9tZWRpYS5leGFtcGxlLmNvbS9tL2FiYy5qc29u"
    with pytest.raises(KeyError_):
        encode_token("")


@fuzz(1000)
@given(token=st.one_of(st.text(max_size=40), st.text(alphabet="=" + string.ascii_letters + "-_", max_size=40)))
def test_decode_token_fails_only_with_value_error(token):
    # The start-up scan decodes foreign keys and skips a token on ValueError.
    try:
        assert isinstance(decode_token(token), str)
    except ValueError:
        pass


# --- key builders -----------------------------------------------------------------------------

namespaces = st.one_of(st.from_regex(NS_RE, fullmatch=True), st.sampled_from(["default", "a", "x" * 64, "-", "_"]))


def _builders(ns: str, vid: str, pid: str, user: str, ranking: str):
    """(key, parts after ns/{ns}/, the ids its tokens must decode to)."""
    return [
        (global_key(ns), ("counters", "global"), {}),
        (item_key(ns, vid), ("items", encode_token(vid)), {1: vid}),
        (playlist_key(ns, pid), ("playlists", encode_token(pid)), {1: pid}),
        (now_playing_key(ns), ("now_playing",), {}),
        (ranking_key(ns, ranking), ("rankings", f"top_{ranking}"), {}),
        (likes_key(ns, vid), ("items", encode_token(vid), "likes"), {1: vid}),
        (dedupe_key(ns, vid, user), ("dedupe", encode_token(vid), encode_token(user)), {1: vid, 2: user}),
    ]


@fuzz(800)
@given(ns=namespaces, vid=ids, pid=ids, user=ids, ranking=st.sampled_from(["liked", "played"]))
def test_every_key_stays_inside_its_namespace(ns, vid, pid, user, ranking):
    shape = re.compile(rf"ns/{re.escape(ns)}/[A-Za-z0-9_=./-]+")
    for key, parts, decoded in _builders(ns, vid, pid, user, ranking):
        assert shape.fullmatch(key), key
        assert key.startswith(f"ns/{ns}/")
        assert key.split("/") == ["ns", ns, *parts], key
        assert split_key(key) == (ns, parts)
        for i, original in decoded.items():
            token = parts[i]
            assert "/" not in token and "." not in token, token
            assert decode_token(token) == original


bad_namespaces = st.one_of(
    st.text(max_size=70).filter(lambda s: NS_RE.fullmatch(s) is None),
    st.sampled_from(["", "a.b", "a/b", ">", "*", "..", "x" * 65, "ａｌｉｃｅ", "é", "abc\n", "a b", "ns/x"]),
)


@fuzz(500)
@given(ns=bad_namespaces, vid=ids)
def test_an_invalid_namespace_raises(ns, vid):
    for build in (lambda: global_key(ns), lambda: item_key(ns, vid), lambda: playlist_key(ns, vid),
                  lambda: now_playing_key(ns), lambda: ranking_key(ns, "liked"), lambda: likes_key(ns, vid),
                  lambda: dedupe_key(ns, vid, vid)):
        with pytest.raises(KeyError_):
            build()


# --- once bugs, now fixed -----------------------------------------------------------------------------------

@pytest.mark.parametrize("data", [b"[" * 3000, b'{"a":' * 1500 + b"1" + b"}" * 1500,
                                  b'{"username": "u", "x": ' + b"[" * 3000 + b"]" * 3000 + b"}"])
def test_decode_survives_deep_nesting(data):
    assert len(data) <= MAX_BODY
    out = decode(Inbound.of("like", data, "r"), DEFAULT_NS)
    assert isinstance(out, Reply) and out.body["error"] == "invalid_request", out


@pytest.mark.parametrize("command", ["like", "now_playing", "stats"])
def test_decoded_correlation_id_can_be_sent_back(command):
    # A lone surrogate cannot be carried back in UTF-8 JSON: the request is
    # refused naming correlation_id, and the reply carries none.
    out = decode(Inbound.of(command, b'{"correlation_id": "\\ud800"}', "r"), DEFAULT_NS)
    assert isinstance(out, Reply), out
    assert out.to.correlation_id is None and out.body["correlation_id"] is None, out
    assert (out.body["error"], out.body["detail"].split(":")[0]) == ("invalid_request", "correlation_id"), out
    sent = json.dumps(out.body, ensure_ascii=False).encode("utf-8")  # raises on a lone surrogate
    assert json.loads(sent) == out.body


@given(raw=st.text(alphabet=st.characters(categories=["Cs"]), min_size=1, max_size=5) | st.just("a\ud800b"))
@settings(max_examples=20, deadline=None, database=None)
def test_token_of_an_id_with_a_lone_surrogate(raw):
    try:
        token = encode_token(raw)
    except KeyError_:
        return
    assert decode_token(token) == raw


@pytest.mark.parametrize("vid", ["視" * 1000, "\U0001F600" * 1000])
def test_ids_whose_keys_would_not_fit_a_nats_subject_are_refused(vid):
    # docs/kv-schema.md's encoding makes a 1000-character id of 3-4 byte characters
    # a 4-5 KB key, over nats-server's 4 KiB protocol line: such ids are refused
    # (invalid_request naming the field), never sent to the server.
    assert not fits_key(vid)
    out = decode(Inbound.of("like", json.dumps({"username": "u", "video_id": vid}).encode(), "r"), DEFAULT_NS)
    assert isinstance(out, Reply) and out.body["detail"].startswith("video_id"), out
    longest = "é" * 1000  # 2-byte characters still fit
    assert fits_key(longest)
    for bucket, key in [(keys.ANALYTICS_BUCKET, item_key("default", longest)),
                        (keys.LIKES_BUCKET, dedupe_key("default", longest, "u" * 64))]:
        # HPUB <subject> <reply inbox> <header bytes> <total bytes>\r\n must fit in 4096 bytes.
        assert len(f"$KV.{bucket}.{key}".encode()) + 100 <= 4096


def test_the_keys_of_10_000_namespaces_taken_in_turn_are_made_from_the_cache() -> None:
    """The spread bench likes 10 000 namespaces in turn; a key is made ~15
    times on a like's way. A cache smaller than that misses every time."""
    keys._ns.cache_clear()
    names = [f"sp{i}" for i in range(10_000)]
    for _ in range(2):
        for ns in names:
            assert keys.user_key(ns, "ann") == f"ns/{ns}/users/{keys.encode_token('ann')}"
    info = keys._ns.cache_info()
    assert (info.misses, info.hits) == (10_000, 10_000)
