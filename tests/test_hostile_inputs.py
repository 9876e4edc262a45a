"""Property-based tests: hostile inputs thrown at the pure parts of hookrules.

Each property says what a function must do with *any* input a sender (or a rule author) can
hand it: answer with a value of the promised shape, or fail with the one exception type its
callers handle. Anything else (a RecursionError, a ValueError, an OverflowError) escapes those
callers: in the API it is a 500 instead of a 400, in a worker a crashed job.

Pure functions only: no network, no Redis. Every test bounds its examples and has no deadline.
Explicit @example cases pin hostile inputs that random generation reaches only rarely.
"""

from __future__ import annotations

import copy
import json
import math
import re
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
import pytest
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st
from jinja2.sandbox import SecurityError

from engine.changes import diff, merge
from engine.dates import normalise_dates, to_millis
from engine.intake import Rejected, find_entity, parse_body
from engine.logic import Condition, LogicError, compile_condition, is_truthy
from engine.templates import Template, TemplateError, compile_tree, render_tree

# database=None: no example database (hypothesis still keeps a self-ignored .hypothesis/constants cache).
BOUNDED = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def show(**values: Any) -> None:
    """Print the inputs of a failing example (shortened: some are megabytes long)."""
    for name, value in values.items():
        text = ascii(value)
        note(f"{name} = {text[:300]}{f'... ({len(text)} characters in all)' if len(text) > 300 else ''}")


# --------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------

# Strings a sender might try: templates, format strings, JSON-looking and number-looking text,
# control characters, a BOM, digits that are digits to str.isdigit() but not to int().
NASTY_STRINGS = [
    "",
    " ",
    "\x00",
    "\ufeff",
    "\u2028",
    "NaN",
    "-NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "-1e999",
    "0x10",
    "1_000",
    "²",  # str.isdigit() is true, int() refuses it
    "¹²³",
    "١٥١٢٩٧٤٩٤٠٠٠٠",  # Arabic-Indic digits: \d matches them
    "151297494000\n",
    " 1512974940000 ",
    "9" * 5000,  # over Python's 4300-digit int() limit
    "01-01-0000",
    "02-30-2020",
    "12-31-9999",
    "{{ 7*7 }}",
    "{% for %}",
    "{{ ''.__class__.__mro__ }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{0.__class__}",
    "%s%s%n",
    "null",
    "{}",
    "[",
    '{"id": "1"}',
]

# Lone surrogates: a Python str may hold them (json.loads("\"\\ud800\"") gives one), UTF-8 cannot.
SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)

hostile_text = st.one_of(
    st.text(max_size=20),
    st.sampled_from(NASTY_STRINGS),
    st.text(st.one_of(st.characters(), SURROGATES), max_size=10),
)

finite_floats = st.floats(allow_nan=False, allow_infinity=False)
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), finite_floats, hostile_text)


def json_values(leaves: st.SearchStrategy[Any] = json_scalars, max_leaves: int = 25) -> st.SearchStrategy[Any]:
    """hypothesis' recursive JSON: nested lists and objects of the given leaves."""
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=5),
            st.dictionaries(st.text(max_size=8), children, max_size=5),
        ),
        max_leaves=max_leaves,
    )


json_objects = st.dictionaries(st.text(max_size=8), json_values(), max_size=6)

# Values the Python JSON decoder (and so parse_body) produces beyond strict JSON: 1e999 gives
# inf, NaN and Infinity are accepted as tokens, and integers may have thousands of digits.
decoded_extras = st.sampled_from([math.inf, -math.inf, math.nan, 10**400, -(10**400), 2**64, -(2**63) - 1])


