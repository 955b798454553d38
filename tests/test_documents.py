"""The claim written once per like is built without ``json.dumps``; it must be
the same bytes ``dump(claim_value(...))`` writes, for any id and user."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from kryten_likes.messages import Claim
from kryten_likes.store import documents as docs

text = st.text(min_size=1, max_size=40)


@settings(max_examples=400, deadline=None)
@given(ns=st.from_regex(r"[A-Za-z0-9_-]{1,8}", fullmatch=True), vid=text, user=text, batch=text,
       liked_at=st.floats(1.6e9, 2.0e9), window=st.floats(1.0, 1e7))
def test_claim_bytes_are_what_dump_writes(ns, vid, user, batch, liked_at, window):
    c = Claim(ns, vid, user, liked_at, liked_at + window)
    try:
        want = docs.dump(docs.claim_value(c, batch))
    except UnicodeEncodeError:  # a lone surrogate (the gateway refuses them): neither can write it
        try:
            docs.claim_bytes(c, batch)
        except UnicodeEncodeError:
            return
        raise AssertionError("claim_bytes wrote what dump cannot")
    assert docs.claim_bytes(c, batch) == want
