"""`hookrules check` (rules and their examples) and `hookrules try` (a dry run), as an admin
or a CI job runs them: output and exit status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import ROOT, base_env
from test_cli import hookrules

RULE = """\
id: close-it
on: {source: sdp, event: "milestone.*"}
when:
  and:
    - changed: milestone.actual_end_time
    - "!=": [{var: milestone.status.name}, Closed]
then:
  - sdp.milestones.update:
      project_id: "{{ milestone.project.id }}"
      milestone_id: "{{ milestone.id }}"
      fields: {status: Closed}
"""
EXAMPLE = """\
examples:
  - name: closes
    event: {milestone: {id: "5", project: {id: "3"}, status: {name: Open}, actual_end_time: {value: "1512974940000"}}}
    expect:
      matches: true
      requests: [{method: PUT, url_endswith: /projects/3/milestones/5, input_data: {milestone: {status: {name: %s}}}}]
"""


def check(tmp_path: Path, text: str):  # noqa: ANN201
    (tmp_path / "r.yaml").write_text(text)
    return hookrules("check", str(tmp_path))


def test_shipped_rules_and_examples_pass() -> None:
    done = hookrules("check")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "examples: 9 passed, 0 failed" in done.stdout
    assert done.stdout.count("PASS ") == 9


def test_passing_and_failing_examples(tmp_path: Path) -> None:
    good = check(tmp_path, RULE + EXAMPLE % "Closed")
    assert good.returncode == 0 and "PASS" in good.stdout and "examples: 1 passed, 0 failed" in good.stdout
    bad = check(tmp_path, RULE + EXAMPLE % "Done")
    assert bad.returncode == 1
    assert f"FAIL {tmp_path / 'r.yaml'}:13: rule 'close-it': closes" in bad.stdout
    assert 'request 1: input_data is {"milestone": {"status": {"name": "Closed"}}}, expected {"milestone": {"status": {"name": "Done"}}}' in bad.stdout
    assert "examples: 0 passed, 1 failed" in bad.stdout


def test_example_that_expects_the_wrong_outcome_says_so(tmp_path: Path) -> None:
    text = RULE + EXAMPLE.replace("matches: true", "matches: false").replace("      requests: [{method: PUT, url_endswith: /projects/3/milestones/5, input_data: {milestone: {status: {name: %s}}}}]\n", "")
    done = check(tmp_path, text)
    assert done.returncode == 1 and "expected no match, but it matched" in done.stdout
    # and why, as `hookrules try` would say it
    assert ('expected no match, but it matched: because {"and": [{"changed": "milestone.actual_end_time"}, '
            '{"!=": [{"var": "milestone.status.name"}, "Closed"]}]} was true') in done.stdout, done.stdout


def test_an_object_compared_with_text_says_which_field_to_compare(tmp_path: Path) -> None:
    text = RULE.replace('"!=": [{var: milestone.status.name}, Closed]', '"==": [{var: milestone.status}, Open]') + \
        EXAMPLE.replace("      requests: [{method: PUT, url_endswith: /projects/3/milestones/5, input_data: {milestone: {status: {name: %s}}}}]\n", "")
    done = check(tmp_path, text)
    assert done.returncode == 1
    assert "condition failed: Invalid arguments: NaN (in operator: ==) (a comparison met a value that is not a number or " \
           "text, usually an object such as milestone.status: compare a field inside it, e.g. milestone.status.name)" in done.stdout


def test_expect_with_a_misspelt_key_names_it(tmp_path: Path) -> None:
    done = check(tmp_path, RULE + (EXAMPLE % "Closed").replace("matches: true", "match: true"))
    assert done.returncode == 1
    assert "example 1: 'expect' needs matches: true or false (unknown key 'expect.match': did you mean 'matches'?)" in done.stderr


@pytest.mark.parametrize(("text", "problem"), [
    (RULE.replace("milestone.status.name", "milestne.status.name"), "r.yaml:3: rule 'close-it': 'when' reads 'milestne', which a rule never has"),
    (RULE.replace("{{ milestone.id }}", "{{ milestone_id }}"), "r.yaml:7: rule 'close-it': sdp.milestones.update: a template reads 'milestone_id'"),
    (RULE + "fetch: {p: {sdp.milestones.delete: {project_id: '1', milestone_id: '2'}}}\n", "fetch p (sdp.milestones.delete): a fetch may only read"),
    (RULE.replace('on: {source: sdp, event: "milestone.*"}', "on: {schedule: 'every monday', fetch: {sdp.milestones.list: {project_id: '1'}}}"), "on.schedule must be a cron expression"),
    (RULE.replace('on: {source: sdp, event: "milestone.*"}', "on: {schedule: '0 * * * *', fetch: {sdp.milestones.get: {project_id: '1', milestone_id: '2'}}}"), "on.fetch must be a list operation"),
    (RULE + "examples: [{event: {milestone: {id: '1'}}}]\n", "example 1: 'expect' needs matches: true or false"),
    (RULE.replace("changed: milestone.actual_end_time", "changed: [a, b]"), "changed takes 1 argument(s), got 2"),
    (RULE.replace('event: "milestone.*"', 'event: "milestones.updated"'),
     "r.yaml:3: rule 'close-it': 'when' reads 'milestone', but this rule hears events of kind 'milestones'"),
    (RULE.replace('"{{ milestone.id }}"', '"{{ milestone.id }}-{{ event.typ }}"'),
     "r.yaml:7: rule 'close-it': sdp.milestones.update: a template reads event.typ, which event does not have (did you mean 'type'?)"),
    (RULE.replace("- changed: milestone.actual_end_time", "- changed: milestone.actual_end_time\n    - {var: entity.kinds}"),
     "r.yaml:3: rule 'close-it': 'when' reads entity.kinds, which entity does not have (did you mean 'kind'?)"),
])
def test_mistakes_are_load_errors_with_file_and_line(tmp_path: Path, text: str, problem: str) -> None:
    done = check(tmp_path, text)
    assert done.returncode == 1
    assert problem in done.stderr, done.stderr


def test_try_shows_each_rule_the_deciding_part_and_masked_requests() -> None:
    done = hookrules("try", "samples/milestone-completed.json", env=base_env(HOOKRULES_SDP_TOKEN="secret-token-value"))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "rule close-finished-milestone [on] (" in out and "): MATCHED" in out
    assert "PUT https://sdp.example/app/portal/api/v3/projects/2258743870606263/milestones/2007594064055157" in out
    assert "Authorization: Zoho-oauthtoken ****" in out and "secret-token-value" not in out
    assert 'form input_data={"milestone":{"status":{"name":"Closed"}}}' in out
    assert 'rule raise-priority-when-slipping [on] (' in out
    assert 'because {"after": [{"var": "milestone.projected_end"}, {"var": "milestone.scheduled_end_time"}]} was false' in out
    # and what that part read: here the two dates are the same, so the end did not slip
    date = '{"display_value": "Dec 11, 2017 12:19 PM", "value": 1512974940000}'
    assert f"  reading milestone.projected_end = {date}, milestone.scheduled_end_time = {date}\n" in out
    assert out.rstrip().endswith("Nothing was sent: this is a dry run.")


def test_try_says_which_value_read_was_missing(tmp_path: Path) -> None:
    body = json.loads((ROOT / "samples" / "milestone-completed.json").read_text())
    del body["milestone"]["scheduled_end_time"]
    (tmp_path / "event.json").write_text(json.dumps(body))
    out = hookrules("try", str(tmp_path / "event.json")).stdout
    assert "milestone.scheduled_end_time = (missing)" in out, out


def test_try_with_previous_state_shows_what_did_not_change(tmp_path: Path) -> None:
    sample = ROOT / "samples" / "milestone-completed.json"
    done = hookrules("try", str(sample), "--previous", str(sample))
    assert done.returncode == 0
    assert "changes: none" in done.stdout
    assert 'because {"changed": "milestone.actual_end_time"} was false' in done.stdout
    assert "reading the change of milestone.actual_end_time = (unchanged)" in done.stdout  # what changed_* test


def test_try_with_bad_input_exits_with_a_plain_message(tmp_path: Path) -> None:
    missing = hookrules("try", str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and "cannot read the event file" in missing.stderr
    (tmp_path / "bad.json").write_text("{nope")
    bad = hookrules("try", str(tmp_path / "bad.json"))
    assert bad.returncode == 2 and "is not valid JSON" in bad.stderr
    (tmp_path / "shapeless.json").write_text(json.dumps({"title": "no id anywhere"}))
    shapeless = hookrules("try", str(tmp_path / "shapeless.json"))
    assert shapeless.returncode == 2 and "no entity in the body" in shapeless.stderr
    assert "Traceback" not in missing.stderr + bad.stderr + shapeless.stderr


def test_a_rule_listening_to_a_source_that_does_not_exist_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(RULE.replace("source: sdp", "source: sdb"))
    (tmp_path / "glob.yaml").write_text(RULE.replace("id: close-it", "id: any-s").replace("source: sdp", "source: 's*'"))
    done = hookrules("check", str(tmp_path))
    assert done.returncode == 0, done.stderr  # it loads: the source may be added to the file later
    (warning,) = [line for line in done.stdout.splitlines() if line.startswith("warning:")]
    assert f"{tmp_path / 'r.yaml'}:1: rule 'close-it' listens to source 'sdb'" in warning
    assert "never fires (did you mean 'sdp'?)" in warning


def test_a_milestone_field_sdp_never_sends_is_a_warning_with_the_nearest_name(tmp_path: Path) -> None:
    text = RULE.replace("changed: milestone.actual_end_time", "changed: milestone.actual_end").replace(
        '"{{ milestone.project.id }}"', '"{{ milestone.projct.id }}"')
    done = check(tmp_path, text)
    assert done.returncode == 0, done.stderr  # custom fields exist: a warning, not an error
    warnings = [line for line in done.stdout.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: {tmp_path / 'r.yaml'}:1: rule 'close-it' reads milestone.actual_end, a field ServiceDesk Plus "
        "milestones do not have (did you mean 'actual_end_time'?): it is always missing",
        f"warning: {tmp_path / 'r.yaml'}:1: rule 'close-it' reads milestone.projct, a field ServiceDesk Plus "
        "milestones do not have (did you mean 'project'?): it is always missing",
    ], done.stdout


HTTP_RULE = """\
id: tell-chat
on: {source: sdp, event: "milestone.*"}
then:
  - http.request: {method: POST, url: "https://chat.example.com/hook/{{ milestone.id }}", json: {text: "{{ milestone.title }}"}}