# SDP dates, real and near misses.
sdp_dates = st.builds(
    lambda value, display: {"value": value, **display},
    st.from_regex(r"\A[0-9]{12,14}\Z"),
    st.one_of(st.just({}), st.builds(lambda d: {"display_value": d}, st.text(max_size=20))),
)
near_dates = st.one_of(
    st.builds(lambda v: {"value": v}, st.from_regex(r"\A[0-9]{1,11}\Z")),  # ids such as display_id
    st.builds(lambda v: {"value": v}, st.from_regex(r"\A[0-9]{15,20}\Z")),
    st.builds(lambda v: {"value": v}, st.sampled_from(NASTY_STRINGS)),
    st.builds(lambda v: {"value": int(v)}, st.from_regex(r"\A[1-9][0-9]{11,13}\Z")),
    st.builds(lambda v, extra: {"value": v, "extra": extra}, st.from_regex(r"\A[0-9]{12,14}\Z"), json_scalars),
    st.builds(lambda v: {"display_value": v}, st.text(max_size=10)),
)
json_with_dates = json_values(st.one_of(json_scalars, sdp_dates, near_dates), max_leaves=30)


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


# --------------------------------------------------------------------------------------------
# 4. engine.changes
# --------------------------------------------------------------------------------------------

# Keys without "." here: a top-level "a.b" and the nested path "a"."b" share one name in
# diff's output by design (the same path `var` reads), which would blur the top-level checks.
plain_keys = st.text(st.characters(blacklist_characters="."), max_size=6)
entity_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), finite_floats, hostile_text),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(plain_keys, children, max_size=4)),
    max_leaves=20,
)
entities = st.dictionaries(plain_keys, entity_values, max_size=6)


@BOUNDED
@given(x=entities)
def test_diff_of_self_merge_is_empty(x: dict[str, Any]) -> None:
    show(x=x)
    merged = merge(x, x)
    assert merged == x
    assert diff(x, merged) == {}


@BOUNDED
@given(previous=st.one_of(st.none(), entities), sent=entities)
def test_merge_takes_what_was_sent(previous: dict[str, Any] | None, sent: dict[str, Any]) -> None:
    show(previous=previous, sent=sent)
    snapshot = copy.deepcopy((previous, sent))
    merged = merge(previous, sent)
    assert (previous, sent) == snapshot, "merge changed its arguments"
    for key, value in sent.items():
        assert key in merged
        if not isinstance(value, dict):
            assert merged[key] == value or merged[key] is value
        else:
            assert isinstance(merged[key], dict) and set(value) <= set(merged[key])
            if not isinstance((previous or {}).get(key), dict):
                assert merged[key] == value
    for key, value in (previous or {}).items():
        if key not in sent:
            assert merged[key] == value, "a field the webhook did not mention changed"
    # what diff names at the top level is exactly what the webhook changed
    changes = diff(previous, merged)
    top = {key for key in changes if key in merged}
    assert top == {key for key in sent if merged[key] != (previous or {}).get(key)}
    for key in top:
        assert changes[key] == {"from": (previous or {}).get(key), "to": merged[key]}


@BOUNDED
@given(x=entities)
@example(x={"a": None, "b": {"c": 1}})
def test_diff_from_nothing_names_every_field(x: dict[str, Any]) -> None:
    show(x=x)
    changes = diff(None, x)
    for key, value in x.items():
        if value is None:
            # from null to null: nothing changed, so not named (see the report)
            assert key not in changes
        else:
            assert changes[key] == {"from": None, "to": value}
            if isinstance(value, dict):
                for inner, inner_value in value.items():
                    if inner_value is not None:
                        assert changes[f"{key}.{inner}"] == {"from": None, "to": inner_value}


# --------------------------------------------------------------------------------------------
# 5. engine.templates
# --------------------------------------------------------------------------------------------

# Rule templates (written by the admin) that read payload strings (sent by anyone).
RULE_TEMPLATES = compile_tree({
    "whole": "{{ milestone.title }}",
    "text": "Title: {{ milestone.title }}!",
    "two": "{{ milestone.title }}|{{ previous.title }}",
    "changes_to": "{{ changes['title'].to }}",
    "changes_from": "was {{ changes['title']['from'] }}",
    "if": "{% if milestone.title is string %}{{ milestone.title }}{% endif %}",
    "loop": "{% for tag in milestone.tags %}[{{ tag }}]{% endfor %}",
    "concat": "{{ milestone.title ~ '' }}",
    "list": ["{{ payload.note }}", "note: {{ payload.note }}"],
    "nested": {"fields": {"description": "{{ milestone.title }}\n-- {{ event.type }}"}},
    "plain": "no template here",
})

