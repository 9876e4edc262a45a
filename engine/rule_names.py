"""The names a rule reads and listens to, checked against what exists: `event.typ` is an
error (an event has a fixed set of keys); a milestone field that ServiceDesk Plus never sends
(`milestone.scheduled_end`), a source the sources file lacks and an http.request host that
HOOKRULES_HTTP_ALLOW_HOSTS does not list are warnings, since custom fields, sources and
hosts added later are legitimate. Pure: `hookrules check`, the rule loader and
/ready share it."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable
from typing import Any

from engine.reach import host_of, listed
from engine.sdp import DATE_FIELDS, MILESTONE_FIELDS
from engine.templates import paths_in

EVENT_KEYS = frozenset({"id", "source", "type", "received_at", "delivery_id"})
ENTITY_KEYS = frozenset({"kind", "id", "data"})
FIXED_KEYS = {"event": EVENT_KEYS, "entity": ENTITY_KEYS}


def var_paths(condition: Any) -> set[tuple[str, ...]]:
    """Every path a JSONLogic condition reads with `var`, split at the dots."""
    return _paths_of(condition, ("var",))


def changed_paths(condition: Any) -> set[tuple[str, ...]]:
    """The paths `changed`, `changed_to` and `changed_from` test (their first argument)."""
    return _paths_of(condition, ("changed", "changed_to", "changed_from"))


def _paths_of(condition: Any, operators: tuple[str, ...]) -> set[tuple[str, ...]]:
    if isinstance(condition, list):
        return set().union(*(_paths_of(item, operators) for item in condition)) if condition else set()
    if not isinstance(condition, dict):
        return set()
    found: set[tuple[str, ...]] = set()
    for key, value in condition.items():
        path = value[0] if isinstance(value, list) and value else value
        if key in operators and isinstance(path, str) and path and not path.split(".")[0].isdigit():
            found.add(tuple(path.split(".")))
        elif key in ITERATING and isinstance(value, list) and value:
            # Only the list is read from the event; inside, `var` names the item (and, for
            # reduce, `current` and `accumulator`); reduce's start value is the third.
            found |= _paths_of([value[0], *value[2:3]] if key == "reduce" else value[0], operators)
        else:
            found |= _paths_of(value, operators)
    return found


ITERATING = ("map", "filter", "reduce", "all", "none", "some")


def wrong_fixed_keys(paths: Iterable[tuple[str, ...]]) -> list[str]:
    """`event.typ`, `entity.kinds`: keys of objects whose keys never vary."""
    problems = []
    for path in sorted(set(paths)):
        keys = FIXED_KEYS.get(path[0])
        if keys is not None and len(path) > 1 and path[1] not in keys:
            problems.append(f"{path[0]}.{path[1]}, which {path[0]} does not have{did_you_mean(path[1], keys)}; "
                            f"it has: {', '.join(sorted(keys))}")
    return problems


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    near = difflib.get_close_matches(name, sorted(choices), n=1)
    return f" (did you mean {near[0]!r}?)" if near else ""


def rule_paths(rule: Any) -> set[tuple[str, ...]]:
    """What a rule's condition and templates (actions, fetches, scan) read."""
    paths = var_paths(rule.condition.source) if rule.condition is not None else set()
    for args in [action.args for _, action in rule.templates()] + ([rule.scan.args] if rule.scan else []):
        paths |= paths_in(args)
    return paths


def unknown_fields(rule: Any) -> list[str]:
    """Milestone fields ServiceDesk Plus never sends, read by a rule that hears only `sdp`
    milestones (the `sdp` shape takes other kinds too, whose fields are not milestones')."""
    if rule.schedule is not None or set(rule.sources) != {"sdp"} or {e.split(".")[0] for e in rule.events} != {"milestone"}:
        return []
    paths = rule_paths(rule)
    if rule.condition is not None:  # `changed: actual_end_time` may leave the kind out
        paths |= {p if p[0] == "milestone" else ("milestone", *p) for p in changed_paths(rule.condition.source)}
    warnings = []
    for root, field in sorted({p[:2] for p in paths if len(p) > 1 and p[0] in ("milestone", "previous")}):
        if field not in MILESTONE_FIELDS and not field.startswith("udf_"):
            warnings.append(f"{rule.file}:{rule.line}: rule {rule.id!r} reads {root}.{field}, a field ServiceDesk Plus "
                            f"milestones do not have{did_you_mean(field, MILESTONE_FIELDS)}: it is always missing")
    return warnings


