"""hookrules' own JSONLogic operators, and the rewriting that gives them what they need.

datalogic-py hands a custom operator only its evaluated arguments, as JSON text, never the
data. Operators about the event therefore get what they need as a hidden argument: a rule's
`{"changed": "status.name"}` is compiled as `{"changed": [{"val": ["changes", "status.name"]}]}`
(the one change it asks about, see change_at), and `{"now": []}` as `{"var": "now"}`. Rule
authors never see the rewriting.

Operators (a missing or unreadable value makes a comparison false and a number null, never an
accident):
- `{"changed": "milestone.status"}`: the field (or anything under it) changed in this event;
  the path is written as in `var`, the kind in front optional.
- `{"changed_to": ["path", value]}`, `{"changed_from": ["path", value]}`: it changed, to / from value.
- `{"after": [a, b]}`, `{"before": [a, b]}`: a is later / earlier than b.
- `{"now": []}`: the time the event is decided, epoch milliseconds.
- `{"millis": x}`: a date as epoch milliseconds (SDP date object, Zoho MM-DD-YYYY, `*_long`, digits).
- `{"days_between": [a, b]}`, `{"hours_between": [a, b]}`: b minus a, in days / hours (fractional).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson

from engine.dates import to_millis

DAY_MS = 86_400_000
HOUR_MS = 3_600_000

# Operators that read the event's changes; the rewriting passes {"var": "changes"} first.
NEEDS_CHANGES = {"changed": 1, "changed_to": 2, "changed_from": 2}
ARITY = {**NEEDS_CHANGES, "after": 2, "before": 2, "now": 0, "millis": 1, "days_between": 2, "hours_between": 2}


class OperatorError(ValueError):
    """An operator is written with the wrong number or kind of arguments."""


def _json_operator(function: Callable[..., Any]) -> Callable[[str], str]:
    # orjson both ways: these run for every operator of every condition of every event. Its
    # float reading of integers over 64 bits changes nothing here: no date is that large.
    def operator(args_json: str) -> str:
        return orjson.dumps(function(*orjson.loads(args_json))).decode()

    return operator


def changed(found: Any) -> bool:
    return isinstance(found, dict)


def changed_to(found: Any, value: Any) -> bool:
    return isinstance(found, dict) and found.get("to") == value


def changed_from(found: Any, value: Any) -> bool:
    return isinstance(found, dict) and found.get("from") == value


def change_at(path: str) -> Any:
    """The JSONLogic that reads the change at `path`, written as in `var` ("milestone.status.name")
    or relative to the entity ("status.name"): `changes` is keyed relative to the entity, by
    dotted paths, so each is read as one key (`val` takes path segments; `var` would split the
    dots). Only that change reaches the operator, not every change of the event."""
    whole = {"val": ["changes", path]}
    if "." not in path:
        return whole
    # "milestone.status.name" is "status.name" of the entity, but only when "milestone" is the
    # event's kind: "project.title" of a milestone is its project's title, not its own.
    # (Data without an entity, as a hand-made context may be, keeps the older reading.)
    kind, rest = path.split(".", 1)
    ours = {"in": [{"var": "entity.kind"}, [kind, None]]}
    return {"??": [whole, {"if": [ours, {"val": ["changes", rest]}, None]}]}


def after(left: Any, right: Any) -> bool:
    a, b = to_millis(left), to_millis(right)
    return a is not None and b is not None and a > b


def before(left: Any, right: Any) -> bool:
    a, b = to_millis(left), to_millis(right)
    return a is not None and b is not None and a < b


def _between(unit_ms: int) -> Callable[[Any, Any], float | None]:
    def between(start: Any, end: Any) -> float | None:
        a, b = to_millis(start), to_millis(end)
        return None if a is None or b is None else (b - a) / unit_ms

    return between


CUSTOM_OPERATORS: dict[str, Callable[[str], str]] = {
    name: _json_operator(function)
    for name, function in {
        "changed": changed,
        "changed_to": changed_to,
        "changed_from": changed_from,
        "after": after,
        "before": before,
        "millis": to_millis,
        "days_between": _between(DAY_MS),
        "hours_between": _between(HOUR_MS),
    }.items()
}


def null_safe_equal(left: Any, right: Any) -> Any:
    """`==` as JsonLogic means it (JavaScript's loose equality): null equals only null.
    datalogic-py counts null as 0, false and "", so a missing field would equal 0: a rule
    testing `open milestones == 0` would pass when the count is missing. Written with
    datalogic's own operators, so it stays compiled: a literal side needs one test more."""
    literal = (str, int, float, bool)
    for value, other in ((left, right), (right, left)):
        if value is None:
            return {"===": [other, None]}
        if isinstance(value, literal):
            return {"and": [{"!==": [other, None]}, {"==": [left, right]}]}
    return {"if": [{"===": [left, None]}, {"===": [right, None]}, {"===": [right, None]}, False, {"==": [left, right]}]}


def rewrite(rule: Any) -> Any:
    """The rule as datalogic-py compiles it: arities checked, hidden arguments added."""
    if isinstance(rule, list):
        return [rewrite(item) for item in rule]
    if not isinstance(rule, dict) or len(rule) != 1:
        return {key: rewrite(value) for key, value in rule.items()} if isinstance(rule, dict) else rule
    ((name, args),) = rule.items()
    if name in ("==", "!=") and isinstance(args, list) and len(args) == 2:
        equal = null_safe_equal(rewrite(args[0]), rewrite(args[1]))
        return equal if name == "==" else {"!": equal}
    if name not in ARITY:
        return {name: rewrite(args)}
    args = args if isinstance(args, list) else [args]
    if len(args) != ARITY[name]:
        raise OperatorError(f"{name} takes {ARITY[name]} argument(s), got {len(args)}: {json.dumps(rule)}")
    if name == "now":
        return {"var": "now"}
    if name in NEEDS_CHANGES and not isinstance(args[0], str):
        raise OperatorError(f"{name} needs a field path such as \"status.name\" first, got {json.dumps(args[0])}")
    if name in NEEDS_CHANGES:
        return {name: [change_at(args[0]), *(rewrite(arg) for arg in args[1:])]}
    return {name: [rewrite(arg) for arg in args]}
