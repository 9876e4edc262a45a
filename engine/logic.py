"""JSONLogic conditions, compiled once with datalogic-py and evaluated many times.

datalogic-py has sharp edges that this module files down, so rules and callers cannot cut
themselves:
- a Python `str` handed to it as a rule or as data is parsed as JSON text: we always hand it
  JSON text we encoded ourselves, or a dict/list;
- each evaluate of a dict copies the whole dict into its own form first, which costs far more
  than evaluating a condition: decide() copies an event's data once (`data_handle`) and
  evaluates every rule, and every part of the explanation, on that copy;
- its truthiness makes `{}` false: a rule's result is judged here by JsonLogic's own
  truthiness instead (false, null, 0, "" and [] are false; everything else is true);
- a missing variable compares as 0 in `<` and `>`, so `{">": [{"var": "a"}, {"var": "b"}]}` is
  true when `b` is missing: the `after` and `before` operators compare times and are false
  when either side is missing.
hookrules' own operators (changed, after, days_between, ...) are in operators.py.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any

import datalogic_py

from engine.operators import CUSTOM_OPERATORS, OperatorError, rewrite


# Data already copied into datalogic-py's form; Condition.evaluate takes it as well as plain data.
DataHandle = datalogic_py.DataHandle


class LogicError(Exception):
    """A condition is not valid JSONLogic, or failed while evaluating. `pointer` says where in
    the condition, when known (a JSON pointer such as /and/1)."""

    def __init__(self, message: str, pointer: str | None = None) -> None:
        super().__init__(message)
        self.pointer = pointer


# The operators a condition may use: JsonLogic's (as datalogic-py runs them) and ours. Only
# for suggestions: datalogic-py itself refuses what it does not know.
STANDARD_OPERATORS = (
    "var", "missing", "missing_some", "if", "?:", "==", "===", "!=", "!==", "!", "!!", "or", "and",
    ">", ">=", "<", "<=", "max", "min", "+", "-", "*", "/", "%", "map", "reduce", "filter", "all",
    "none", "some", "merge", "in", "cat", "substr",
)
# Words people reach for, and the operator that does it.
ALIASES = {"contains": "in", "contain": "in", "includes": "in", "equals": "==", "eq": "==", "ne": "!=",
           "not": "!", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "concat": "cat", "exists": "!!"}


_ENGINE = datalogic_py.Engine(custom_operators=CUSTOM_OPERATORS)


def _as_input(value: Any) -> Any:
    # A bare str would be read as JSON text by datalogic-py; encode it so it stays a string.
    return json.dumps(value) if isinstance(value, str) else value


def data_handle(data: Any) -> DataHandle:
    """`data` copied once into datalogic-py's form, to evaluate many conditions on. Raises
    LogicError for what JSON cannot hold (a number past 64 bits, a lone surrogate, a key that
    is not a str), as evaluating the plain data would."""
    try:
        return DataHandle(_as_input(data))
    except datalogic_py.DataLogicError as exc:
        raise LogicError(str(exc)) from None


def is_truthy(value: Any) -> bool:
    """JsonLogic truthiness (jsonlogic.com/truthy.html): {} is true, unlike datalogic-py's."""
    if value is None or value is False:
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value != 0
    if isinstance(value, (str, list)):
        return len(value) > 0
    return True


def check(rule: Any) -> list[str]:
    """Every problem datalogic-py can see in a rule before it runs, as readable lines."""
    return [line for line, _ in _diagnose(rule)]


def _diagnose(rule: Any) -> list[tuple[str, str | None]]:
    """(readable line, JSON pointer) for each error datalogic-py sees before the rule runs."""
    found = []
    for diagnostic in _ENGINE.check(_as_input(rule)):
        if diagnostic["severity"] != "error":
            continue
        where = f" at {diagnostic['pointer']}" if diagnostic["pointer"] else ""
        found.append((f"{diagnostic['message']}{where}{_suggestion(diagnostic)}", diagnostic["pointer"] or None))
    return found


def _suggestion(diagnostic: dict[str, Any]) -> str:
    operator = diagnostic.get("operator")
    if diagnostic.get("code") != "UnknownOperator" or not isinstance(operator, str) or "did you mean" in diagnostic["message"]:
        return ""
    known = STANDARD_OPERATORS + tuple(CUSTOM_OPERATORS)
    near = [ALIASES[operator.lower()]] if operator.lower() in ALIASES else difflib.get_close_matches(operator, known, n=1)
    return f" (did you mean `{near[0]}`?)" if near else ""


@dataclass(frozen=True)
class Condition:
    """A compiled JSONLogic rule. Thread-safe and shareable, as the compiled rule under it."""

    source: Any  # the rule as written, for display
    _compiled: Any

    def evaluate(self, data: Any) -> Any:
        """The value of the condition on `data`: a DataHandle (see data_handle), or plain data."""
        try:
            if isinstance(data, DataHandle):
                return self._compiled.evaluate_data(data)
            return self._compiled.evaluate(_as_input(data))
        except datalogic_py.DataLogicError as exc:
            raise LogicError(str(exc) + _evaluation_hint(str(exc))) from None

    def matches(self, data: Any) -> bool:
        return is_truthy(self.evaluate(data))


def _evaluation_hint(message: str) -> str:
    """datalogic-py's NaN errors mostly mean an object compared with a plain value."""
    if "NaN" in message:
        return (" (a comparison met a value that is not a number or text, usually an object such as"
                " milestone.status: compare a field inside it, e.g. milestone.status.name)")
    return ""


def compile_condition(rule: Any) -> Condition:
    try:
        compiled_form = rewrite(rule)
    except OperatorError as exc:
        raise LogicError(str(exc)) from None
    problems = _diagnose(compiled_form)
    if problems:
        raise LogicError("; ".join(line for line, _ in problems), pointer=problems[0][1])
    try:
        return Condition(rule, _ENGINE.compile(_as_input(compiled_form)))
    except datalogic_py.DataLogicError as exc:
        raise LogicError(str(exc)) from None
