"""decide() with many rules: the index finds exactly the rules a scan of every rule would, in
the same order; conditions run on one DataHandle per event and still fail one rule at a time.
No timing here: the figures are measured by hand (see the issue), these check the answers."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import rules as rules_module
from engine.config import Connector, Targets
from engine.decide import decide
from engine.intake import to_event
from engine.logic import LogicError, compile_condition, data_handle
from engine.models import Entity, Event
from engine.rule_files import load_ruleset
from engine.rules import Rule, Ruleset
from engine.sources import Source

ROOT = Path(__file__).resolve().parent.parent
TARGETS = Targets(sdp=Connector("sdp", base_url="https://sdp.example/app/itdesk", token="t"))
SOURCE = Source("sdp", secrets=("s",), default_event="{kind}.updated")
BOUNDED = settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

SOURCE_GLOBS = ["sdp", "zoho", "other", "*", "s?p", "[sz]*", "zo*", "[!s]*"]
EVENT_GLOBS = ["milestone.updated", "milestone.created", "milestone.*", "*", "project.updated", "project.*",
               "milestone.scanned", "*.scanned", "milestone.[cu]*", "?roject.updated"]
EVENT_SOURCES = ["sdp", "zoho", "other", "spp", "sdp2", "s?p", "*"]  # the last two: not globs here
EVENT_TYPES = ["milestone.updated", "milestone.created", "milestone.closed", "project.updated", "project.created",
               "milestone.scanned", "project.scanned", "task.updated", "*"]
RULE_IDS = [f"r{n}" for n in range(12)]


@st.composite
def a_rule(draw: st.DrawFn, position: int) -> Rule:
    rule_id = draw(st.sampled_from(RULE_IDS)) if draw(st.booleans()) else f"rule{position}"
    if draw(st.integers(0, 4)) == 0:  # scheduled: its own scan's items only
        kind = draw(st.sampled_from(["milestone", "project"]))
        return Rule(rule_id, "", ("sdp",), (f"{kind}.scanned",), None, (), "on", "f.yaml", position,
                    schedule="*/5 * * * *")
    sources = tuple(draw(st.lists(st.sampled_from(SOURCE_GLOBS), min_size=1, max_size=3)))
    events = tuple(draw(st.lists(st.sampled_from(EVENT_GLOBS), min_size=1, max_size=3)))
    return Rule(rule_id, "", sources, events, None, (), "on", "f.yaml", position)


@st.composite
def an_event(draw: st.DrawFn) -> Event:
    scan = draw(st.one_of(
        st.none(),
        st.fixed_dictionaries({"rule": st.sampled_from(RULE_IDS + ["rule0", "rule1", "nobody"])}),
        st.sampled_from([{}, {"rule": ["r1"]}, {"rule": None}, "r1", ["r1"], 0]),  # what a webhook may send
    ))
    payload: dict[str, Any] = {} if scan is None else {"scan": scan}
    return Event("e", draw(st.sampled_from(EVENT_SOURCES)), draw(st.sampled_from(EVENT_TYPES)),
                 Entity("milestone", "1", {}), 0.0, None, payload)


@st.composite
def a_ruleset(draw: st.DrawFn) -> Ruleset:
    count = draw(st.integers(0, 40))
    return Ruleset(tuple(draw(a_rule(position)) for position in range(count)), "v", TARGETS)


def scan_every_rule(ruleset: Ruleset, event: Event) -> tuple[Rule, ...]:
    """What decide() used to do: ask every rule."""
    return tuple(rule for rule in ruleset.rules if rule.listens_to(event))


@BOUNDED
@given(ruleset=a_ruleset(), events=st.lists(an_event(), min_size=1, max_size=30))
def test_index_finds_what_asking_every_rule_finds_in_the_same_order(ruleset: Ruleset, events: list[Event]) -> None:
    for event in events + events:  # the second time, from the memo
        assert ruleset.listening(event) == scan_every_rule(ruleset, event)


@BOUNDED
@given(ruleset=a_ruleset(), events=st.lists(an_event(), min_size=1, max_size=30))
def test_index_with_a_tiny_memo_forgets_and_still_finds_the_same(ruleset: Ruleset, events: list[Event]) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rules_module, "MEMO_PAIRS", 2)
        small = Ruleset(ruleset.rules, ruleset.version, ruleset.targets)
    for event in events + events[::-1]:
        assert small.listening(event) == scan_every_rule(small, event)


def test_a_rule_listed_twice_in_on_is_found_once() -> None:
    rule = Rule("twice", "", ("sdp", "sdp"), ("milestone.updated", "milestone.updated"), None, (), "on", "f", 1)
    event = Event("e", "sdp", "milestone.updated", Entity("milestone", "1", {}), 0.0, None, {})
    assert Ruleset((rule,), "v", TARGETS).listening(event) == (rule,)


def test_rulesets_built_anywhere_have_the_index_and_compare_by_their_rules() -> None:
    rule = Rule("a", "", ("sdp",), ("*",), None, (), "on", "f", 1)
    first, second = Ruleset((rule,), "v", TARGETS), Ruleset((rule,), "v", TARGETS)
    assert first == second and first.index is not second.index
    event = Event("e", "sdp", "x.y", Entity("x", "1", {}), 0.0, None, {})
    assert replace(first, rules=()).listening(event) == () and first.listening(event) == (rule,)


def rule_yaml(rule_id: str, source: str, event: str, when: Any) -> str:
    return f"""\
  - id: {rule_id}
    on: {{source: "{source}", event: "{event}"}}
    when: {json.dumps(when)}
    then:
      - sdp.milestones.update:
          project_id: "{{{{ milestone.project.id }}}}"
          milestone_id: "{{{{ milestone.id }}}}"
          fields: {{priority: {{name: High}}}}
