"""Why a condition came out as it did: the part of it that decided. For the audit trail, dry
runs and examples.

For `and`, the first part that is false decides a no (and the whole decides a yes); for `or`,
the first part that is true decides a yes; `!` turns its part around. The search goes down
into the deciding part, so the answer is the smallest piece an author can look at:

    {"!=": [{"var": "milestone.status.name"}, "Closed"]} was false

Every decision records this, so the parts are compiled once, when the rule loads (`Part`), and
`judged` evaluates an `and`/`or` part by part, as datalogic-py would, so the condition's value
and the deciding part come out of one pass: no part is evaluated twice. Parts are evaluated on
the DataHandle decide() made of the event's data (logic.data_handle): an explanation converts
no data of its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from engine.logic import Condition, compile_condition, is_truthy

_DECIDED_BY_PARTS = {"and", "or", "!", "!!"}


@dataclass(frozen=True)
class Part:
    source: Any  # as written
    condition: Condition
    operator: str | None = None  # and | or | ! | !!: one of the children decides
    children: tuple[Part, ...] = ()
    # An and/or written with a list of parts: judged part by part (a lone part is not a list,
    # and is left to datalogic-py as written).
    stepwise: bool = False
    # The source as JSON, made once at load: every decision shows a part, and encoding it cost
    # more than evaluating it. (repr for what JSON cannot hold, rather than failing a decision.)
    shown: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shown", json.dumps(self.source, default=repr))


def parts_of(source: Any, compiled: Condition | None = None) -> Part:
    """The condition and its and/or/! parts, compiled (`compiled`: the whole, if already)."""
    condition = compiled or compile_condition(source)
    if isinstance(source, dict) and len(source) == 1:
        ((operator, args),) = source.items()
        items = args if isinstance(args, list) else [args]
        if operator in _DECIDED_BY_PARTS and items and (operator in ("and", "or") or len(items) == 1):
            return Part(source, condition, operator, tuple(parts_of(item) for item in items),
                        stepwise=operator in ("and", "or") and isinstance(args, list))
    return Part(source, condition)


def judged(part: Part, data: Any) -> tuple[Any, Part, Any]:
    """(the condition's value, the smallest part that decided it, that part's value), each part
    evaluated at most once. An `and` is the first part datalogic-py counts as false, else the
    last; an `or` the first it counts as true, else the last: the value datalogic-py gives for
    the whole (tests/test_logic.py holds the two side by side). Raises LogicError."""
    if not part.stepwise:
        value = part.condition.evaluate(data)
        decider, decided = _decider(part, data, value)
        return value, decider, decided
    value: Any = None
    for child in part.children:
        value, decider, decided = judged(child, data)
        if _datalogic_truthy(value) == (part.operator == "or"):
            return value, decider, decided
    return value, part, value


def _datalogic_truthy(value: Any) -> bool:
    # datalogic-py's own truthiness inside and/or, which differs from JsonLogic's in one
    # place: {} is false. Following it keeps the value exactly what the whole would give.
    return is_truthy(value) and value != {}


def _decider(part: Part, data: Any, value: Any) -> tuple[Part, Any]:
    if part.operator in ("and", "or"):
        for child in part.children:
            child_value = child.condition.evaluate(data)
            if is_truthy(child_value) == (part.operator == "or"):
                return _decider(child, data, child_value)
    elif part.operator in ("!", "!!"):
        child = part.children[0]
        return _decider(child, data, child.condition.evaluate(data))
    return part, value


def said(decider: Part, decided: Any) -> str:
    """One line: which part decided, and what it was."""
    return f"{decider.shown} was {_shown(decided)}"


def _shown(value: Any) -> str:
    # Most deciding values are true, false or null, which json.dumps encodes slower than a
    # condition evaluates: written out here. Same text as json.dumps.
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    return json.dumps(value)