TEMPLATE_PAYLOADS = [
    "{{ 7*7 }}",
    "{% for %}",
    "{% for x in range(3) %}{{ x }}{% endfor %}",
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ config }}",
    "{{ milestone.title }}",
    "{# comment #}",
    "{% raw %}{{ x }}{% endraw %}",
    "{{",
    "}}",
    "{0.__class__}",
    "%(x)s",
]
hostile_strings = st.one_of(
    st.sampled_from(TEMPLATE_PAYLOADS),
    hostile_text,
    st.builds(lambda a, p, b: a + p + b, st.text(max_size=5), st.sampled_from(TEMPLATE_PAYLOADS), st.text(max_size=5)),
)


@BOUNDED
@given(title=hostile_strings, old_title=hostile_strings, note=hostile_strings, tags=st.lists(hostile_strings, max_size=3))
@example(title="{{ 7*7 }}", old_title="{% for %}", note="{{ ''.__class__.__mro__ }}", tags=["{{ config }}"])
def test_payload_strings_are_never_templates(title: str, old_title: str, note: str, tags: list[str]) -> None:
    context = {
        "milestone": {"id": "1", "title": title, "tags": tags},
        "previous": {"id": "1", "title": old_title},
        "changes": {"title": {"from": old_title, "to": title}},
        "payload": {"note": note},
        "event": {"type": "milestone.updated"},
    }
    show(context=context)
    assert isinstance(RULE_TEMPLATES["whole"], Template) and RULE_TEMPLATES["whole"].native
    assert render_tree(RULE_TEMPLATES, context) == {
        "whole": title,
        "text": f"Title: {title}!",
        "two": f"{title}|{old_title}",
        "changes_to": title,
        "changes_from": f"was {old_title}",
        "if": title,
        "loop": "".join(f"[{tag}]" for tag in tags),
        "concat": title,
        "list": [note, f"note: {note}"],
        "nested": {"fields": {"description": f"{title}\n-- milestone.updated"}},
        "plain": "no template here",
    }


# Names that are not in a rule's context (nor among the sandbox's globals): StrictUndefined
# makes each an error, never an empty string or a Flask-style object.
UNDEFINED_NAMES = ["request", "config", "os", "subprocess", "__builtins__", "import", "g", "url_for",
                   "get_flashed_messages", "session", "settings", "environ"]

# Reaching Python internals from a template. The sandbox refuses the attribute (SecurityError,
# "access to attribute ... is unsafe"), or the attribute does not exist (range is the sandbox's
# safe_range, a plain function without __self__); engine.templates reports both as TemplateError.
ATTRIBUTE_ESCAPES = [
    "''.__class__",
    "''.__class__.__mro__[1].__subclasses__()",
    "().__class__.__bases__[0].__subclasses__()",
    "[].__class__.__base__",
    "(1).__class__",
    "x.__init__.__globals__",
    "milestone.__class__",
    "milestone['__class__']",
    "milestone.title|attr('__class__')",
    "milestone.title['\\x5f\\x5fclass\\x5f\\x5f']",
    "'{0.__class__}'.format(milestone)",
    "'%s' % milestone.__class__",
    "cycler.__init__.__globals__.os",
    "cycler(1).__init__.__globals__",
    "joiner.__init__.__globals__",
    "namespace.__init__.__globals__",
    "namespace(a=1).__dict__",
    "lipsum.__globals__",
    "lipsum.__globals__['os']",
    "range.__self__",
    "range.__globals__",
    "''.join.__self__",
    "dict.mro()",
    "dict.__subclasses__()",
    "self._TemplateReference__context",
    "self._TemplateReference__context.cycler",
    "self.__init__.__globals__",
    "milestone.values().__iter__",
    "milestone.title.__len__",
]