"""


def test_a_host_the_allow_list_lacks_is_a_warning_in_check_and_refused_in_try(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(HTTP_RULE)
    done = hookrules("check", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert (f"warning: {tmp_path / 'r.yaml'}:1: rule 'tell-chat' action 1 sends to chat.example.com, which "
            "HOOKRULES_HTTP_ALLOW_HOSTS does not list (127.0.0.1): every send is refused") in done.stdout, done.stdout
    tried = hookrules("try", "samples/milestone-completed.json", env=base_env(HOOKRULES_RULES_DIR=str(tmp_path)))
    assert "POST https://chat.example.com/hook/2007594064055157\n      REFUSED when sent: 'chat.example.com' is not on " \
           "HOOKRULES_HTTP_ALLOW_HOSTS (127.0.0.1)" in tried.stdout, tried.stdout
    allowed = base_env(HOOKRULES_RULES_DIR=str(tmp_path), HOOKRULES_HTTP_ALLOW_HOSTS="chat.example.com")
    assert "warning" not in hookrules("check", env=allowed).stdout
    assert "REFUSED" not in hookrules("try", "samples/milestone-completed.json", env=allowed).stdout


def test_the_jsonlogic_pitfalls_of_the_readme_are_warnings(tmp_path: Path) -> None:
    """The three pitfalls of README's table that check warns about, each in a rule: check names each one."""
    (tmp_path / "r.yaml").write_text((ROOT / "tests" / "data" / "pitfall-rules.yaml").read_text())
    done = hookrules("check", str(tmp_path))
    assert done.returncode == 0, done.stderr
    warnings = [line.split(f"{tmp_path / 'r.yaml'}:", 1)[1] for line in done.stdout.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "2: rule 'slips' compares a time or duration with '>': a missing date makes it 0 there, so the test can pass on "
        "an event without milestone.projected_end or milestone.scheduled_end_time; test the date first ({\"!!\": {\"var\": \"<date>.value\"}}) "
        "or compare times with 'after'/'before'",
        "6: rule 'soon' compares a time or duration with '<': a missing date makes it 0 there, so the test can pass on "
        "an event without milestone.scheduled_end_time; test the date first ({\"!!\": {\"var\": \"<date>.value\"}}) "
        "or compare times with 'after'/'before'",
        "10: rule 'isset' tests {var: milestone.actual_end_time} as true or false: an empty date object {} counts as set; "
        'test its value: {"!!": {"var": "milestone.actual_end_time.value"}}',
    ], done.stdout


