"""The logic layer: the official JsonLogic suite, and the datalogic-py pitfalls it guards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.dates import normalise_dates, to_millis
from engine.explain import judged, parts_of, said
from engine.logic import LogicError, compile_condition, data_handle, is_truthy

# Copied from ../shared/jsonlogic/official-tests.json: the suite jsonlogic.com publishes.
SUITE = json.loads((Path(__file__).parent / "data" / "jsonlogic-official-tests.json").read_text())
CASES = [case for case in SUITE if not isinstance(case, str)]


def test_suite_is_complete() -> None:
    assert len(CASES) == 277


@pytest.mark.parametrize(("rule", "data", "expected"), CASES, ids=[json.dumps(c[0])[:60] for c in CASES])
def test_official_suite(rule: object, data: object, expected: object) -> None:
    result = compile_condition(rule).evaluate(data)
    assert result == expected
    assert type(result) is type(expected) or {type(result), type(expected)} <= {int, float}


@pytest.mark.parametrize(("rule", "data", "expected"), CASES, ids=[json.dumps(c[0])[:60] for c in CASES])
def test_official_suite_on_a_data_handle_as_on_plain_data(rule: object, data: object, expected: object) -> None:
    # decide() evaluates every rule, and every part of the explanation, on one handle per event.
    condition = compile_condition(rule)
    handle = data_handle(data)
    result = condition.evaluate(handle)
    assert result == expected
    assert type(result) is type(expected) or {type(result), type(expected)} <= {int, float}
    part = parts_of(rule, condition)
    assert said(*judged(part, handle)[1:]) == said(*judged(part, data)[1:])


@pytest.mark.parametrize(("rule", "data", "expected"), CASES, ids=[json.dumps(c[0])[:60] for c in CASES])
def test_judged_part_by_part_gives_the_value_of_the_whole(rule: object, data: object, expected: object) -> None:
    # decide() takes a condition's value and its deciding part from judged(), which evaluates
    # and/or part by part: it must give what datalogic-py gives for the whole.
    condition = compile_condition(rule)
    value, _, _ = judged(parts_of(rule, condition), data_handle(data))
    assert value == expected
    assert type(value) is type(expected) or {type(value), type(expected)} <= {int, float}


JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from([0.0, 1.5, "", "0", "a"]),
                        st.just([]), st.just([0]), st.just({}), st.just({"a": 1}))


def _trees(leaves: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.recursive(leaves, lambda inner: st.one_of(
        st.builds(lambda items: {"and": items}, st.lists(inner, min_size=1, max_size=4)),
        st.builds(lambda items: {"or": items}, st.lists(inner, min_size=1, max_size=4)),
        st.builds(lambda item: {"!": [item]}, inner)), max_leaves=12)


@given(_trees(st.one_of(JSON_VALUES.filter(lambda v: not isinstance(v, dict)), st.sampled_from([{"var": "x"}, {"var": "missing"}, {"==": [{"var": "x"}, 1]}]))),
       JSON_VALUES)
def test_judged_matches_datalogic_on_any_and_or_tree(rule: object, x: object) -> None:
    condition = compile_condition(rule)
    handle = data_handle({"x": x})
    part = parts_of(rule, condition)
    try:
        whole = condition.evaluate(handle)
    except LogicError:
        with pytest.raises(LogicError):  # the same part fails, evaluated on its own
            judged(part, handle)
        return
    value, decider, decided = judged(part, handle)
    assert value == whole
    # The part shown as deciding is the part that was evaluated to that value.
    assert decider.condition.evaluate(handle) == decided


def test_the_deciding_part_is_the_first_false_part_of_an_and() -> None:
    rule = {"and": [{"==": [{"var": "a"}, 1]}, {"==": [{"var": "b"}, 2]}, {"==": [{"var": "c"}, 3]}]}
    part = parts_of(rule)
    value, decider, decided = judged(part, data_handle({"a": 1, "b": 5, "c": 3}))
    assert value is False
    assert said(decider, decided) == '{"==": [{"var": "b"}, 2]} was false'
    value, decider, decided = judged(part, data_handle({"a": 1, "b": 2, "c": 3}))
    assert value is True and decider is part


def test_python_str_is_a_string_not_json_text() -> None:
    assert compile_condition("apple").evaluate({}) == "apple"
    assert compile_condition({"var": ""}).evaluate('{"a": 1}') == '{"a": 1}'
    assert compile_condition({"var": ""}).evaluate(data_handle('{"a": 1}')) == '{"a": 1}'


def test_own_operators_read_a_data_handle() -> None:
    handle = data_handle({"changes": {"status.name": {"from": "Open", "to": "Closed"}}, "due": {"value": "1512974940000"},
                          "entity": {"kind": "milestone"}})
    assert compile_condition({"changed_to": ["milestone.status.name", "Closed"]}).evaluate(handle) is True
    assert compile_condition({"after": [{"var": "due"}, 0]}).evaluate(handle) is True


def test_data_a_handle_cannot_hold_is_a_logic_error() -> None:
    with pytest.raises(LogicError, match="out of range"):
        data_handle({"a": 2**64})


def test_empty_object_is_truthy_as_jsonlogic_says() -> None:
    assert is_truthy({}) and not is_truthy([]) and not is_truthy("") and not is_truthy(0) and not is_truthy(None)
    assert compile_condition({"var": "x"}).matches({"x": {}})


def test_unknown_operator_is_refused_at_compile_time() -> None:
    with pytest.raises(LogicError, match="frobnicate"):
        compile_condition({"frobnicate": [1]})


SDP_2017 = {"value": "1512974940000", "display_value": "Dec 11, 2017 12:19 PM"}
SDP_2001 = {"value": "999999999999"}


@pytest.mark.parametrize(
    ("left", "right", "after"),
    [
        (SDP_2017, SDP_2001, True),
        (SDP_2001, SDP_2017, False),  # as text "999999999999" > "1512974940000"
        (normalise_dates(SDP_2017), SDP_2001, True),
        ("12-31-2017", SDP_2017, True),  # Zoho MM-DD-YYYY
        ("2017-12-31", SDP_2017, True),  # YYYY-MM-DD, as a person types it in a condition
        ("2017-12-10", SDP_2017, False),
        ("2017-02-30", SDP_2017, False),  # no such day: not a time
        (1512974940001, "1512974940000", True),
        (None, SDP_2017, False),  # missing: never true
        (SDP_2017, None, False),
        ("soon", SDP_2017, False),
    ],
)
def test_after_and_before_compare_time(left: object, right: object, after: bool) -> None:
    data = {"a": left, "b": right}
    assert compile_condition({"after": [{"var": "a"}, {"var": "b"}]}).matches(data) is after
    readable = to_millis(left) is not None and to_millis(right) is not None
    expect_before = readable and not after and to_millis(left) != to_millis(right)
    assert compile_condition({"before": [{"var": "a"}, {"var": "b"}]}).matches(data) is expect_before


def test_missing_date_with_plain_greater_than_is_the_pitfall_after_avoids() -> None:
    # datalogic-py compares a missing variable as 0: this is why the docs say to use `after`.
    plain = compile_condition({">": [{"var": "projected_end.value"}, {"var": "scheduled_end_time.value"}]})
    assert plain.matches({"projected_end": {"value": 5}})
    safe = compile_condition({"after": [{"var": "projected_end"}, {"var": "scheduled_end_time"}]})
    assert not safe.matches({"projected_end": {"value": 5}})


def test_normalise_dates_turns_sdp_dates_into_numbers_but_not_ids() -> None:
    data = {"due": SDP_2017, "display_id": {"value": "131", "display_value": "PJT-131"}, "list": [SDP_2001]}
    assert normalise_dates(data) == {
        "due": {"value": 1512974940000, "display_value": "Dec 11, 2017 12:19 PM"},
        "display_id": {"value": "131", "display_value": "PJT-131"},
        "list": [{"value": 999999999999}],
    }


def test_after_needs_two_arguments() -> None:
    with pytest.raises(LogicError):
        compile_condition({"after": [1]}).evaluate({})


@pytest.mark.parametrize(("condition", "expected"), [
    ({"==": [None, 0]}, False), ({"==": [None, False]}, False), ({"==": [None, ""]}, False), ({"!=": [None, 0]}, True),
    ({"==": [None, None]}, True), ({"==": [0, False]}, True), ({"==": [{"var": "missing"}, 0]}, False),
    ({"==": [{"var": "zero"}, {"var": "missing"}]}, False), ({"==": [{"var": "missing"}, {"var": "gone"}]}, True),
    ({"==": [{"var": "one"}, "1"]}, True), ({"!=": [{"var": "missing"}, "Closed"]}, True), ({"==": [{"var": "missing"}, None]}, True),
])
def test_a_missing_value_equals_only_null_as_in_jsonlogic(condition: dict, expected: bool) -> None:
    """JsonLogic's == is JavaScript's: null == 0 is false. datalogic-py alone says true, so
    `{"==": [{"var": "fetched.open_count"}, 0]}` would pass when the count is missing."""
    assert compile_condition(condition).evaluate({"zero": 0, "one": 1}) is expected


@pytest.mark.parametrize(("condition", "expected"), [
    ({"changed": "milestone.title"}, True), ({"changed": "title"}, True),  # the kind in front is optional
    ({"changed": "project.title"}, False),  # the milestone's project's title, which did not change
    ({"changed_to": ["owner.id", "5"]}, False),  # not the milestone's own id
    ({"changed_to": ["milestone.title", "New"]}, True),
])
def test_a_changed_path_drops_only_the_events_own_kind(condition: dict, expected: bool) -> None:
    from engine.decide import rule_context
    from engine.models import Entity, Event

    before = {"id": "5", "title": "Old", "project": {"id": "3", "title": "P"}}
    now = {"id": "5", "title": "New", "project": {"id": "3", "title": "P"}}
    event = Event("evt_1", "sdp", "milestone.updated", Entity("milestone", "5", now), 0.0, None, {})
    assert compile_condition(condition).evaluate(rule_context(event, before, 0.0)) is expected
