"""JSONLogic conditions, compiled once with datalogic-py and evaluated many times.

datalogic-py has sharp edges that this module files down, so rules and callers cannot cut
themselves:
- a Python `str` handed to it as a rule or as data is parsed as JSON text: we always hand it
  JSON text we encoded ourselves, or a dict/list;
- its truthiness makes `{}` false: a rule's result is judged here by JsonLogic's own
  truthiness instead (false, null, 0, "" and [] are false; everything else is true);
- a missing variable compares as 0 in `<` and `>`, so `{">": [{"var": "a"}, {"var": "b"}]}` is
  true when `b` is missing: the `after` and `before` operators compare times and are false
  when either side is missing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import datalogic_py

from engine.dates import to_millis


class LogicError(Exception):
    """A condition is not valid JSONLogic, or failed while evaluating."""


def _time_comparison(compare: Callable[[int, int], bool]) -> Callable[[str], str]:
    """A custom operator over two times. datalogic-py passes custom operators their evaluated
    arguments as one JSON array text and wants JSON text back."""

    def operator(args_json: str) -> str:
        args = json.loads(args_json)
        if len(args) != 2:
            raise ValueError("needs exactly two arguments: [time, time]")
        left, right = to_millis(args[0]), to_millis(args[1])
        return "true" if left is not None and right is not None and compare(left, right) else "false"

    return operator


CUSTOM_OPERATORS: dict[str, Callable[[str], str]] = {
    # {"after": [a, b]}: a is later than b. Each side may be an SDP date object
    # ({"value": "1512974940000"}), epoch milliseconds as a number or a string of digits, or a
    # Zoho MM-DD-YYYY date. Missing or unreadable on either side: false, never an accident.
    "after": _time_comparison(lambda a, b: a > b),
    "before": _time_comparison(lambda a, b: a < b),
}

_ENGINE = datalogic_py.Engine(custom_operators=CUSTOM_OPERATORS)


def _as_input(value: Any) -> Any:
    # A bare str would be read as JSON text by datalogic-py; encode it so it stays a string.
    return json.dumps(value) if isinstance(value, str) else value


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
    problems = []
    for diagnostic in _ENGINE.check(_as_input(rule)):
        if diagnostic["severity"] != "error":
            continue
        where = f" at {diagnostic['pointer']}" if diagnostic["pointer"] else ""
        problems.append(f"{diagnostic['message']}{where}")
    return problems


@dataclass(frozen=True)
class Condition:
    """A compiled JSONLogic rule. Thread-safe and shareable, as the compiled rule under it."""

    source: Any  # the rule as written, for display
    _compiled: Any

    def evaluate(self, data: Any) -> Any:
        try:
            return self._compiled.evaluate(_as_input(data))
        except datalogic_py.DataLogicError as exc:
            raise LogicError(str(exc)) from None

    def matches(self, data: Any) -> bool:
        return is_truthy(self.evaluate(data))


def compile_condition(rule: Any) -> Condition:
    problems = check(rule)
    if problems:
        raise LogicError("; ".join(problems))
    try:
        return Condition(rule, _ENGINE.compile(_as_input(rule)))
    except datalogic_py.DataLogicError as exc:
        raise LogicError(str(exc)) from None
