"""`hookrules try`: a dry run of one event through the same decide() as production.

It shows each rule that listens, matched or not, the part of its condition that decided, and
the requests it would send (with the credentials masked). It sends nothing and needs no Redis:
`previous` and the replies of `fetch` come from files, or are absent.
"""

from __future__ import annotations

import json
import time
from typing import Any

from engine.dates import normalise_dates
from engine.decide import decide, rule_context
from engine.examples import example_targets
from engine.models import Event, PlannedAction
from engine.reach import Unreachable, check_host
from engine.rule_names import changed_paths, var_paths
from engine.rules import Rule, Ruleset

MASK = "Zoho-oauthtoken ****"


def describe_request(action: PlannedAction, allow_hosts: tuple[str, ...] = ()) -> list[str]:
    if action.request is None:
        return [f"    not sent: {action.error}"]
    request = action.request
    lines = [f"    {request.method} {request.url}"]
    if request.connector is None:  # http.request: the host must be allowed, or the send is refused
        try:
            check_host(request.url, allow_hosts)
        except Unreachable as exc:
            lines.append(f"      REFUSED when sent: {exc}")
    headers = {**request.headers, **({"Authorization": MASK} if request.connector else {})}
    lines += [f"      {name}: {value}" for name, value in headers.items()]
    if request.query:
        lines.append(f"      query: {json.dumps(request.query)}")
    if request.form:
        lines += [f"      form {name}={value}" for name, value in request.form.items()]
    if request.files:
        lines += [f"      file {name}: {part[0]} ({len(part[1])} characters)" for name, part in request.files.items()]
    if request.json is not None:
        lines.append(f"      json: {json.dumps(request.json)}")
    return lines


def describe_rule(rule: Rule, result: Any, planned: list[PlannedAction], allow_hosts: tuple[str, ...] = (),
                  context: dict[str, Any] | None = None) -> list[str]:
    verdict = "error" if result.error else "MATCHED" if result.matched else "not matched"
    lines = [f"rule {rule.id} [{rule.mode}] ({rule.file}:{rule.line}): {verdict}"]
    if context is not None and (missing := [name for name, _ in rule.fetches if name not in context["fetched"]]):
        lines.append(f"  (not fetched: {', '.join(missing)}; a dry run reads nothing, so fetched.{missing[0]} is missing "
                     "here: give the replies by name with --fetched FILE)")
    if result.error:
        lines.append(f"  {result.error}")
    elif rule.condition is None:
        lines.append("  no 'when': every event it listens to matches")
    else:
        lines.append(f"  because {result.because}")  # worked out by decide(), as in production
        if context is not None and (read := values_read(result.because, context)):
            lines.append(f"  reading {read}")
    if planned:
        lines.append("  would send:" if rule.mode == "on" else "  would send, but it is in shadow mode, so it does not:")
        for action in planned:
            lines += describe_request(action, allow_hosts)
    return lines


def values_read(because: str | None, context: dict[str, Any]) -> str:
    """What the deciding part read, as `name = value` (or `(missing)`): why a test came out as
    it did is mostly in the data, not the condition. Worked out here, not in decide(), so
    production pays nothing for it."""
    try:  # `because` is the deciding part as JSON, then " was <value>"
        part, _ = json.JSONDecoder().raw_decode(because or "")
    except ValueError:
        return ""
    kind = (context.get("entity") or {}).get("kind", "")
    shown = []
    # `changed*` test the change, not the value: show what changed (the kind in front optional).
    for path in sorted(changed_paths(part), key=".".join):
        relative = ".".join(path[1:] if path[0] == kind and len(path) > 1 else path)
        change = (context.get("changes") or {}).get(relative)
        shown.append(f"the change of {kind}.{relative} = {json.dumps(change) if change is not None else '(unchanged)'}")
    for path in sorted(var_paths(part), key=".".join):
        value: Any = context
        for step in path:
            value = value.get(step, _MISSING) if isinstance(value, dict) else (
                value[int(step)] if isinstance(value, list) and step.isdigit() and int(step) < len(value) else _MISSING)
            if value is _MISSING:
                break
        text = "(missing)" if value is _MISSING else json.dumps(value)
        shown.append(f"{'.'.join(path)} = {text if len(text) <= 120 else text[:117] + '...'}")
    return ", ".join(shown)


_MISSING = object()


def dry_run(
    ruleset: Ruleset,
    event: Event,
    previous: dict[str, Any] | None = None,
    fetched: dict[str, Any] | None = None,
) -> str:
    """The report, as text. `fetched` gives every rule with a `fetch` the same replies by name."""
    allow_hosts = ruleset.targets.http_allow_hosts
    ruleset = Ruleset(ruleset.rules, ruleset.version, example_targets(ruleset.targets), ruleset.files)
    previous = normalise_dates(previous) if previous is not None else None
    now = time.time()
    reads = {rule.id: fetched or {} for rule in ruleset.rules if rule.fetches}
    decision = decide(event, previous, ruleset, now, reads)
    # What decide() gave the rules (changes included), with the replies given: for the values read.
    context = {**rule_context(event, previous, now), "fetched": fetched or {}}
    changed = sorted(path for path in context["changes"] if "." not in path)
    lines = [
        f"event: {event.source} {event.type}, {event.entity.kind} {event.entity.id}",
        "previous: none (first sight: every field counts as changed)" if previous is None else "previous: given",
        f"changes: {', '.join(changed) or 'none'}",
        "",
    ]
    by_rule = {r.id: r for r in ruleset.rules}
    for result in decision.results:
        rule = by_rule[result.rule_id]
        planned = [a for a in decision.actions + decision.shadowed if a.rule_id == rule.id]
        lines += describe_rule(rule, result, planned, allow_hosts, context) + [""]
    deaf = [r.id for r in ruleset.rules if r.id not in {res.rule_id for res in decision.results}]
    if deaf:
        lines.append(f"not listening to {event.source} {event.type} (or off): {', '.join(deaf)}")
    lines.append("Nothing was sent: this is a dry run.")
    return "\n".join(lines)
