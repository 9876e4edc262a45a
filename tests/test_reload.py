"""Rule edits are picked up while running; a broken edit is refused and the last good ruleset
keeps deciding, with the problem shown in /health until fixed."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import httpx
import pytest
import redis

from conftest import ADMIN, ROOT, Service, base_env, run_service, wait_until, with_db
from stand_in import StandIn

SAMPLE = json.loads((ROOT / "samples" / "milestone-slipped.json").read_text())


def health(service: Service) -> dict:
    return httpx.get(f"{service.url}/ready", headers=ADMIN, timeout=5).json()


def decided(service: Service, description: str) -> dict:
    body = json.loads(json.dumps(SAMPLE))
    body["milestone"]["description"] = description
    event_id = service.post(json.dumps(body).encode()).json()["event_id"]
    record = service.wait_event(event_id, lambda r: r["decision"] is not None)
    assert record is not None, service.logs()
    return record["decision"]


def test_good_edit_applies_and_broken_edit_is_refused_while_events_flow(redis_url: str, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    url = with_db(redis_url, 9)
    db = redis.Redis.from_url(url)
    db.flushdb()
    with StandIn() as sdp:
        env = base_env(REDIS_URL=url, HOOKRULES_RULES_DIR=str(rules), HOOKRULES_RELOAD_INTERVAL="0.2",
                       HOOKRULES_SDP_URL=sdp.url + "/app/x", HOOKRULES_SDP_TOKEN="t")
        service = run_service(tmp_path, env, sdp=sdp, db=db)
        try:
            first = health(service)["ruleset"]["version"]
            assert [r["rule_id"] for r in decided(service, "before")["results"]] == [
                "close-finished-milestone", "raise-priority-when-slipping"]

            # A good edit: the priority rule goes to shadow mode.
            path = rules / "sdp-milestones.yaml"
            text = path.read_text()
            path.write_text(text.replace("  - id: raise-priority-when-slipping\n", "  - id: raise-priority-when-slipping\n    mode: shadow\n"))
            assert wait_until(lambda: health(service)["ruleset"]["version"] != first, timeout_s=40)
            second = health(service)["ruleset"]["version"]
            assert wait_until(lambda: health(service)["worker"]["ruleset_version"] == second, timeout_s=40)
            after_edit = decided(service, "after a good edit")
            assert after_edit["actions"] == [] and [a["rule_id"] for a in after_edit["shadowed"]] == ["raise-priority-when-slipping"]

            # A broken edit: refused; the shadow version keeps running and /health says why.
            path.write_text(path.read_text().replace("event: \"milestone.*\"", "event: [", 1))
            report = wait_until(lambda: (h := health(service))["ruleset"]["errors"] and h, timeout_s=40)
            assert report, service.logs()
            assert report["ruleset"]["version"] == second
            assert report["ruleset"]["errors"][0].startswith(f"{path}:")
            assert any("the last rule edit was refused" in w for w in report["warnings"])
            assert httpx.get(f"{service.url}/ready", headers=ADMIN, timeout=5).status_code == 200  # still serving
            still = decided(service, "while the edit is broken")
            assert [a["rule_id"] for a in still["shadowed"]] == ["raise-priority-when-slipping"]
            assert "rule edit refused" in service.logs()

            # Fixed: errors clear.
            path.write_text(text)
            assert wait_until(lambda: health(service)["ruleset"]["errors"] == [], timeout_s=40)
            assert health(service)["ruleset"]["version"] == first

            # A rule for a source the sources file lacks loads, and /ready warns it never fires.
            (rules / "typo.yaml").write_text(
                "id: typo\non: {source: sdb, event: '*'}\nthen:\n  - http.request: {method: GET, url: 'http://127.0.0.1:9/'}\n")
            warned = wait_until(lambda: [w for w in health(service)["warnings"] if "listens to source 'sdb'" in w], timeout_s=40)
            assert warned and "did you mean 'sdp'?" in warned[0], health(service)
        finally:
            for process in service.processes:
                process.stop()


KUBE_RULE = """\
id: %s
description: a rule as a ConfigMap key
on: {source: sdp, event: "milestone.*"}
when: {changed: milestone.actual_end_time}
then:
  - sdp.milestones.update: {project_id: "1", milestone_id: "2", fields: {status: {name: Closed}}}
"""


def test_a_configmap_mounted_as_the_rules_directory_loads_each_file_once(tmp_path: Path) -> None:
    """Kubernetes mounts a ConfigMap as symlinks into a hidden `..data` directory, beside the
    timestamped directory it points at; an editor leaves hidden swap files. Only the visible
    files are rules, each once, and a kubelet-style swap is seen as an edit."""
    from engine.config import Targets
    from engine.reload import RulesReloader
    from engine.rule_files import load_ruleset

    mount = tmp_path / "rules"
    first = mount / "..2026_12_01_10_00_00.1"
    first.mkdir(parents=True)
    (first / "close-when-done.yaml").write_text(KUBE_RULE % "close-when-done")
    (mount / "..data").symlink_to(first.name)
    (mount / "close-when-done.yaml").symlink_to("..data/close-when-done.yaml")
    (mount / ".close-when-done.yaml.swp.yaml").write_text("not: [a rule")
    ruleset = load_ruleset(mount, Targets())
    assert [rule.id for rule in ruleset.rules] == ["close-when-done"]
    assert [Path(f).name for f in ruleset.files] == ["close-when-done.yaml"]

    reloader = RulesReloader(mount, Targets(), ruleset)
    second = mount / "..2026_12_01_10_05_00.2"
    second.mkdir()
    (second / "close-when-done.yaml").write_text(KUBE_RULE % "close-when-finished")
    (mount / "..data_tmp").symlink_to(second.name)
    (mount / "..data_tmp").rename(mount / "..data")  # the kubelet's atomic swap
    assert reloader.poll() and [rule.id for rule in reloader.ruleset.rules] == ["close-when-finished"]


def test_a_refused_edit_put_back_says_the_rules_load_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from engine.config import load_settings
    from engine.reload import RulesReloader
    from engine.rule_files import load_ruleset

    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    targets = load_settings(base_env()).targets
    reloader = RulesReloader(rules, targets, load_ruleset(rules, targets))
    running = reloader.ruleset.version
    path = rules / "sdp-milestones.yaml"
    text = path.read_text()
    caplog.set_level(logging.INFO, logger="hookrules")
    path.write_text(text.replace('event: "milestone.*"', "event: [", 1))
    assert reloader.poll() and reloader.errors
    path.write_text(text)  # put back: the same version as the one running
    assert reloader.poll() and reloader.errors == () and reloader.ruleset.version == running
    assert caplog.messages[-1] == f"the rule files load again, as the running version {running} (3 rule(s))"
