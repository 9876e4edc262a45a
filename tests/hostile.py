"""Shared by the tests/test_hostile_*.py files: their settings and the strategies that make hostile
inputs.

Each property says what a function must do with *any* input a sender (or a rule author) can
hand it: answer with a value of the promised shape, or fail with the one exception type its
callers handle. Anything else (a RecursionError, a ValueError, an OverflowError) escapes those
callers: in the API it is a 500 instead of a 400, in a worker a crashed job.

Pure functions only: no network, no Redis. Every test bounds its examples and has no deadline.
Explicit @example cases pin hostile inputs that random generation reaches only rarely.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, note, settings
from hypothesis import strategies as st

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
