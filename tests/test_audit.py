"""Finding out what the engine did: GET /events with filters, `hookrules events` and
`hookrules status`, and /health catching workers that live but take no jobs."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import httpx
import redis

from conftest import ADMIN, ROOT, Service, base_env, run_service, wait_until, with_db
from test_cli import hookrules


def post_milestone(service: Service, sample: str) -> tuple[str, str]:
    body = json.loads((ROOT / "samples" / sample).read_text())
    milestone_id = str(random.randrange(10**14, 10**15))
    body["milestone"]["id"] = milestone_id
    event_id = service.post(json.dumps(body).encode()).json()["event_id"]
    assert service.wait_event(event_id, lambda r: r["decision"] is not None)
    return event_id, milestone_id


def events(service: Service, **query: object) -> list[dict]:
    reply = httpx.get(f"{service.url}/events", params=query, headers=ADMIN, timeout=10)
    assert reply.status_code == 200, reply.text
    return reply.json()["events"]


def test_events_can_be_listed_and_filtered(service: Service) -> None:
    closed_id, closed_milestone = post_milestone(service, "milestone-completed.json")
    slipped_id, _ = post_milestone(service, "milestone-slipped.json")
    newest = events(service, limit=2)
    assert [e["id"] for e in newest] == [slipped_id, closed_id]
    assert newest[1]["matched"] == ["close-finished-milestone"] and newest[1]["entity"] == f"milestone:{closed_milestone}"
    by_rule = [e["id"] for e in events(service, rule="raise-priority-when-slipping", limit=100)]
    assert slipped_id in by_rule
    assert [e["id"] for e in events(service, entity=f"milestone:{closed_milestone}")] == [closed_id]
    assert events(service, entity=closed_milestone)[0]["id"] == closed_id
    assert events(service, source="nobody") == []
    assert events(service, since=time.time() + 60) == []
    # By what became of their actions
    assert service.wait_event(closed_id, lambda r: r["actions"].get("close-finished-milestone:0", {}).get("outcome") == "done")
    assert closed_id in [e["id"] for e in events(service, outcome="done", limit=500)]
    assert closed_id not in [e["id"] for e in events(service, outcome="shadow", limit=500)]
    bad = httpx.get(f"{service.url}/events", params={"limit": 0}, headers=ADMIN, timeout=5)
    assert bad.status_code == 400 and "limit" in bad.json()["error"]
    assert httpx.get(f"{service.url}/events", timeout=5).status_code == 401


def test_cli_events_and_status(service: Service, redis_url: str) -> None:
    event_id, milestone_id = post_milestone(service, "milestone-completed.json")
    env = base_env(REDIS_URL=with_db(redis_url, 1))
    listed = hookrules("events", "--entity", milestone_id, env=env)
    assert listed.returncode == 0 and event_id in listed.stdout and "matched=close-finished-milestone" in listed.stdout
    shown = hookrules("events", event_id, env=env)
    assert shown.returncode == 0 and json.loads(shown.stdout)["event"]["id"] == event_id
    status = hookrules("status", env=env)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "status     ok" in status.stdout and "redis      reachable" in status.stdout
    # From a directory without the rules (a host's shell): the service's state all the same.
    elsewhere = hookrules("status", env={**env, "HOOKRULES_RULES_DIR": "/nonexistent/rules"})
    assert elsewhere.returncode == 0 and "status     ok" in elsewhere.stdout, elsewhere.stdout + elsewhere.stderr
    assert "rules      not read here: /nonexistent/rules: the rules directory does not exist" in elsewhere.stdout
    missing = hookrules("events", "evt_000000000000000000000000", env=env)
    assert missing.returncode == 1 and "no event evt_000000000000000000000000" in missing.stderr


def test_health_fails_when_jobs_wait_although_workers_beat(redis_url: str, tmp_path: Path) -> None:
    url = with_db(redis_url, 6)
    db = redis.Redis.from_url(url)
    db.flushdb()
    api = run_service(tmp_path, base_env(REDIS_URL=url, HOOKRULES_STUCK_QUEUE="1"), worker=False, db=db)
    try:
        # A worker that still beats but takes nothing: a fresh heartbeat, and a job due 5 s ago.
        db.set("hookrules:heartbeat", json.dumps({"at": time.time(), "worker": "stuck:1", "ruleset": "x"}), ex=60)
        db.zadd("arq:queue", {"evt_stuck": int((time.time() - 5) * 1000)})
        reply = httpx.get(f"{api.url}/ready", headers=ADMIN, timeout=5)
        assert reply.status_code == 503
        assert any("the workers are not taking jobs" in p for p in reply.json()["problems"])
        assert reply.json()["queue"]["oldest_wait_s"] >= 5
        status = hookrules("status", env=base_env(REDIS_URL=url, HOOKRULES_STUCK_QUEUE="1"))
        assert status.returncode == 1 and "PROBLEM    a job has waited" in status.stdout
    finally:
        for process in api.processes:
            process.stop()


def test_liveness_and_metrics(service: Service) -> None:
    event_id, _ = post_milestone(service, "milestone-completed.json")
    assert service.wait_event(event_id, lambda r: r["actions"].get("close-finished-milestone:0", {}).get("outcome") == "done")
    service.post(b"{}", {"X-Hook-Token": "wrong"})  # one refused
    alive = httpx.get(f"{service.url}/health", timeout=5)
    assert alive.status_code == 200 and alive.json() == {"status": "alive"}
    assert httpx.get(f"{service.url}/metrics", timeout=5).status_code == 401
    text = httpx.get(f"{service.url}/metrics", headers=ADMIN, timeout=5).text

    def value(series: str) -> float:
        line = next(line for line in text.splitlines() if line.startswith(series + " "))
        return float(line.rsplit(" ", 1)[1])

    assert value('hookrules_webhooks_total{outcome="202",source="sdp"}') >= 1
    assert value('hookrules_webhooks_total{outcome="401",source="sdp"}') >= 1
    assert value('hookrules_rule_matched_total{rule="close-finished-milestone"}') >= 1
    assert value('hookrules_actions_total{connector="sdp",outcome="done"}') >= 1
    assert value("hookrules_decision_latency_seconds_count") >= 1
    assert value("hookrules_up") == 1.0
    assert 'hookrules_ruleset_info{rules="3",version="' in text


def test_json_logs_carry_event_and_rule_ids(redis_url: str, tmp_path: Path) -> None:
    from stand_in import StandIn

    url = with_db(redis_url, 6)
    db = redis.Redis.from_url(url)
    db.flushdb()
    with StandIn() as sdp:
        env = base_env(REDIS_URL=url, HOOKRULES_LOG_FORMAT="json", HOOKRULES_SDP_URL=sdp.url + "/app/x", HOOKRULES_SDP_TOKEN="t0ken-value")
        service = run_service(tmp_path, env, db=db)
        try:
            event_id, _ = post_milestone(service, "milestone-completed.json")
            assert service.wait_event(event_id, lambda r: r["actions"].get("close-finished-milestone:0", {}).get("outcome") == "done")

            def json_lines() -> list[dict]:
                return [json.loads(line) for p in service.processes for line in p.output().splitlines() if line.startswith("{")]

            # The worker logs an event's line after its outcome is stored and its entry acknowledged.
            assert wait_until(lambda: any(line.get("event_id") == event_id and line["process"] == "worker" for line in json_lines()),
                              timeout_s=10)
            lines = json_lines()
        finally:
            for process in service.processes:
                process.stop()
    about = [line for line in lines if line.get("event_id") == event_id]
    assert {line["process"] for line in about} == {"api", "worker"}
    assert any(line.get("rule_id") == "close-finished-milestone" and line.get("action") == "sdp.milestones.update" for line in about)
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
