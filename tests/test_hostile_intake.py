"""Hostile inputs to intake: parse_body, find_entity and the date handling of engine.dates.

See tests/hostile.py for what every property promises and how the inputs are made.
"""

from __future__ import annotations

import copy
import json
import math
import re
from typing import Any
from urllib.parse import quote, urlencode

from hostile import (
    BOUNDED,
    decoded_extras,
    hostile_text,
    json_objects,
    json_scalars,
    json_values,
    json_with_dates,
    show,
)
from hypothesis import example, given
from hypothesis import strategies as st

from engine.dates import normalise_dates, to_millis
from engine.intake import Rejected, find_entity, parse_body

# --------------------------------------------------------------------------------------------
# 1. engine.intake.parse_body
# --------------------------------------------------------------------------------------------

JSON_TYPES = ["application/json", "application/json; charset=utf-8", "APPLICATION/JSON", " application/json ;x=y",
              "application/vnd.api+json", "application/problem+json"]
FORM_TYPES = ["application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=utf-8"]
OTHER_TYPES = ["", ";", "text/plain", "multipart/form-data; boundary=x", "application/xml", "*/*", "json", "\x00"]
content_types = st.one_of(st.sampled_from(JSON_TYPES + FORM_TYPES + OTHER_TYPES), st.text(max_size=40))


def check_parse_body(content_type: str, body: bytes) -> dict[str, Any] | None:
    """The property: a dict, or Rejected with a status a client error allows and a reason."""
    show(content_type=content_type, body=body)
    try:
        result = parse_body(content_type, body)
    except Rejected as exc:
        assert exc.status in {400, 413, 415}, exc.status
        assert isinstance(exc.reason, str) and exc.reason.strip(), exc.reason
        return None
    assert isinstance(result, dict), type(result)
    return result


@BOUNDED
@given(content_type=content_types, body=st.binary(max_size=300))
def test_parse_body_arbitrary_bytes_and_content_types(content_type: str, body: bytes) -> None:
    check_parse_body(content_type, body)