def test_careful_rules_near_the_pitfalls_pass_without_a_word(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text((ROOT / "tests" / "data" / "careful-rules.yaml").read_text())
    done = hookrules("check", str(tmp_path), env=base_env(HOOKRULES_HTTP_ALLOW_HOSTS="hooks.example.com"))
    assert done.returncode == 0, done.stderr
    assert "OK: 6 rule(s)" in done.stdout and "warning" not in done.stdout, done.stdout


@pytest.mark.parametrize(("body", "kind"), [
    (b' {"milestone": {}}', "application/json"), (b"[1]", "application/json"),
    (b"<project><id>1</id></project>", "application/xml"), (b"id=1&name=x", "application/x-www-form-urlencoded"),
])
def test_try_reads_a_body_by_its_first_character(body: bytes, kind: str) -> None:
    from engine.cli import guess_content_type

    assert guess_content_type(body) == kind


def test_try_without_the_fetched_replies_says_so_and_a_missing_count_is_not_zero(tmp_path: Path) -> None:
    (tmp_path / "post.txt").write_text("id=170876000003152069&name=Banner&status=active&end_date=12-31-2016")
    out = hookrules("try", str(tmp_path / "post.txt"), "--source", "zoho", env=base_env(HOOKRULES_SOURCE_ZOHO_SECRET="x")).stdout
    assert "rule archive-finished-project [on] (" in out and "): not matched\n  (not fetched: details;" in out, out
    assert "reading fetched.details.projects.0.milestone_count.open = (missing)" in out


SHADOW_SCAN = """\
id: archive-overdue-projects
mode: shadow
on: {schedule: "0 6 * * *", fetch: {zoho.projects.list: {status: active}}}
when: {after: [{now: []}, {var: project.end_date}]}
then:
  - zoho.projects.update: {project_id: "{{ project.id }}", name: "{{ project.name }}", status: archived}
"""


def test_a_shadow_scan_whose_items_reach_rules_that_act_is_a_warning(tmp_path: Path) -> None:
    """Found trying hookrules as a Zoho admin: a scan tried in shadow mode archived a project
    through the shipped rule, which hears project.* and is on."""
    for shipped in (ROOT / "rules").glob("*.yaml"):
        (tmp_path / shipped.name).write_text(shipped.read_text())
    (tmp_path / "scan.yaml").write_text(SHADOW_SCAN)
    done = hookrules("check", str(tmp_path), env=base_env(HOOKRULES_SOURCE_ZOHO_SECRET="x"))
    assert done.returncode == 0, done.stderr
    assert (f"warning: {tmp_path / 'scan.yaml'}:1: rule 'archive-overdue-projects' is in shadow mode, but each item its "
            "scan brings (project.scanned) also reaches 'archive-finished-project', which is on and acts on it") in done.stdout
    (tmp_path / "scan.yaml").write_text(SHADOW_SCAN.replace("mode: shadow", "mode: 'on'"))
    assert "warning" not in hookrules("check", str(tmp_path), env=base_env(HOOKRULES_SOURCE_ZOHO_SECRET="x")).stdout


def test_a_zoho_example_reads_dates_as_intake_does(tmp_path: Path) -> None:
    """An example's end_date gains end_date_long, as a Zoho webhook's does at intake."""
    (tmp_path / "r.yaml").write_text("""\
id: ended
on: {source: zoho, event: "project.*"}
when: {">": [{var: project.end_date_long}, 0]}
then:
  - http.request: {method: POST, url: "https://hooks.example.com/ended"}
examples:
  - name: has an end date
    event: {project: {id: "170876000003152069", end_date: "12-31-2016"}}
    expect: {matches: true}
""")
    done = hookrules("check", str(tmp_path), env=base_env(HOOKRULES_SOURCE_ZOHO_SECRET="x", HOOKRULES_HTTP_ALLOW_HOSTS="hooks.example.com"))
    assert done.returncode == 0 and "examples: 1 passed, 0 failed" in done.stdout, done.stdout + done.stderr


def test_an_empty_allow_list_is_one_warning_not_one_per_action(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(HTTP_RULE)
    (tmp_path / "b.yaml").write_text(HTTP_RULE.replace("id: tell-chat", "id: tell-chat-too"))
    env = {k: v for k, v in base_env().items() if k != "HOOKRULES_HTTP_ALLOW_HOSTS"}
    warnings = [line for line in hookrules("check", str(tmp_path), env=env).stdout.splitlines() if line.startswith("warning")]
    assert warnings == ["warning: HOOKRULES_HTTP_ALLOW_HOSTS is empty, so every http.request is refused: 2 action(s) of "
                        "'tell-chat', 'tell-chat-too' send to hosts it does not list"], warnings


def test_a_rule_that_keeps_scanned_items_out_is_not_named_by_the_shadow_scan_warning(tmp_path: Path) -> None:
    for shipped in (ROOT / "rules").glob("*.yaml"):
        text = shipped.read_text()
        if "archive-finished-project" in text:  # the guard an admin adds after reading the warning
            text = text.replace('''when:
  and:
''', '''when:
  and:
    - "!=": [{var: event.type}, project.scanned]
''', 1)
        (tmp_path / shipped.name).write_text(text)
    (tmp_path / "scan.yaml").write_text(SHADOW_SCAN)
    done = hookrules("check", str(tmp_path), env=base_env(HOOKRULES_SOURCE_ZOHO_SECRET="x"))
    assert done.returncode == 0 and "warning" not in done.stdout, done.stdout + done.stderr
