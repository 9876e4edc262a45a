"""Why a condition came out as it did: the part of it that decided. For dry runs and examples.

For `and`, the first part that is false decides a no (and the whole decides a yes); for `or`,
the first part that is true decides a yes; `!` turns its part around. The search goes down
into the deciding part, so the answer is the smallest piece an author can look at:

    {"!=": [{"var": "milestone.status.name"}, "Closed"]} was false
"""

from __future__ import annotations

import functools
import json
from typing import Any

from engine.logic import Condition, compile_condition, is_truthy


@functools.lru_cache(maxsize=4096)
def _compiled(text: str) -> Condition:
    # Explanations are worked out for every decision: compile each part once, not per event.
    return compile_condition(json.loads(text))


def _value(condition: Any, data: Any) -> Any:
    return _compiled(json.dumps(condition, sort_keys=True)).evaluate(data)


def deciding_part(condition: Any, data: Any) -> tuple[Any, Any]:
    """(the smallest part of `condition` that decided its outcome, that part's value)."""
    if not isinstance(condition, dict) or len(condition) != 1:
        return condition, _value(condition, data)
    ((operator, args),) = condition.items()
    parts = args if isinstance(args, list) else [args]
    if operator == "and" and parts:
        for part in parts:
            if not is_truthy(_value(part, data)):
                return deciding_part(part, data)
    elif operator == "or" and parts:
        for part in parts:
            if is_truthy(_value(part, data)):
                return deciding_part(part, data)
    elif operator in ("!", "!!") and len(parts) == 1:
        return deciding_part(parts[0], data)
    return condition, _value(condition, data)


def because(condition: Any, data: Any) -> str:
    """One line: which part decided, and what it was."""
    part, value = deciding_part(condition, data)
    return f"{json.dumps(part)} was {json.dumps(value)}"