@BOUNDED
@given(
    content_type=st.sampled_from(JSON_TYPES),
    value=st.one_of(json_values(st.one_of(json_scalars, decoded_extras.filter(lambda v: not isinstance(v, int))), 40), json_objects),
    ensure_ascii=st.booleans(),
)
def test_parse_body_json_texts(content_type: str, value: Any, ensure_ascii: bool) -> None:
    # surrogatepass: a lone surrogate becomes bytes that are not UTF-8, which must be a 400.
    body = json.dumps(value, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")
    result = check_parse_body(content_type, body)
    if isinstance(value, dict) and result is not None:
        assert json.dumps(result, sort_keys=True) == json.dumps(value, sort_keys=True)


def _nest(shape: list[str], core: str) -> str:
    opening = "".join("[" if s == "l" else '{"k":' for s in shape)
    closing = "".join("]" if s == "l" else "}" for s in reversed(shape))
    return opening + core + closing


hostile_json_texts = st.one_of(
    # deep nesting, closed and unclosed
    st.integers(1, 50_000).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 50_000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.integers(1, 50_000).map(lambda n: "[" * n),
    st.lists(st.sampled_from("lo"), min_size=1, max_size=3000).map(lambda shape: '{"x": ' + _nest(shape, "0") + "}"),
    # numbers with many digits, huge exponents, NaN-like tokens
    st.integers(1, 12_000).map(lambda n: '{"n": ' + "9" * n + "}"),
    st.integers(1, 12_000).map(lambda n: '{"n": -' + "1" * n + "}"),
    st.integers(1, 12_000).map(lambda n: '{"n": 1' + "0" * n + ".5e-3}"),
    st.sampled_from(['{"n": 1e999}', '{"n": -1e999}', '{"n": NaN}', '{"n": Infinity}', '{"n": -Infinity}',
                     '{"n": 1e-999}', '{"n": -0}', '{"n": 01}', '{"n": .5}', '{"n": +1}']),
    # escapes: lone and reversed surrogates, NUL, overlong \u
    st.sampled_from(['{"s": "\\ud800"}', '{"s": "\\udfff\\ud800"}', '{"\\ud83d": 1}', '{"s": "\\u0000"}',
                     '{"s": "\\u12"}', '{"s": "\\x41"}', '{"s": "\t"}']),
    # framing: BOM, garbage around, duplicate keys, not an object
    st.sampled_from(['\ufeff{}', '{} {}', '{}x', '{"a":1,"a":2}', '[]', '"text"', '1', 'null', '', ' ', '{', '}', '{"a"}']),
    st.builds(lambda k, v: json.dumps({k: v}), hostile_text, hostile_text),
    # many keys, many items (the engine bounds the keys of a body)
    st.integers(9_990, 10_010).map(lambda n: json.dumps({"m": {f"k{i}": i for i in range(n)}})),
    st.integers(1, 200_000).map(lambda n: '{"l": [' + ",".join(["{}"] * n) + "]}"),
)


@BOUNDED
@given(content_type=st.sampled_from(JSON_TYPES), text=hostile_json_texts)
@example(content_type="application/json", text="[" * 100_000 + "]" * 100_000)  # RecursionError
@example(content_type="application/json", text='{"n": ' + "1" * 4301 + "}")  # ValueError: 4300-digit limit
def test_parse_body_hostile_json(content_type: str, text: str) -> None:
    check_parse_body(content_type, text.encode("utf-8", "surrogatepass"))


def _form(fields: list[tuple[str, str]]) -> bytes:
    return urlencode(fields).encode("ascii")


form_values = st.one_of(
    json_objects.map(json.dumps),
    hostile_json_texts,
    hostile_text.map(lambda s: s.encode("utf-8", "surrogatepass").decode("utf-8", "replace")),
)
form_bodies = st.one_of(
    # with input_data, possibly repeated, possibly among other fields
    st.builds(
        lambda before, data, after: _form(before + [("input_data", d) for d in data] + after),
        st.lists(st.tuples(st.sampled_from(["a", "format", "INPUT_DATA", "input_data "]), st.text(max_size=10)), max_size=2),
        st.lists(form_values, min_size=1, max_size=2),
        st.lists(st.tuples(st.text(max_size=8), st.text(max_size=10)), max_size=2),
    ),
    # without input_data
    st.lists(st.tuples(st.text(max_size=10).filter(lambda k: k != "input_data"), form_values), max_size=3).map(_form),
    # hand-made, malformed
    st.sampled_from([b"input_data", b"input_data=", b"input_data=%", b"input_data=%ZZ", b"input_data=%ff%fe",
                     b"input_data=%7B%7D%ff", b"&&&=&", b"=", b"input_data=%7B%22a%22%3A1%7D&input_data=x",
                     b"input_data=" + quote("[" * 5000).encode(), b"input_data=%7B%22n%22%3A" + b"9" * 5000 + b"%7D"]),
    st.binary(max_size=100).map(lambda raw: b"input_data=" + raw),
)


@BOUNDED
@given(content_type=st.sampled_from(FORM_TYPES), body=form_bodies)
@example(content_type="application/x-www-form-urlencoded", body=b"input_data=%7B%22n%22%3A" + b"9" * 5000 + b"%7D")
def test_parse_body_form_bodies(content_type: str, body: bytes) -> None:
    check_parse_body(content_type, body)


# --------------------------------------------------------------------------------------------
# 2. engine.intake.find_entity
# --------------------------------------------------------------------------------------------

NOT_ENTITIES = {"response_status", "list_info"}
ENTITY_KEYS = ["milestone", "project", "task", "response_status", "list_info", "id", ""]

ids = st.one_of(st.sampled_from(["", None, "0", 0, "  ", [], {}, False, "2007594064055157"]), json_values(max_leaves=4))
entity_like = st.builds(
    lambda rest, ident: {**rest, "id": ident},
    st.dictionaries(st.text(max_size=6), json_values(max_leaves=4), max_size=3),
    ids,
)
bodies = st.dictionaries(
    st.one_of(st.sampled_from(ENTITY_KEYS), st.text(max_size=8)),
    st.one_of(entity_like, json_values(max_leaves=6)),
    max_size=4,
)


def is_empty_id(ident: Any) -> bool:
    return ident is None or (isinstance(ident, (str, list, dict)) and len(ident) == 0)


@BOUNDED
@given(body=bodies)
@example(body={"milestone": {"id": []}})  # an empty list accepted as an entity id ("[]")
@example(body={"milestone": {"id": {}}})  # an empty object accepted as an entity id ("{}")
def test_find_entity(body: dict[str, Any]) -> None:
    show(body=body)
    try:
        kind, obj = find_entity(body)
    except Rejected as exc:
        assert exc.status == 400
        assert isinstance(exc.reason, str) and exc.reason.strip()
        return
    assert isinstance(kind, str) and kind in body and kind not in NOT_ENTITIES
    assert obj is body[kind] and isinstance(obj, dict)
    assert "id" in obj and not is_empty_id(obj["id"]), f"entity {kind!r} accepted with the empty id {obj['id']!r}"
    # one entity per webhook: no other object beside it carries an id
    others = [k for k, v in body.items() if k != kind and k not in NOT_ENTITIES and isinstance(v, dict)
              and v.get("id") not in (None, "")]
    assert others == []


# --------------------------------------------------------------------------------------------
# 3. engine.dates
# --------------------------------------------------------------------------------------------

_ASCII_DATE = re.compile(r"[0-9]{12,14}")


def looks_like_sdp_date(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and "value" in value
        and set(value) <= {"value", "display_value"}
        and isinstance(value["value"], str)
        and _ASCII_DATE.fullmatch(value["value"]) is not None
    )


def check_normalised(before: Any, after: Any) -> None:
    """Same keys and lengths at every level; only a date object's `value` changes, and only to
    the integer it spells; every SDP date has an int value afterwards."""
    if isinstance(before, dict):
        assert isinstance(after, dict) and list(after) == list(before)
        if looks_like_sdp_date(before):
            assert type(after["value"]) is int and after["value"] == int(before["value"])
        for key, item in before.items():
            if key == "value" and set(before) <= {"value", "display_value"} and isinstance(item, str) and after[key] != item:
                # a date value, converted (the engine's \d also takes non-ASCII decimal digits, and
                # its $ a final newline): 12 to 14 decimal digits, now the number they spell
                assert item.strip().isdecimal() and 12 <= len(item.strip()) <= 14, item
                assert type(after[key]) is int and after[key] == int(item)
            else:
                check_normalised(item, after[key])
    elif isinstance(before, list):
        assert isinstance(after, list) and len(after) == len(before)
        for old, new in zip(before, after):
            check_normalised(old, new)
    else:
        assert type(after) is type(before) and after == before


@BOUNDED
@given(data=json_with_dates)
@example(data={"milestone": {"due": {"value": "1512974940000", "display_value": "Dec 11, 2017"}, "display_id": {"value": "131"}}})
def test_normalise_dates(data: Any) -> None:
    show(data=data)
    original = copy.deepcopy(data)
    once = normalise_dates(data)
    assert data == original, "normalise_dates changed its input"
    check_normalised(data, once)
    assert normalise_dates(once) == once, "normalising twice differs from once"


@BOUNDED
@given(value=st.one_of(hostile_text, decoded_extras, st.builds(lambda v: {"value": v}, st.one_of(hostile_text, decoded_extras)),
                       json_with_dates))
@example(value="²")  # str.isdigit() but not int(): ValueError
@example(value="9" * 4301)  # int() digit limit: ValueError
@example(value=math.inf)  # json.loads("1e999"): OverflowError
@example(value=math.nan)  # json.loads("NaN"): ValueError
def test_to_millis(value: Any) -> None:
    show(value=value)
    result = to_millis(value)
    assert result is None or type(result) is int
