"""Delivery guarantees under faults, each proved against real processes, a real Redis and the
sandbox over loopback: retries, Retry-After, dead letters and replay, echoes and loops."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from conftest import ADMIN, base_env, wait_until, with_db
from faults import PROJECT, counted_sandbox, fault_service, milestone_body
from test_cli import hookrules

MILESTONE = "2007594064055160"
PRIORITY_RULE = """\
id: raise-priority
on: {source: sdp, event: "milestone.*"}
when: {changed: milestone.description}
then:
  - sdp.milestones.update:
      project_id: "{{ milestone.project.id }}"
      milestone_id: "{{ milestone.id }}"
      fields: {priority: %s}
"""


def outcome_of(service, event_id: str, key: str, final=("done", "failed")):  # noqa: ANN001, ANN201
    record = service.wait_event(event_id, lambda r: r["actions"].get(key, {}).get("outcome") in final, timeout_s=40)
    assert record is not None, service.logs()
    return record["actions"][key]


def rules_with(tmp_path: Path, text: str) -> Path:
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "rule.yaml").write_text(text)
    return rules


def test_500_three_times_then_200_is_one_change_and_four_attempts(redis_url: str, tmp_path: Path) -> None:
    with counted_sandbox() as (url, applied):
        service = fault_service(tmp_path, redis_url, 12, url, rules_with(tmp_path, PRIORITY_RULE % "High"), HOOKRULES_BACKOFF="0.1")
        try:
            fault = {"status": 500, "count": 3, "path_contains": f"/milestones/{MILESTONE}"}
            httpx.post(f"{url}/_sandbox/faults", json=fault, timeout=5)
            event_id = service.post(milestone_body(MILESTONE, description="slipping")).json()["event_id"]
            outcome = outcome_of(service, event_id, "raise-priority:0")
            assert outcome["outcome"] == "done" and outcome["attempts"] == 4
            assert [h["http_status"] for h in outcome["history"]] == [500, 500, 500, 200]
            assert [h["outcome"] for h in outcome["history"]] == ["retrying", "retrying", "retrying", "done"]
            assert applied.puts[MILESTONE] == 1
        finally:
            for process in service.processes:
                process.stop()


def test_429_with_retry_after_2_is_not_tried_again_sooner(redis_url: str, tmp_path: Path) -> None:
    with counted_sandbox() as (url, applied):
        service = fault_service(tmp_path, redis_url, 12, url, rules_with(tmp_path, PRIORITY_RULE % "High"), HOOKRULES_BACKOFF="0.1")
        try:
            fault = {"status": 429, "retry_after": 2, "count": 1, "path_contains": f"/milestones/{MILESTONE}"}
            httpx.post(f"{url}/_sandbox/faults", json=fault, timeout=5)
            event_id = service.post(milestone_body(MILESTONE, description="slipping")).json()["event_id"]
            history = outcome_of(service, event_id, "raise-priority:0")["history"]
            assert [h["http_status"] for h in history] == [429, 200]
            assert history[1]["at"] - history[0]["at"] >= 2.0
            assert applied.puts[MILESTONE] == 1
        finally:
            for process in service.processes:
                process.stop()


def test_a_400_is_a_dead_letter_and_replay_after_the_fix_applies_it_once(redis_url: str, tmp_path: Path) -> None:
    rules = rules_with(tmp_path, PRIORITY_RULE % "Urgent")  # SDP has no priority "Urgent": 400
    with counted_sandbox() as (url, applied):
        service = fault_service(tmp_path, redis_url, 12, url, rules)
        admin = ADMIN
        try:
            event_id = service.post(milestone_body(MILESTONE, description="slipping")).json()["event_id"]
            outcome = outcome_of(service, event_id, "raise-priority:0")
            assert outcome["outcome"] == "failed" and outcome["http_status"] == 400 and outcome["attempts"] == 1
            assert "priority" in outcome["error"]
            letter = f"{event_id}:raise-priority:0"
            assert httpx.get(f"{service.url}/admin/dead-letters", timeout=5).status_code == 401
            listed = httpx.get(f"{service.url}/admin/dead-letters", headers=admin, timeout=5).json()["dead_letters"]
            assert [d["id"] for d in listed] == [letter] and listed[0]["http_status"] == 400
            shown = hookrules("dead", "list", env=base_env(REDIS_URL=with_db(redis_url, 12)))
            assert shown.returncode == 0 and letter in shown.stdout and "1 dead letter(s)" in shown.stdout

            broken = httpx.get(f"{service.url}/ready", headers=ADMIN, timeout=5).json()["ruleset"]["version"]
            (rules / "rule.yaml").write_text(PRIORITY_RULE % "High")  # the fix

            def fixed_everywhere() -> bool:
                health = httpx.get(f"{service.url}/ready", headers=ADMIN, timeout=5).json()
                return health["ruleset"]["version"] != broken and health["worker"]["ruleset_version"] == health["ruleset"]["version"]

            assert wait_until(fixed_everywhere, timeout_s=10)
            replayed = httpx.post(f"{service.url}/admin/dead-letters/{letter}/replay", headers=admin, timeout=5)
            assert replayed.status_code == 202, replayed.text
            again = httpx.post(f"{service.url}/admin/dead-letters/{letter}/replay", headers=admin, timeout=5)
            assert again.status_code == 404  # no longer dead: replaying twice does not send twice
            done = outcome_of(service, event_id, "raise-priority:0", final=("done",))
            assert done["replay"] == 1 and [h["http_status"] for h in done["history"]] == [400, 200]
            milestone = httpx.get(f"{url}/_sandbox/milestones/{PROJECT}/{MILESTONE}", timeout=5).json()
            assert milestone["priority"]["name"] == "High"
            assert applied.puts[MILESTONE] == 1
            assert httpx.get(f"{service.url}/admin/dead-letters", headers=admin, timeout=5).json()["dead_letters"] == []
        finally:
            for process in service.processes:
                process.stop()


TITLE_RULE = """\
id: tick-title
on: {source: sdp, event: "milestone.*"%s}
when: {changed: milestone.title}
then:
  - sdp.milestones.update:
      project_id: "{{ milestone.project.id }}"
      milestone_id: "{{ milestone.id }}"
      fields: {title: "{{ milestone.title }} +"}
