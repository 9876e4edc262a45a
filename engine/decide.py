"""decide(): from an event and the rules to what should be sent. Pure: no I/O, no clock.

The worker, the tests and (later) the CLI's dry run all call this one function, so what a test
or a dry run shows is what production does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from engine.actions import ActionError
from engine.changes import diff, merge
from engine.explain import judged, said
from engine.logic import DataHandle, LogicError, data_handle, is_truthy
from engine.models import Decision, Event, PlannedAction, RuleResult
from engine.rules import Rule, Ruleset
from engine.templates import TemplateError, render_tree


def rule_context(event: Event, previous: dict[str, Any] | None, now: float) -> dict[str, Any]:
    """What a rule's `when` and templates can read: the event; the entity as it now stands
    (what was known, updated with what this event sent) under its kind (`milestone`) and as
    `entity.data`; `previous` (the entity before this event, or null the first time);
    `changes` (see changes.py); `now` (epoch ms)."""
    current = merge(previous, event.entity.data)
    seen = replace(event, entity=replace(event.entity, data=current))
    return {**seen.context(), "previous": previous, "changes": diff(previous, current), "now": int(now * 1000)}


def plan(rule: Rule, index: int, context: dict[str, Any], ruleset: Ruleset) -> PlannedAction:
    action = rule.actions[index]
    try:
        args = render_tree(action.args, context)
        request = action.spec.build(args, ruleset.targets)
    except (TemplateError, ActionError) as exc:
        return PlannedAction(rule.id, index, action.spec.name, None, error=str(exc))
    return PlannedAction(rule.id, index, action.spec.name, request)


def judge(rule: Rule, data: Callable[[], DataHandle]) -> tuple[bool, str]:
    """Whether the rule's `when` holds, and the part that decided (explain.py), both evaluated
    on the one handle `data()` gives. Raises LogicError."""
    if rule.condition is None or rule.explained is None:
        return True, "no 'when': every event matches"
    value, decider, decided = judged(rule.explained, data())
    return is_truthy(value), said(decider, decided)


def decide(
    event: Event,
    previous: dict[str, Any] | None,
    ruleset: Ruleset,
    now: float,
    fetched: Mapping[str, Mapping[str, Any] | str] | None = None,
    echo: bool = False,
) -> Decision:
    """Every rule that listens to the event, matched or not, and the requests the matches plan.
    `fetched` holds, per rule id, the replies of that rule's `fetch` by name, or the text of
    the error that stopped them; the worker does that I/O before it calls decide(). `echo`:
    the event only brings back hookrules' own write; rules skip it unless `on.echoes`."""
    context = rule_context(event, previous, now)
    # Converted for datalogic-py once per event, when a rule first needs it, and shared by every
    # rule without a fetch: converting it for each evaluation cost more than evaluating. Data
    # it cannot take is not cached: each rule tries again and fails on its own, as before.
    shared = functools.cache(functools.partial(data_handle, context))
    results: list[RuleResult] = []
    actions: list[PlannedAction] = []
    shadowed: list[PlannedAction] = []
    for rule in ruleset.listening(event):
        if rule.mode == "off":
            continue
        if echo and not rule.echoes:
            results.append(RuleResult(rule.id, rule.mode, matched=False, skipped="an echo of hookrules' own write"))
            continue
        reads = (fetched or {}).get(rule.id, {}) if rule.fetches else {}
        if isinstance(reads, str):
            results.append(RuleResult(rule.id, rule.mode, matched=False, error=f"fetch failed: {reads}"))
            continue
        rule_data = {**context, "fetched": reads} if rule.fetches else context
        # A rule with a fetch reads its own replies, so it needs a handle of its own.
        data = functools.partial(data_handle, rule_data) if rule.fetches else shared
        try:
            matched, why = judge(rule, data)
        except LogicError as exc:
            results.append(RuleResult(rule.id, rule.mode, matched=False, error=f"condition failed: {exc}"))
            continue
        results.append(RuleResult(rule.id, rule.mode, matched=matched, because=why))
        if matched:
            planned = [plan(rule, index, rule_data, ruleset) for index in range(len(rule.actions))]
            (actions if rule.mode == "on" else shadowed).extend(planned)
    return Decision(event.id, ruleset.version, results, actions, shadowed)
