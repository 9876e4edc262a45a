"""`examples:` on a rule: events with the outcome the author expects, run by `hookrules check`.

    examples:
      - name: closes once the end time is set
        event: {milestone: {id: "5", project: {id: "3"}, actual_end_time: {value: "1512974940000"}}}
        previous: {id: "5", project: {id: "3"}}        # optional: the entity before this event
        event_type: milestone.updated                  # optional
        fetched: {project: {...}}                      # optional: replies for the rule's fetch
        now: 1700000000000                             # optional: the clock, epoch ms
        expect:
          matches: true
          requests:                                    # optional: what the matched rule sends
            - {method: PUT, url_endswith: /milestones/5, input_data: {milestone: {status: {name: Closed}}}}

An example runs through the same decide() as production, with only its own rule.
"""

from __future__ import annotations

import difflib
import json
import time
from dataclasses import dataclass, replace
from typing import Any

from engine.config import Connector, Targets
from engine.dates import normalise_dates
from engine.decide import decide
from engine.intake import Rejected, find_entity
from engine.models import Entity, Event, Request
from engine.rules import Rule, Ruleset
from engine.shapes import with_long_dates

EXAMPLE_KEYS = {"name", "event", "event_type", "previous", "fetched", "now", "expect", "line"}
EXPECT_KEYS = {"matches", "requests"}
REQUEST_KEYS = {"method", "url", "url_endswith", "input_data", "json", "form", "query"}
# Where requests go in examples when the connector is not configured, so `check` runs anywhere.
EXAMPLE_SDP = "https://sdp.example/app/portal"
EXAMPLE_ZOHO = "https://zoho.example/restapi/portal/0"


