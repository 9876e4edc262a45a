"""Rule files: loading, the errors an admin sees (file, line, reason), and decide()."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.config import Connector, Targets
from engine.sources import Source
from engine.decide import decide
from engine.intake import to_event
from engine.rule_files import load_ruleset
from engine.rules import RuleProblems

ROOT = Path(__file__).resolve().parent.parent
TARGETS = Targets(sdp=Connector("sdp", base_url="https://sdp.example/app/itdesk", token="t"))
SOURCE = Source("sdp", secrets=("s",), default_event="{kind}.updated")

GOOD = """\
id: close-it
description: test rule
on: {source: sdp, event: "milestone.*"}
when: {"!!": {var: milestone.actual_end_time.value}}
then:
  - sdp.milestones.update:
      project_id: "{{ milestone.project.id }}"
      milestone_id: "{{ milestone.id }}"
      fields: {status: {name: Closed}}
"""


def event(sample: str = "milestone-completed.json", **changes: object):  # noqa: ANN201
    body = json.loads((ROOT / "samples" / sample).read_text())
    body["milestone"].update(changes)
    return to_event(SOURCE, {"x-hook-token": "s", "content-type": "application/json"}, json.dumps(body).encode(), 0.0)


def load(tmp_path: Path, **files: str):  # noqa: ANN201
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return load_ruleset(tmp_path, TARGETS)


def problems(tmp_path: Path, **files: str) -> list[str]:
    with pytest.raises(RuleProblems) as caught:
        load(tmp_path, **files)
    return caught.value.problems


def test_shipped_rules_load() -> None:
    ruleset = load_ruleset(ROOT / "rules", TARGETS)
    assert [r.id for r in ruleset.rules] == ["close-finished-milestone", "raise-priority-when-slipping", "archive-finished-project"]
    assert all(r.mode == "on" for r in ruleset.rules)


def test_version_changes_with_the_files(tmp_path: Path) -> None:
    first = load(tmp_path, **{"a.yaml": GOOD}).version
    second = load(tmp_path, **{"a.yaml": GOOD.replace("test rule", "changed")}).version
    assert first != second


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD.replace("on: {source: sdp, ", "on: {"), "a.yaml:3: rule 'close-it': 'on' needs a source and an event"),
        (GOOD.replace('"!!"', '"frob"'), "a.yaml:4: rule 'close-it': 'when' is not valid JSONLogic"),
        # Where it is written, not at `when:`; and the operator meant.
        (GOOD.replace('when: {"!!": {var: milestone.actual_end_time.value}}',
                      'when:\n  and:\n    - "!!": {var: milestone.id}\n    - contains: [{var: milestone.title}, urgent]'),
         "a.yaml:7: rule 'close-it': 'when' is not valid JSONLogic: unknown operator `contains` at /and/1 (did you mean `in`?)"),
        (GOOD.replace("sdp.milestones.update", "sdp.milestones.explode"), "a.yaml:6: rule 'close-it': action 1: unknown action 'sdp.milestones.explode'"),
        (GOOD.replace("      fields: {status: {name: Closed}}\n", ""), "a.yaml:6: rule 'close-it': action 1 (sdp.milestones.update): missing argument 'fields'"),
        (GOOD.replace("{{ milestone.id }}", "{{ milestone.id "), "a.yaml:6: rule 'close-it': action 1 (sdp.milestones.update): template does not compile"),
        (GOOD + "mode: sometimes\n", "a.yaml:10: rule 'close-it': mode must be one of on, shadow, off"),
        (GOOD + "colour: red\n", "a.yaml:10: rule 'close-it': unknown key 'colour'"),
        (GOOD.replace("id: close-it", "id: 'bad id!'"), "a.yaml:1: a rule needs an 'id'"),
        (GOOD.replace("then:\n", "then: 3\n", 1).split("  - sdp")[0], "a.yaml:5: rule 'close-it': 'then' must be a list of actions"),
        ("id: [unclosed\n", "a.yaml:2: not valid YAML"),
        # The parser's words, and what they usually mean in a rule file.
        (GOOD.replace("      fields:", "     fields:"), "a.yaml:9: not valid YAML: expected <block end>, "
         "but found '<block mapping start>' (check this line's indentation against the lines above"),
        (GOOD.replace("id: close-it\n", "id: close-it\n\t\n"), "a.yaml:2: not valid YAML: found character '\\t' that cannot start any token (a tab: indent with spaces only)"),
        (GOOD.replace("on: {source: sdp, ", "on: {source: sdp "), "a.yaml:3: not valid YAML: expected ',' or '}', but got ':' (inside { } or [ ], entries are separated by commas"),
    ],
)
def test_problems_name_file_line_and_reason(tmp_path: Path, text: str, expected: str) -> None:
    found = problems(tmp_path, **{"a.yaml": text})
    assert any(p.startswith(str(tmp_path / expected.split(":", 1)[0]) + ":" + expected.split(":", 1)[1]) for p in found), found


def test_every_problem_of_every_file_is_reported_at_once(tmp_path: Path) -> None:
    found = problems(tmp_path, **{"a.yaml": GOOD + "colour: red\n", "b.yaml": GOOD.replace("sdp.milestones.update", "nope")})
    assert len(found) == 2
    assert {Path(p.split(":")[0]).name for p in found} == {"a.yaml", "b.yaml"}


def test_a_bad_id_hides_no_other_problem_of_its_rule(tmp_path: Path) -> None:
    text = GOOD.replace("id: close-it", "id: 'bad id!'").replace('"!!"', '"frob"')
    found = problems(tmp_path, **{"a.yaml": text})
    assert [p.split(str(tmp_path) + "/", 1)[1] for p in found] == [
        "a.yaml:1: a rule needs an 'id' of letters, digits, '.', '-' or '_', starting with a letter or digit, "
        "at most 100 characters; got 'bad id!'",
        "a.yaml:4: the rule at line 1: 'when' is not valid JSONLogic: unknown operator `frob`",
    ]


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    found = problems(tmp_path, **{"a.yaml": GOOD, "b.yaml": GOOD})
    assert len(found) == 1 and "rule id 'close-it' is already used at" in found[0]


def test_missing_directory_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(RuleProblems, match="does not exist"):
        load_ruleset(tmp_path / "nope", TARGETS)
    (tmp_path / "event.json").write_text("{}")
    with pytest.raises(RuleProblems, match="a file, not a rules directory.*use `hookrules try .*event.json`"):
        load_ruleset(tmp_path / "event.json", TARGETS)


def test_decide_plans_the_request_with_the_wire_format() -> None:
    ruleset = load_ruleset(ROOT / "rules", TARGETS)
    decision = decide(event(), None, ruleset, now=0.0)
    assert [(r.rule_id, r.matched) for r in decision.results] == [
        ("close-finished-milestone", True),
        ("raise-priority-when-slipping", False),
    ]
    (action,) = decision.actions
    assert action.request.method == "PUT"
    assert action.request.url == "https://sdp.example/app/itdesk/api/v3/projects/2258743870606263/milestones/2007594064055157"
    assert action.request.form == {"input_data": '{"milestone":{"status":{"name":"Closed"}}}'}
    assert action.request.headers["Accept"] == "application/vnd.manageengine.sdp.v3+json"
    assert "Authorization" not in action.request.headers  # added only when sending


def test_already_closed_milestone_is_left_alone() -> None:
    ruleset = load_ruleset(ROOT / "rules", TARGETS)
    decision = decide(event(status={"name": "Closed"}), None, ruleset, now=0.0)
    assert decision.actions == []


def test_shadow_rules_plan_but_do_not_send_and_off_rules_do_not_run(tmp_path: Path) -> None:
    shadow = GOOD + "mode: shadow\n"
    off = GOOD.replace("id: close-it", "id: off-rule") + "mode: off\n"
    ruleset = load(tmp_path, **{"a.yaml": shadow, "b.yaml": off})
    decision = decide(event(), None, ruleset, now=0.0)
    assert decision.actions == []
    assert [a.rule_id for a in decision.shadowed] == ["close-it"]
    assert [r.rule_id for r in decision.results] == ["close-it"]


def test_undefined_template_variable_is_an_error_not_an_empty_string(tmp_path: Path) -> None:
    ruleset = load(tmp_path, **{"a.yaml": GOOD.replace("milestone.project.id", "milestone.projct.id")})
    (action,) = decide(event(), None, ruleset, now=0.0).actions
    assert action.request is None
    assert "projct" in action.error


def test_rule_listens_only_to_its_source_and_event(tmp_path: Path) -> None:
    ruleset = load(tmp_path, **{"a.yaml": GOOD.replace('event: "milestone.*"', "event: milestone.closed")})
    assert decide(event(), None, ruleset, now=0.0).results == []


def test_rules_list_file_and_line_numbers(tmp_path: Path) -> None:
    text = "rules:\n" + "".join("  " + line + "\n" if line else "\n" for line in ("- " + GOOD.replace("\n", "\n  ")).splitlines())
    ruleset = load(tmp_path, **{"many.yaml": text})
    assert [(r.id, r.line) for r in ruleset.rules] == [("close-it", 2)]