def unheard_sources(rules: Iterable[Any], source_names: frozenset[str]) -> list[str]:
    """A warning for each `on.source` that names no source of the sources file: such a rule
    loads, and never fires. (Not an error: the source may be added to the file later.)"""
    warnings = []
    for rule in rules:
        if rule.schedule is not None:
            continue
        for wanted in rule.sources:
            if not any(fnmatch.fnmatchcase(name, wanted) for name in source_names):
                hint = did_you_mean(wanted, source_names) or f" (the sources file has: {', '.join(sorted(source_names))})"
                warnings.append(f"{rule.file}:{rule.line}: rule {rule.id!r} listens to source {wanted!r}, "
                                f"which the sources file does not have, so it never fires{hint}")
    return warnings


COMPARISONS = ("<", ">", "<=", ">=")
TIME_OPERATORS = ("days_between", "hours_between", "millis")


def risky_tests(rule: Any) -> list[str]:
    """The JSONLogic pitfalls the README lists, found in a rule's condition: a time compared
    with < or > (a missing one counts as 0), and a date object tested as true/false (an empty
    {} counts as set)."""
    if rule.condition is None:
        return []
    where = f"{rule.file}:{rule.line}: rule {rule.id!r}"
    warnings = []
    guarded = _tested_present(rule.condition.source)
    for operator, operands in _operations(rule.condition.source):
        if operator not in COMPARISONS or not _zero_passes(operator, operands):
            continue
        unguarded = sorted(_date_paths(operands) - guarded)
        if unguarded:
            warnings.append(f"{where} compares a time or duration with {operator!r}: a missing date makes it 0 there, so "
                            f"the test can pass on an event without {' or '.join(unguarded)}; test the date "
                            f"first ({{\"!!\": {{\"var\": \"<date>.value\"}}}}) or compare times with 'after'/'before'")
    for test in _tests(rule.condition.source):
        if isinstance(test, dict) and set(test) == {"var"} and _is_date_path(test["var"]) and not _ends_in_value(test["var"]):
            warnings.append(f"{where} tests {{var: {_path_text(test['var'])}}} as true or false: an empty date object {{}} "
                            f"counts as set; test its value: {{\"!!\": {{\"var\": \"{_path_text(test['var'])}.value\"}}}}")
    return warnings


# Always in what ServiceDesk Plus sends of a milestone: no guard needed.
ALWAYS_SENT = frozenset({"created_time"})


def _tested_present(condition: Any) -> set[str]:
    """The date paths the condition tests with `!!` somewhere (`{"!!": {"var": "x.value"}}`
    guards x): a comparison of only those is taken as guarded. A warning's judgment, not a
    proof: a guard inside an `or` counts too."""
    found = set()
    for operator, operands in _operations(condition):
        if operator == "!!" and operands and isinstance(operands[0], dict) and set(operands[0]) == {"var"}:
            found.add(_path_text(operands[0]["var"]).removesuffix(".value"))
    return found


def _date_paths(operands: list[Any]) -> set[str]:
    """The date fields (as paths without `.value`) a comparison's times read, but those always sent."""
    paths = set()
    for operator, argument in _operations(operands):
        if operator == "var" and _is_date_path(argument):
            path = _path_text(argument).removesuffix(".value")
            if path.split(".")[-1] not in ALWAYS_SENT:
                paths.add(path)
    return paths


def _zero_passes(operator: str, operands: list[Any]) -> bool:
    """Whether a missing time, counted as 0, makes the comparison true: a time on the small
    side (left of < or <=, right of > or >=), or times on both sides. `{">": [days, 2]}` is
    safe: a missing duration is never above 2."""
    if len(operands) < 2:
        return False
    times = [_is_time(operand) for operand in operands]
    small = times[0] if operator in ("<", "<=") else times[-1]
    return small or all(times)


def _operations(condition: Any) -> list[tuple[str, list[Any]]]:
    """Every (operator, operands) in a condition."""
    found = []
    if isinstance(condition, list):
        for item in condition:
            found += _operations(item)
    elif isinstance(condition, dict) and len(condition) == 1:
        ((operator, operands),) = condition.items()
        operands = operands if isinstance(operands, list) else [operands]
        found.append((operator, operands))
        for operand in operands:
            found += _operations(operand)
    return found


def _tests(condition: Any) -> list[Any]:
    """What a condition takes as true or false: itself, and the parts of its and/or/!/!!."""
    found = [condition]
    for operator, operands in _operations(condition):
        if operator in ("and", "or", "!", "!!"):
            found += operands
    return found


def _path_text(value: Any) -> str:
    path = value[0] if isinstance(value, list) and value else value
    return path if isinstance(path, str) else ""