def example_problems(raw: Any, line: int) -> list[tuple[int, str]]:
    """The shape of `examples:`, checked when the rule loads."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        return [(line, "'examples' must be a list of examples, each with event and expect")]
    found: list[tuple[int, str]] = []
    for n, example in enumerate(raw, start=1):
        at = getattr(example, "line", line)
        if not isinstance(example, dict):
            found.append((at, f"example {n} must be a mapping with event and expect"))
            continue
        found += [(at, f"example {n}: unknown key {k!r}; an example has {', '.join(sorted(EXAMPLE_KEYS - {'line'}))}")
                  for k in sorted(set(example) - EXAMPLE_KEYS, key=str)]
        if not isinstance(example.get("event"), dict):
            found.append((at, f"example {n}: 'event' must be the webhook body, e.g. {{milestone: {{id: '1', ...}}}}"))
        expect = example.get("expect")
        if not isinstance(expect, dict) or not isinstance(expect.get("matches"), bool):
            unknown = sorted(set(expect) - EXPECT_KEYS, key=str) if isinstance(expect, dict) else []
            near = difflib.get_close_matches(str(unknown[0]), sorted(EXPECT_KEYS), n=1) if unknown else []
            also = (f" (unknown key {', '.join(repr(f'expect.{k}') for k in unknown)}"
                    + (f": did you mean {near[0]!r}?)" if near else ")")) if unknown else ""
            found.append((at, f"example {n}: 'expect' needs matches: true or false{also}"))
            continue
        found += [(at, f"example {n}: unknown key 'expect.{k}'; expect has matches and requests") for k in sorted(set(expect) - EXPECT_KEYS, key=str)]
        for spec in expect.get("requests") or []:
            if not isinstance(spec, dict) or set(spec) - REQUEST_KEYS:
                found.append((at, f"example {n}: each expected request is a mapping of {', '.join(sorted(REQUEST_KEYS))}"))
    return found


@dataclass(frozen=True)
class ExampleResult:
    rule: Rule
    name: str
    line: int
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures


def example_targets(targets: Targets) -> Targets:
    sdp = targets.sdp if targets.sdp.base_url else replace(targets.sdp, base_url=EXAMPLE_SDP)
    zoho = targets.zoho if targets.zoho.base_url else replace(targets.zoho, base_url=EXAMPLE_ZOHO)
    return replace(targets, sdp=sdp, zoho=zoho)


def event_from_body(event_id: str, body: dict[str, Any], source: str, event_type: str | None, scan_rule: str | None = None) -> Event:
    """An Event from a webhook body as a sender would post it, without the HTTP around it:
    for examples and dry runs. The default type is `<kind>.updated` (`<kind>.scanned` for a
    scheduled rule's item)."""
    kind, data = find_entity(body)
    payload = {"scan": {"rule": scan_rule}, kind: data} if scan_rule else body
    default_type = f"{kind}.scanned" if scan_rule else f"{kind}.updated"
    # As intake reads it: SDP's dates as numbers, and a Zoho date its `<field>_long` (only
    # Zoho sends MM-DD-YYYY text, so this does nothing to an SDP body).
    entity = Entity(kind=kind, id=str(data["id"]), data=with_long_dates(normalise_dates(data)))
    return Event(event_id, source, event_type or default_type, entity, time.time(), None, payload)


def example_event(rule: Rule, example: dict[str, Any], n: int) -> Event:
    source = rule.sources[0] if rule.sources and "*" not in rule.sources[0] else "sdp"
    event_type = None if rule.schedule else example.get("event_type")
    return event_from_body(f"example:{rule.id}:{n}", example["event"], source, event_type, rule.id if rule.schedule else None)


def request_failures(spec: dict[str, Any], request: Request | None, n: int) -> list[str]:
    if request is None:
        return [f"request {n}: none was built"]
    found = []
    actual = {
        "method": request.method,
        "url": request.url,
        "input_data": json.loads((request.form or {}).get("input_data", "null")),
        "json": request.json,
        "form": request.form,
        "query": request.query,
    }
    for key, expected in spec.items():
        if key == "url_endswith":
            if not request.url.endswith(str(expected)):
                found.append(f"request {n}: url {request.url} does not end with {expected}")
        elif (str(actual[key]).upper() != str(expected).upper()) if key == "method" else actual[key] != expected:
            found.append(f"request {n}: {key} is {json.dumps(actual[key])}, expected {json.dumps(expected)}")
    return found


def run_example(rule: Rule, example: dict[str, Any], n: int, targets: Targets) -> ExampleResult:
    name = str(example.get("name") or f"example {n}")
    try:
        event = example_event(rule, example, n)
    except Rejected as exc:
        return ExampleResult(rule, name, example["line"], (f"the event is not usable: {exc.reason}",))
    now = float(example.get("now") or time.time() * 1000) / 1000
    ruleset = Ruleset((rule,), "example", example_targets(targets))
    previous = normalise_dates(example["previous"]) if example.get("previous") is not None else None
    decision = decide(event, previous, ruleset, now, {rule.id: example.get("fetched") or {}})
    result = decision.results[0] if decision.results else None
    expect = example["expect"]
    failures: list[str] = []
    if result is None:
        failures.append("the rule does not listen to this event (check on.source and on.event)")
    elif result.error:
        failures.append(result.error)
    elif result.matched != expect["matches"]:
        failures.append(f"expected {'a match' if expect['matches'] else 'no match'}, but it {'matched' if result.matched else 'did not match'}"
                        + (f": because {result.because}" if result.because else ""))
    planned = decision.actions + decision.shadowed
    for i, spec in enumerate(expect.get("requests") or [], start=1):
        if i > len(planned):
            failures.append(f"request {i}: expected, but the rule planned {len(planned)}")
        else:
            failures += request_failures(spec, planned[i - 1].request, i) + ([planned[i - 1].error] if planned[i - 1].error else [])
    return ExampleResult(rule, name, example["line"], tuple(failures))


def run_examples(ruleset: Ruleset) -> list[ExampleResult]:
    return [run_example(rule, example, n, ruleset.targets) for rule in ruleset.rules for n, example in enumerate(rule.examples, 1)]