"""


def load(tmp_path: Path, *rules: str) -> Ruleset:
    (tmp_path / "rules.yaml").write_text("rules:\n" + "".join(rules))
    return load_ruleset(tmp_path, TARGETS)


def sample_event(**changes: object) -> Event:
    body = json.loads((ROOT / "samples" / "milestone-completed.json").read_text())
    body["milestone"].update(changes)
    return to_event(SOURCE, {"x-hook-token": "s", "content-type": "application/json"}, json.dumps(body).encode(), 0.0)


def test_results_keep_the_order_of_the_files_with_plain_and_glob_rules_mixed(tmp_path: Path) -> None:
    status = {"==": [{"var": "milestone.status.name"}, "Open"]}
    ruleset = load(
        tmp_path,
        rule_yaml("glob-first", "sdp", "milestone.*", status),
        rule_yaml("plain", "sdp", "milestone.updated", status),
        rule_yaml("elsewhere", "zoho", "milestone.updated", status),
        rule_yaml("any-source", "*", "milestone.updated", status),
        rule_yaml("plain-again", "sdp", "milestone.updated", status),
    )
    decision = decide(sample_event(), None, ruleset, now=0.0)
    assert [r.rule_id for r in decision.results] == ["glob-first", "plain", "any-source", "plain-again"]


def test_one_rule_failing_leaves_the_others_decided(tmp_path: Path) -> None:
    ruleset = load(
        tmp_path,
        rule_yaml("before", "sdp", "milestone.*", {"==": [{"var": "milestone.status.name"}, "Open"]}),
        rule_yaml("fails", "sdp", "milestone.*", {">": [{"+": [{"var": "milestone.title"}, 1]}, 0]}),
        rule_yaml("after", "sdp", "milestone.*", {"changed": "milestone.priority"}),
    )
    decision = decide(sample_event(title="not a number"), None, ruleset, now=0.0)
    assert [(r.rule_id, r.matched, r.error is not None) for r in decision.results] == [
        ("before", True, False), ("fails", False, True), ("after", True, False)]
    assert decision.results[1].error.startswith("condition failed: ")
    assert decision.results[2].because == '{"changed": "milestone.priority"} was true'
    assert [a.rule_id for a in decision.actions] == ["before", "after"]


def test_data_datalogic_cannot_take_fails_each_condition_and_not_the_rule_without_one(tmp_path: Path) -> None:
    text = rule_yaml("no-when", "sdp", "milestone.*", None).replace("    when: null\n", "")
    ruleset = load(tmp_path, rule_yaml("a", "sdp", "milestone.*", {"!!": {"var": "milestone.id"}}), text,
                   rule_yaml("b", "sdp", "milestone.*", {"!": {"var": "milestone.id"}}))
    event = sample_event()
    event = replace(event, entity=replace(event.entity, data={**event.entity.data, "huge": 2**64}))
    decision = decide(event, None, ruleset, now=0.0)
    assert [(r.rule_id, r.matched) for r in decision.results] == [("a", False), ("no-when", True), ("b", False)]
    assert decision.results[0].error == decision.results[2].error == "condition failed: unsupported Python value: JSON number out of range"


def test_a_rule_that_fetches_evaluates_its_own_reads(tmp_path: Path) -> None:
    fetching = rule_yaml("reads", "sdp", "milestone.*", {"==": [{"var": "fetched.project.status"}, "active"]}).replace(
        "    then:", "    fetch: {project: {sdp.milestones.get: {project_id: \"{{ milestone.project.id }}\", milestone_id: \"{{ milestone.id }}\"}}}\n    then:")
    plain = rule_yaml("plain", "sdp", "milestone.*", {"!": {"var": "fetched"}})
    ruleset = load(tmp_path, fetching, plain)
    decision = decide(sample_event(), None, ruleset, now=0.0, fetched={"reads": {"project": {"status": "active"}}})
    assert [(r.rule_id, r.matched) for r in decision.results] == [("reads", True), ("plain", True)]


HOSTILE = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=12,
)
CONDITIONS = [{"var": "a"}, {"var": "a.b"}, {"+": [{"var": "a"}, 1]}, {"after": [{"var": "a"}, {"var": "b"}]},
              {"and": [{"var": "a"}, {"!": {"var": "b"}}]}, {"changed": "a"}, {"in": [{"var": "a"}, {"var": "b"}]}]


def evaluated(condition: Any, data: Any) -> tuple[str, Any]:
    try:
        return "value", condition.evaluate(data)
    except LogicError as exc:
        return "error", str(exc)


@BOUNDED
@given(rule=st.sampled_from(CONDITIONS), data=HOSTILE)
def test_a_handle_and_the_plain_data_give_the_same_value_or_the_same_error(rule: Any, data: Any) -> None:
    condition = compile_condition(rule)
    try:
        handle = data_handle(data)
    except LogicError as exc:
        assert evaluated(condition, data) == ("error", str(exc))
        return
    assert evaluated(condition, handle) == evaluated(condition, data)