# ImmutableSandboxedEnvironment: a template cannot change the event it reads.
MUTATIONS = ["milestone.update({'title': 'x'})", "milestone.pop('id')", "milestone.setdefault('a', 1)",
             "milestone.clear()", "milestone.tags.append(1)", "milestone.tags.pop()", "milestone.tags.sort()"]

STATEMENT_ESCAPES = [
    "{% import 'os' as os %}",
    "{% include '/etc/passwd' %}",
    "{% extends '/etc/passwd' %}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{% set a = milestone.title.__class__ %}{{ a }}",
    "{% set _ = milestone.clear() %}x",
]


def _escape_context() -> dict[str, Any]:
    return {"x": "hello", "milestone": {"id": "5", "title": "t", "tags": ["a", "b"]}, "previous": None}


def _render_attempt(text: str) -> tuple[Exception, dict[str, Any]]:
    """The exception a rule template fails with, at compile or at render, and the context
    after the attempt. Returning a value at all fails the test."""
    context = _escape_context()
    try:
        compiled = compile_tree(text)
    except TemplateError as exc:
        return exc, context
    try:
        value = render_tree(compiled, context)
    except (TemplateError, SecurityError) as exc:
        return exc, context
    text_value = str(value)
    pytest.fail(f"{text!r} rendered to {text_value[:200]!r}" + (" (leaks internals)" if any(
        marker in text_value for marker in ("<class", "subprocess", "os")) else ""))


@pytest.mark.parametrize("wrap", ["{{{{ {} }}}}", "x {{{{ {} }}}} y"], ids=["native", "text"])
@pytest.mark.parametrize("name", UNDEFINED_NAMES)
def test_unknown_names_are_template_errors(name: str, wrap: str) -> None:
    exc, _ = _render_attempt(wrap.format(name))
    assert isinstance(exc, TemplateError)
    assert f"'{name}' is undefined" in str(exc)


@pytest.mark.parametrize("wrap", ["{{{{ {} }}}}", "x {{{{ {} }}}} y"], ids=["native", "text"])
@pytest.mark.parametrize("expression", ATTRIBUTE_ESCAPES)
def test_attribute_escapes_are_refused(expression: str, wrap: str) -> None:
    exc, _ = _render_attempt(wrap.format(expression))
    assert isinstance(exc, (TemplateError, SecurityError))
    message = str(exc)
    assert "is unsafe" in message or "has no attribute" in message, message


@pytest.mark.parametrize("expression", MUTATIONS)
def test_templates_cannot_mutate_the_event(expression: str) -> None:
    exc, context = _render_attempt("{{ " + expression + " }}")
    assert isinstance(exc, TemplateError) and "is unsafe" in str(exc)
    assert context == _escape_context()


@pytest.mark.parametrize("text", STATEMENT_ESCAPES)
def test_statement_escapes_fail(text: str) -> None:
    exc, context = _render_attempt(text)
    assert isinstance(exc, TemplateError)
    assert context == _escape_context()


def test_sandbox_security_error_is_a_jinja_template_error() -> None:
    # Why engine.templates reports sandbox refusals as its own TemplateError.
    assert issubclass(SecurityError, jinja2.TemplateError)


# --------------------------------------------------------------------------------------------
# 6. engine.logic
# --------------------------------------------------------------------------------------------

