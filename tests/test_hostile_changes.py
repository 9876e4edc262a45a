"""Hostile inputs to engine.changes: merge and diff.

See tests/hostile.py for what every property promises and how the inputs are made.
"""

from __future__ import annotations

import copy
from typing import Any

from hostile import BOUNDED, finite_floats, hostile_text, show
from hypothesis import example, given
from hypothesis import strategies as st

from engine.changes import diff, merge

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
