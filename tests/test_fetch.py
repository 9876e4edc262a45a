"""A rule's `fetch`: reads done before `when`, used in the condition and the templates, one
read per distinct request per event however many rules ask for it."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import redis

from conftest import base_env, run_service, with_db
from engine.sandbox import SandboxSettings
from sandbox_server import running_sandbox

PROJECT, MILESTONE = "2258743870606263", "2007594064055157"
RULES = """\
rules:
  - id: retitle-open
    on: {source: sdp, event: "milestone.*"}
    fetch:
      full: {sdp.milestones.get: {project_id: "{{ milestone.project.id }}", milestone_id: "{{ milestone.id }}"}}
    when: {"==": [{var: fetched.full.milestone.status.name}, Open]}
    then:
      - sdp.milestones.update:
          project_id: "{{ milestone.project.id }}"
          milestone_id: "{{ milestone.id }}"
          fields: {title: "{{ fetched.full.milestone.title }} (checked)"}
  - id: same-read-again
    mode: shadow
    on: {source: sdp, event: "milestone.*"}
    fetch:
      again: {sdp.milestones.get: {project_id: "{{ milestone.project.id }}", milestone_id: "{{ milestone.id }}"}}
    when: {"!!": {var: fetched.again.milestone.id}}
    then: [{http.request: {method: GET, url: "https://example.invalid/{{ fetched.again.milestone.id }}"}}]
  - id: missing-milestone
    on: {source: sdp, event: "milestone.*"}
    fetch:
      gone: {sdp.milestones.get: {project_id: "{{ milestone.project.id }}", milestone_id: "1"}}
    then: [{http.request: {method: GET, url: "https://example.invalid/"}}]
"""


def test_fetch_enriches_a_thin_webhook(redis_url: str, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "fetching.yaml").write_text(RULES)
    url = with_db(redis_url, 11)
    db = redis.Redis.from_url(url)
    db.flushdb()
    with running_sandbox(SandboxSettings(static_tokens=frozenset({"tok"}))) as sandbox:
        env = base_env(REDIS_URL=url, HOOKRULES_RULES_DIR=str(rules), HOOKRULES_SDP_URL=f"{sandbox.url}/app/itdesk", HOOKRULES_SDP_TOKEN="tok")
        service = run_service(tmp_path, env, db=db)
        try:
            thin = {"milestone": {"id": MILESTONE, "project": {"id": PROJECT}}}  # only ids, as some webhooks send
            event_id = service.post(json.dumps(thin).encode()).json()["event_id"]
            record = service.wait_event(event_id, lambda r: r["actions"].get("retitle-open:0", {}).get("outcome") == "done")
            assert record is not None, service.logs()
            milestone = httpx.get(f"{sandbox.url}/_sandbox/milestones/{PROJECT}/{MILESTONE}", timeout=5).json()
            assert milestone["title"] == "test-title (checked)"
            results = {r["rule_id"]: r for r in record["decision"]["results"]}
            assert results["same-read-again"]["matched"] is True
            assert results["missing-milestone"]["matched"] is False
            assert results["missing-milestone"]["error"].startswith("fetch failed: gone: SDP 4000:")
            gets = httpx.get(f"{sandbox.url}/_sandbox/stats", timeout=5).json()["requests"]
            one = "GET /app/{portal}/api/v3/projects/{project_id}/milestones/{milestone_id}"
            assert gets[one] == 2  # the shared read once, the failing one once: not three
        finally:
            for process in service.processes:
                process.stop()