RULES = [
    {"var": "a.b"},
    {"var": ["a", "default"]},
    {"==": [{"var": "x"}, "y"]},
    {"===": [{"var": "x"}, "y"]},
    {"!=": [{"var": "x"}, "Closed"]},
    {">": [{"var": "a"}, {"var": "b"}]},
    {"<=": [{"var": "a"}, {"var": "b"}, {"var": "x"}]},
    {"after": [{"var": "a"}, {"var": "b"}]},
    {"before": [{"var": "a"}, {"var": "b"}]},
    {"after": [{"now": []}, {"var": "a"}]},
    {"millis": {"var": "a"}},
    {"days_between": [{"var": "a"}, {"var": "b"}]},
    {"hours_between": [{"var": "a"}, {"var": "b"}]},
    {"changed": "a.b"},
    {"changed_to": ["milestone.x", "y"]},
    {"changed_from": ["x", None]},
    {"+": [{"var": "a"}, {"var": "b"}]},
    {"*": [{"var": "a"}, {"var": "b"}]},
    {"/": [{"var": "a"}, {"var": "b"}]},
    {"%": [{"var": "a"}, {"var": "b"}]},
    {"max": [{"var": "a"}, {"var": "b"}]},
    {"cat": [{"var": "a"}, {"var": "x"}]},
    {"substr": [{"var": "x"}, 1]},
    {"in": [{"var": "x"}, {"var": "a"}]},
    {"and": [{"!!": {"var": "a"}}, {"!=": [{"var": "x"}, "Closed"]}]},
    {"or": [{"var": "a"}, {"var": "b"}]},
    {"if": [{"var": "a"}, {"var": "b"}, {"var": "x"}]},
    {"missing": ["a", "b"]},
    {"missing_some": [1, ["a", "b"]]},
    {"map": [{"var": "a"}, {"var": ""}]},
    {"filter": [{"var": "a"}, {"var": ""}]},
    {"reduce": [{"var": "a"}, {"+": [{"var": "current"}, {"var": "accumulator"}]}, 0]},
    {"some": [{"var": "a"}, {"==": [{"var": ""}, 1]}]},
    {"merge": [{"var": "a"}, {"var": "b"}]},
]
CONDITIONS = [(json.dumps(rule), compile_condition(rule)) for rule in RULES]


def condition(rule: Any) -> tuple[str, Condition]:
    return next(item for item in CONDITIONS if item[0] == json.dumps(rule))


logic_keys = st.sampled_from(["a", "b", "x", "y", "changes", "now", "milestone", "current", "accumulator", ""])
logic_leaves = st.one_of(json_scalars, decoded_extras, sdp_dates, near_dates)
logic_values = st.recursive(
    logic_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(logic_keys, st.text(max_size=4)), children, max_size=4),
    ),
    max_leaves=15,
)
logic_data = st.one_of(
    st.dictionaries(logic_keys, logic_values, max_size=5),
    st.fixed_dictionaries({"changes": st.dictionaries(st.sampled_from(["a.b", "b", "x", "milestone.x"]),
                                                      st.one_of(logic_values, st.fixed_dictionaries({"from": logic_values, "to": logic_values})))},
                          optional={"a": logic_values, "b": logic_values, "x": logic_values}),
    logic_values,
)


def is_json_value(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(is_json_value(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(key, str) and is_json_value(item) for key, item in value.items())
    return False


@BOUNDED
@given(rule=st.sampled_from(CONDITIONS), data=logic_data)
@example(rule=condition({"after": [{"var": "a"}, {"var": "b"}]}), data={"a": "²", "b": 1})
@example(rule=condition({"millis": {"var": "a"}}), data={"a": "9" * 5000})
@example(rule=condition({"hours_between": [{"var": "a"}, {"var": "b"}]}), data={"a": "1" * 400, "b": 0})
@example(rule=condition({"var": "a.b"}), data={"a": {"b": 2**64}})
@example(rule=condition({"var": "a.b"}), data={"a": "\ud800"})
@example(rule=condition({"var": "a.b"}), data="\ud800")
@example(rule=condition({"var": "a.b"}), data=10**400)
@example(rule=condition({"*": [{"var": "a"}, {"var": "b"}]}), data={"a": 1e308, "b": 1e308})
def test_conditions_on_hostile_data(rule: tuple[str, Condition], data: Any) -> None:
    source, condition = rule
    show(rule=source, data=data)
    try:
        value = condition.evaluate(data)
    except LogicError as exc:
        assert str(exc)
        with pytest.raises(LogicError):
            condition.matches(data)
        return
    assert is_json_value(value), value
    matched = condition.matches(data)
    assert type(matched) is bool
    assert matched == is_truthy(value)