def _is_date_path(value: Any) -> bool:
    """A path to a date object itself, or to its `value`."""
    steps = _path_text(value).split(".")
    return steps[-1] in DATE_FIELDS or (len(steps) > 1 and steps[-1] == "value" and steps[-2] in DATE_FIELDS)


def _ends_in_value(value: Any) -> bool:
    return _path_text(value).endswith(".value")


def _is_time(operand: Any) -> bool:
    if not isinstance(operand, dict) or len(operand) != 1:
        return False
    ((operator, argument),) = operand.items()
    return operator in TIME_OPERATORS or (operator == "var" and _is_date_path(argument))


def literal_host(url: str) -> str:
    """The host a URL template names as written ('' when a template fills it in): read as
    the sender reads it (reach.host_of)."""
    authority = url.strip().split("://", 1)[-1].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if "://" not in url or "{" in authority or "%" in authority:
        return ""
    return host_of(url.strip())


def unallowed_hosts(rule: Any, allow: tuple[str, ...]) -> list[str]:
    """http.request actions whose URL names, as written, a host HOOKRULES_HTTP_ALLOW_HOSTS does
    not list: every send would be refused."""
    warnings = []
    actions = [(f"action {n}", a) for n, a in enumerate(rule.actions, start=1)] + [(f"fetch {name}", a) for name, a in rule.fetches]
    for what, action in actions:
        url = action.args.get("url") if action.spec.name == "http.request" else None
        text = getattr(url, "text", url)  # a template, or a plain string
        host = literal_host(text) if isinstance(text, str) else ""
        if host and listed(host, allow) is None:
            warnings.append(f"{rule.file}:{rule.line}: rule {rule.id!r} {what} sends to {host}, which "
                            f"HOOKRULES_HTTP_ALLOW_HOSTS does not list ({', '.join(allow) or 'empty'}): every send is refused")
    return warnings


def shadow_scans_that_act(rules: list[Any]) -> list[str]:
    """A scheduled rule in shadow mode whose scanned items reach rules that are on: trying
    the scan in shadow mode still makes those rules act on everything it brings."""
    warnings = []
    for scan in (r for r in rules if r.schedule is not None and r.mode == "shadow"):
        acting = [r.id for r in rules if r.schedule is None and r.mode == "on" and r.hears(scan.sources[0], scan.events[0])
                  and not _excludes_type(r, scan.events[0])]
        if acting:
            warnings.append(f"{scan.file}:{scan.line}: rule {scan.id!r} is in shadow mode, but each item its scan brings "
                            f"({scan.events[0]}) also reaches {', '.join(repr(a) for a in acting)}, "
                            + ("which is on and acts on it" if len(acting) == 1 else "which are on and act on it"))
    return warnings


def _excludes_type(rule: Any, event_type: str) -> bool:
    """Whether a rule's condition keeps out events of this type, as written at its top or in
    its top `and`: `{"!=": [{"var": "event.type"}, "milestone.scanned"]}`, or `==` another type."""
    if rule.condition is None:
        return False
    source = rule.condition.source
    tests = [source] + (source["and"] if isinstance(source, dict) and isinstance(source.get("and"), list) else [])
    for test in tests:
        if not (isinstance(test, dict) and len(test) == 1):
            continue
        ((operator, operands),) = test.items()
        if operator in ("!=", "==") and isinstance(operands, list) and len(operands) == 2:
            names = [_path_text(o["var"]) for o in operands if isinstance(o, dict) and set(o) == {"var"}]
            values = [o for o in operands if isinstance(o, str)]
            if names == ["event.type"] and values and (values[0] == event_type) == (operator == "!="):
                return True
    return False


def rule_warnings(rules: Iterable[Any], source_names: frozenset[str], allow_hosts: tuple[str, ...] = ()) -> list[str]:
    """What `hookrules check` and /ready warn about a loaded rule set."""
    rules = [rule for rule in rules if rule.mode != "off"]  # a rule switched off does nothing to warn of
    by_rule = {rule.id: found for rule in rules if (found := unallowed_hosts(rule, allow_hosts))}
    hosts = [w for found in by_rule.values() for w in found]
    if not allow_hosts and len(hosts) > 1:  # one setting is missing, not a dozen things wrong
        hosts = [f"HOOKRULES_HTTP_ALLOW_HOSTS is empty, so every http.request is refused: {len(hosts)} action(s) of "
                 f"{', '.join(repr(r) for r in sorted(by_rule))} send to hosts it does not list"]
    return unheard_sources(rules, source_names) + shadow_scans_that_act(rules) + hosts + [
        w for rule in rules for w in unknown_fields(rule) + risky_tests(rule)]
