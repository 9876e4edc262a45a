"""Webhook bodies read by orjson where it reads them exactly, and by the standard decoder where
it would not: the same value, of the same types, either way."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.auth import Rejected
from engine.intake import MAX_DEPTH, parse_body

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=False, allow_infinity=False), st.text())
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(st.text(max_size=5), inner, max_size=4)),
                      max_leaves=20)


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (1 and 1.0 are not the same here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b  # no NaN: the bodies are JSON


@given(st.dictionaries(st.text(max_size=5), VALUES, max_size=5))
def test_any_json_object_reads_as_the_standard_decoder_reads_it(value: dict[str, Any]) -> None:
    text = json.dumps(value)
    try:
        expected: Any = json.loads(text)
    except RecursionError:  # pragma: no cover - hypothesis does not nest this deep
        return
    try:
        got = parse_body(JSON, text.encode())
    except Rejected:
        # Refused only for what check_size refuses, which the standard reading would hold.
        return
    assert same(got, expected)


@pytest.mark.parametrize("number", [2**63, -(2**63) - 1, 2**64, 2**70, -(2**80), 10**30])
def test_integers_beyond_64_bits_stay_exact_integers(number: int) -> None:
    body = json.dumps({"milestone": {"id": "1", "budget": number}}).encode()
    got = parse_body(JSON, body)["milestone"]["budget"]
    assert got == number and type(got) is int
    form = f"input_data={json.dumps({'milestone': {'id': '1', 'budget': number}})}".encode()
    assert parse_body(FORM, form)["milestone"]["budget"] == number


@pytest.mark.parametrize(("body", "reason"), [
    (b'{"a": NaN}', "NaN is not a JSON number"),
    (b'{"a": 1e400}', None),  # the standard decoder reads it as infinity, as before
    (b'{"a": "\\ud800"}', None),  # a lone surrogate: orjson refuses, the standard decoder reads it
    (b'{"a": [1, 2', "is not valid JSON"),
])
def test_what_orjson_refuses_goes_to_the_standard_decoder(body: bytes, reason: str | None) -> None:
    if reason is None:
        assert parse_body(JSON, body) == json.loads(body)
    else:
        with pytest.raises(Rejected, match=reason):
            parse_body(JSON, body)


def test_deep_and_wide_bodies_are_still_refused() -> None:
    deep = b'{"a": ' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}"
    with pytest.raises(Rejected, match="nested too deeply"):
        parse_body(JSON, deep)
    wide = json.dumps({"k": {str(i): i for i in range(10_001)}}).encode()
    with pytest.raises(Rejected, match="too many keys"):
        parse_body(JSON, wide)


def test_a_small_body_with_brackets_in_its_strings_is_read() -> None:
    text = json.dumps({"milestone": {"id": "1", "title": "[" * 40 + ":" * 20}})
    assert parse_body(JSON, text.encode())["milestone"]["title"].startswith("[[[")
