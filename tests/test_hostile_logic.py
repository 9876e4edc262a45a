"""Hostile data and rules for engine.logic's conditions.

See tests/hostile.py for what every property promises and how the inputs are made.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hostile import BOUNDED, decoded_extras, json_scalars, near_dates, sdp_dates, show
from hypothesis import example, given
from hypothesis import strategies as st

from engine.logic import Condition, LogicError, compile_condition, is_truthy

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
