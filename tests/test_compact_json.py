"""``compact_json.dump_bytes`` writes through orjson; for every value the
daemon writes it must be the bytes the standard encoder wrote before
(``json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode()``).
What orjson refuses goes to the standard encoder. (The claim's hand-made
bytes are checked against ``dump`` in test_documents.py.)"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from kryten_likes.compact_json import dump_bytes


def _standard(v) -> bytes:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode()


scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
           | st.text(st.characters(blacklist_categories=("Cs",))))  # (lone surrogates: below)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(st.characters(blacklist_categories=("Cs",)), max_size=8), inner,
                                        max_size=4),
                      max_leaves=20)


@settings(max_examples=500, deadline=None)
@given(values)
def test_the_bytes_are_the_standard_encoders(v) -> None:
    assert dump_bytes(v) == _standard(v)


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_a_float_reads_back_the_same(x: float) -> None:
    # (orjson writes 1e16 where the standard encoder wrote 1e+16: the same number)
    assert json.loads(dump_bytes({"x": x})) == {"x": x}


@pytest.mark.parametrize("v", [2**64, -(2**63) - 1, {1: "a"}, {None: 1}, [10**30]])
def test_what_orjson_refuses_the_standard_encoder_writes(v) -> None:
    assert dump_bytes(v) == _standard(v)


def test_a_lone_surrogate_raises_unicode_encode_error_as_before() -> None:
    with pytest.raises(UnicodeEncodeError):
        dump_bytes({"username": "a\ud800b"})
