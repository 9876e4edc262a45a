"""Scheduled rules: a cron tick scans a list in the sandbox and each item goes through the same
decide() as a webhook; with two workers, each tick is scanned once."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import redis

from conftest import ADMIN, base_env, run_service, start, wait_until, with_db
from engine.schedule import due_tick, latest_tick
from engine.sandbox import SandboxSettings
from sandbox_server import running_sandbox

PROJECT = "2258743870606263"
RULE = """\
id: close-overdue
description: Close milestones whose scheduled end has passed.
on:
  schedule: "0 0 1 1 *"
  fetch: {sdp.milestones.list: {project_id: "2258743870606263"}}
when:
  and:
    - after: [{now: []}, {var: milestone.scheduled_end_time}]
    - "!=": [{var: milestone.status.name}, Closed]
then:
  - sdp.milestones.update:
      project_id: "{{ milestone.project.id }}"
      milestone_id: "{{ milestone.id }}"
      fields: {status: Closed}
"""


def test_ticks() -> None:
    t = 1_764_000_000.0  # 2025-11-24 16:00:00 UTC
    assert latest_tick("*/15 * * * *", t + 14 * 60) == t
    assert latest_tick("0 * * * *", t + 59) == t
    assert due_tick("0 * * * *", t + 30, catch_up_s=600) == t
    assert due_tick("0 * * * *", t + 3000, catch_up_s=600) is None  # missed long ago: skipped


def test_scheduled_rule_closes_overdue_milestones_once_per_tick(redis_url: str, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "overdue.yaml").write_text(RULE)
    url = with_db(redis_url, 10)
    db = redis.Redis.from_url(url)
    db.flushdb()
    with running_sandbox(SandboxSettings(static_tokens=frozenset({"tok"}))) as sandbox:
        listing = f"{sandbox.url}/_sandbox/stats"
        env = base_env(REDIS_URL=url, HOOKRULES_RULES_DIR=str(rules), HOOKRULES_SDP_URL=f"{sandbox.url}/app/itdesk",
                       HOOKRULES_SDP_TOKEN="tok", HOOKRULES_SDP_RATE="50", HOOKRULES_SDP_BURST="50",
                       HOOKRULES_SCHEDULE_CATCHUP=str(400 * 24 * 3600))  # this year's 1 January tick is due

        def stored(milestone_id: str) -> dict:
            return httpx.get(f"{sandbox.url}/_sandbox/milestones/{PROJECT}/{milestone_id}", timeout=5).json()

        open_before = [str(2007594064055157 + n) for n in range(30) if stored(str(2007594064055157 + n))["status"]["name"] != "Closed"]
        assert len(open_before) == 22
        service = run_service(tmp_path, env, db=db)
        service.processes.append(start(["worker"], {**env, "HOOKRULES_PORT": "0"}, tmp_path))
        try:
            closed = wait_until(lambda: all(stored(m)["status"]["name"] == "Closed" for m in open_before), timeout_s=60)
            assert closed, service.logs()
            time.sleep(6)  # both workers' scheduler loops have run again by now
            requests = httpx.get(listing, timeout=5).json()["requests"]
            lists = {k: v for k, v in requests.items() if k.startswith("GET ") and k.endswith("/milestones")}
            assert list(lists.values()) == [1], requests  # one scan for the tick, not one per worker
            puts = sum(v for k, v in requests.items() if k.startswith("PUT "))
            assert puts == 22  # each overdue milestone closed once
            health = httpx.get(f"{service.url}/ready", headers=ADMIN, timeout=5).json()
            scan = health["schedules"]["close-overdue"]
            assert scan["schedule"] == "0 0 1 1 *" and scan["last_scan"]["items"] == 30 and scan["last_scan"]["error"] is None
        finally:
            for process in service.processes:
                process.stop()
