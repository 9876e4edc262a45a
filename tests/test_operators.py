"""hookrules' own JSONLogic operators and the change tracking behind them, with edge cases."""

from __future__ import annotations

import pytest

from engine.changes import diff, merge
from engine.logic import LogicError, compile_condition

OPEN = {"id": "1", "status": {"name": "Open"}, "title": "Go live", "actual_end_time": None}
CLOSED = {"id": "1", "status": {"name": "Closed"}, "title": "Go live", "actual_end_time": {"value": 1512974940000}}


def context(previous: dict | None, sent: dict, now: int = 1_700_000_000_000) -> dict:
    current = merge(previous, sent)
    return {"milestone": current, "previous": previous, "changes": diff(previous, current), "now": now}


def matches(rule: dict, data: dict) -> bool:
    return compile_condition(rule).matches(data)


def evaluate(rule: dict, data: dict) -> object:
    return compile_condition(rule).evaluate(data)


def test_diff_names_changed_paths_and_their_parents() -> None:
    assert diff(OPEN, CLOSED) == {
        "status": {"from": {"name": "Open"}, "to": {"name": "Closed"}},
        "status.name": {"from": "Open", "to": "Closed"},
        "actual_end_time": {"from": None, "to": {"value": 1512974940000}},
        "actual_end_time.value": {"from": None, "to": 1512974940000},
    }
    assert diff(CLOSED, CLOSED) == {}


def test_first_sight_counts_every_field_as_changed_from_null() -> None:
    changes = diff(None, {"id": "1", "status": {"name": "Open"}})
    assert changes == {"id": {"from": None, "to": "1"}, "status": {"from": None, "to": {"name": "Open"}},
                       "status.name": {"from": None, "to": "Open"}}


def test_a_field_not_sent_is_unchanged_and_null_clears() -> None:
    partial = {"id": "1", "title": "Renamed"}
    assert merge(CLOSED, partial)["status"] == {"name": "Closed"}
    assert diff(CLOSED, merge(CLOSED, partial)) == {"title": {"from": "Go live", "to": "Renamed"}}
    cleared = merge(CLOSED, {"actual_end_time": None})
    assert diff(CLOSED, cleared) == {"actual_end_time": {"from": {"value": 1512974940000}, "to": None}}


@pytest.mark.parametrize(("rule", "previous", "sent", "expected"), [
    ({"changed": "milestone.actual_end_time"}, OPEN, CLOSED, True),
    ({"changed": "actual_end_time"}, OPEN, CLOSED, True),  # the kind in front is optional
    ({"changed": "milestone.actual_end_time"}, CLOSED, CLOSED, False),  # a later edit: no
    ({"changed": "milestone.actual_end_time"}, CLOSED, {"title": "x"}, False),  # not sent: unchanged
    ({"changed": "milestone.actual_end_time"}, None, CLOSED, True),  # first sight
    ({"changed": "milestone.nothing_like_it"}, OPEN, CLOSED, False),  # missing field
    ({"changed_to": ["milestone.status.name", "Closed"]}, OPEN, CLOSED, True),
    ({"changed_to": ["milestone.status.name", "Close"]}, OPEN, CLOSED, False),  # shorter string
    ({"changed_to": ["milestone.status.name", "Closed "]}, OPEN, CLOSED, False),  # longer string
    ({"changed_to": ["milestone.status.name", "Closed"]}, CLOSED, CLOSED, False),  # already Closed
    ({"changed_from": ["milestone.status.name", "Open"]}, OPEN, CLOSED, True),
    ({"changed_from": ["milestone.status.name", None]}, None, OPEN, True),  # first sight: from null
    ({"changed_from": ["milestone.actual_end_time", None]}, OPEN, CLOSED, True),  # null to a date
    ({"changed_to": ["milestone.actual_end_time", None]}, CLOSED, {"actual_end_time": None}, True),  # cleared
])
def test_change_operators(rule: dict, previous: dict | None, sent: dict, expected: bool) -> None:
    assert matches(rule, context(previous, sent)) is expected


def test_change_operators_without_changes_in_the_data_are_false() -> None:
    assert not matches({"changed": "milestone.status"}, {"milestone": OPEN})


@pytest.mark.parametrize(("rule", "expected"), [
    ({"now": []}, 1_700_000_000_000),
    ({"millis": {"var": "milestone.actual_end_time"}}, 1512974940000),
    ({"millis": "12-11-2017"}, 1512950400000),  # Zoho MM-DD-YYYY, midnight UTC
    ({"millis": 1401109494737}, 1401109494737),  # Zoho *_long
    ({"millis": {"var": "milestone.missing"}}, None),
    ({"millis": "soon"}, None),
    ({"days_between": ["12-01-2017", "12-11-2017"]}, 10.0),
    ({"days_between": ["12-11-2017", "12-01-2017"]}, -10.0),
    ({"hours_between": [{"var": "milestone.actual_end_time"}, 1512982140000]}, 2.0),
    ({"days_between": [{"var": "milestone.missing"}, {"now": []}]}, None),
    ({"days_between": [{"var": "milestone.actual_end_time"}, {"now": []}]}, (1_700_000_000_000 - 1512974940000) / 86_400_000),
])
def test_date_helpers(rule: dict, expected: object) -> None:
    assert evaluate(rule, context(None, CLOSED)) == expected


def test_overdue_and_still_open_reads_naturally() -> None:
    rule = {"and": [{"after": [{"now": []}, {"var": "milestone.scheduled_end_time"}]},
                    {"!=": [{"var": "milestone.status.name"}, "Closed"]}]}
    overdue = {**OPEN, "scheduled_end_time": {"value": "1600000000000"}}
    assert matches(rule, context(None, overdue))
    assert not matches(rule, context(None, {**overdue, "status": {"name": "Closed"}}))
    assert not matches(rule, context(None, OPEN))  # no scheduled end: not overdue


@pytest.mark.parametrize(("rule", "message"), [
    ({"changed": []}, "changed takes 1 argument(s), got 0"),
    ({"changed_to": ["milestone.status.name"]}, "changed_to takes 2 argument(s), got 1"),
    ({"changed": {"var": "x"}}, "changed needs a field path"),
    ({"days_between": [1, 2, 3]}, "days_between takes 2 argument(s), got 3"),
    ({"now": [1]}, "now takes 0 argument(s), got 1"),
    ({"and": [{"after": [1]}]}, "after takes 2 argument(s), got 1"),  # nested too
])
def test_wrong_arity_is_a_load_error(rule: dict, message: str) -> None:
    with pytest.raises(LogicError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compile_condition(rule)