"""


def echo_back(service, url: str) -> str:  # noqa: ANN001
    """Do what ServiceDesk Plus does after a change: send the milestone as it now is."""
    milestone = httpx.get(f"{url}/_sandbox/milestones/{PROJECT}/{MILESTONE}", timeout=5).json()
    return service.post(json.dumps({"milestone": milestone}).encode()).json()["event_id"]


def test_the_echo_of_our_own_write_does_not_trigger_the_rule_again(redis_url: str, tmp_path: Path) -> None:
    with counted_sandbox() as (url, applied):
        service = fault_service(tmp_path, redis_url, 12, url, rules_with(tmp_path, TITLE_RULE % ""))
        try:
            first = service.post(milestone_body(MILESTONE, title="Plan")).json()["event_id"]
            assert outcome_of(service, first, "tick-title:0")["outcome"] == "done"
            echo = echo_back(service, url)
            record = service.wait_event(echo, lambda r: r["decision"] is not None)
            assert record["decision"]["results"] == [
                {"rule_id": "tick-title", "mode": "on", "matched": False, "error": None, "skipped": "an echo of hookrules' own write", "because": None}]
            # A real edit afterwards is news again.
            later = service.post(milestone_body(MILESTONE, title="Plan B")).json()["event_id"]
            assert outcome_of(service, later, "tick-title:0")["outcome"] == "done"
            assert applied.puts[MILESTONE] == 2
        finally:
            for process in service.processes:
                process.stop()


def test_a_rule_that_feeds_on_its_own_echoes_is_stopped_as_a_loop(redis_url: str, tmp_path: Path) -> None:
    with counted_sandbox() as (url, applied):
        service = fault_service(tmp_path, redis_url, 12, url, rules_with(tmp_path, TITLE_RULE % ", echoes: true"),
                                HOOKRULES_LOOP_LIMIT="3")
        try:
            event_id = service.post(milestone_body(MILESTONE, title="Plan")).json()["event_id"]
            for _ in range(5):  # SDP echoes every change back; the rule opted in to echoes
                record = service.wait_event(event_id, lambda r: r["decision"] is not None and all(
                    a["outcome"] in ("done", "failed") for a in r["actions"].values()) and len(r["actions"]) == len(r["decision"]["actions"]))
                assert record is not None, service.logs()
                event_id = echo_back(service, url)
            assert applied.puts[MILESTONE] == 3
            stopped = service.wait_event(event_id, lambda r: r["decision"] is not None)
            health = httpx.get(f"{service.url}/ready", headers=ADMIN, timeout=5).json()
            assert [(loop["rule"], loop["entity"]) for loop in health["loops"]] == [("tick-title", f"sdp:milestone:{MILESTONE}")]
            assert any("stopped as a loop" in w for w in health["warnings"])
            assert stopped["decision"]["actions"] == []
        finally:
            for process in service.processes:
                process.stop()
