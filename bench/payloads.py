"""What the bench sends and loads: webhook bodies and generated rule files.

The webhook is an SDP milestone as samples/milestone-completed.json shows one (compact JSON,
about 1.5 KB), with two slots filled per request: the milestone id and its projected end.
Event k of a run goes to milestone ids[k % len(ids)] with projected end first + k ms, `first`
never reused across runs (e2e.Pe), so every event of a milestone moves its projected end (the
matching rule's `changed` holds every time) and successive events hit different milestones
(events of one milestone are decided strictly one after the other). The body says priority
Medium while the matching rule writes High, so no event is an echo of hookrules' own write.
"""

from __future__ import annotations

import json
from pathlib import Path

ID_SLOT, PE_SLOT = "@@ID@@", "@@PE@@"
PROJECT_ID = "2258743870606263"  # the sandbox's seeded SDP project (engine/sandbox_data.py)
SCHEDULED_END = 1512974940000
BASE_PE = SCHEDULED_END + 86_400_000  # a day after the scheduled end: always "slipping"
MATCHING_RULE = "bench-match"

_OWNER = {"email_id": "lincoln@zmail.com", "is_technician": False, "sms_mail": "linc123@xys_sms.co",
          "phone": "test-phone", "name": "Lincoln", "mobile": "test-mobile", "id": "1883741825469733",
          "photo_url": "test-photo_url", "is_vip_user": False}


def _date(ms: int | str, shown: str) -> dict[str, str]:
    return {"display_value": shown, "value": str(ms)}


def milestone_body() -> dict:
    """The webhook body with both slots; priority Medium and status Open, no actual end."""
    return {"milestone": {
        "id": ID_SLOT,
        "owner": _OWNER,
        "created_time": _date(1478758440000, "Nov 10, 2016 11:44 AM"),
        "index": "1",
        "description": ("Bench milestone: design review, build, integration test, user acceptance and hand-over of "
                        "the release to operations, with the runbook and the rollback plan signed off."),
        "project": {"project_code": "test-project_code", "id": PROJECT_ID,
                    "display_id": {"display_value": "PJT-131", "value": "131"}, "title": "test-title"},
        "title": "Bench milestone",
        "priority": {"color": "#ffffff", "name": "Medium", "id": "1968809555410720"},
        "scheduled_start_time": _date(1421988300000, "Jan 23, 2015 10:15 AM"),
        "scheduled_end_time": _date(SCHEDULED_END, "Dec 11, 2017 12:19 PM"),
        "actual_start_time": _date(1421988300000, "Jan 23, 2015 10:15 AM"),
        "projected_end": _date(PE_SLOT, "Dec 12, 2017 12:19 PM"),
        "estimated_hours": "2204",
        "actual_hours": "1605",
        "user": {**_OWNER, "id": "2387253526439501"},
        "status": {"internal_name": "Open", "color": "#ffffff", "name": "Open", "id": "2058840951375596"},
    }}


def body_template() -> str:
    return json.dumps(milestone_body(), separators=(",", ":"))


def body_parts() -> tuple[bytes, bytes, bytes]:
    """(before the id, between the id and the projected end, after): the hot loop only joins."""
    head, rest = body_template().split(ID_SLOT)
    middle, tail = rest.split(PE_SLOT)  # milestone_body() puts the id first
    return head.encode(), middle.encode(), tail.encode()


def body(milestone_id: str, projected_end: int) -> bytes:
    head, middle, tail = body_parts()
    return head + milestone_id.encode() + middle + str(projected_end).encode() + tail


def write_template(path: Path) -> Path:
    path.write_text(body_template())
    return path


# ---- rules ---------------------------------------------------------------------------------

MATCHING_WHEN = {"and": [
    {"changed": "milestone.projected_end"},
    {"after": [{"var": "milestone.projected_end"}, {"var": "milestone.scheduled_end_time"}]},
    {"!=": [{"var": "milestone.status.name"}, "Closed"]},
    {"!=": [{"var": "milestone.priority.name"}, "Low"]},
]}


def matching_rule(rule_id: str = MATCHING_RULE, source: str = "sdp", event: str = "milestone.*") -> dict:
    """Flags a slipping milestone: raises its priority and notes the projected end."""
    return {
        "id": rule_id,
        "description": "A milestone whose projected end moved past its scheduled end gets priority High.",
        "on": {"source": source, "event": event},
        "when": MATCHING_WHEN,
        "then": [{"sdp.milestones.update": {
            "project_id": "{{ %s.project.id }}" % event.split(".")[0],
            "milestone_id": "{{ %s.id }}" % event.split(".")[0],
            "fields": {"priority": {"name": "High"},
                       "description": "Slipping: projected end {{ %s.projected_end.value }}" % event.split(".")[0]},
        }}],
    }


def non_matching_when(kind: str, n: int) -> dict:
    """Realistic conditions, custom operators included, that no bench event satisfies."""
    v = lambda path: {"var": f"{kind}.{path}"}  # noqa: E731
    shapes = [
        {"and": [{"changed_to": [f"{kind}.status.name", "Closed"]}, {"!!": v("actual_end_time.value")}]},
        {"and": [{"changed": f"{kind}.owner"}, {"==": [v("owner.name"), f"Owner {n}"]}]},
        {"and": [{"before": [v("projected_end"), v("scheduled_start_time")]}, {"!=": [v("status.name"), "Closed"]}]},
        {"and": [{">": [{"days_between": [v("scheduled_end_time"), v("projected_end")]}, 1000 + n]},
                 {"==": [v("priority.name"), "Low"]}]},
        {"changed_from": [f"{kind}.priority.name", f"Urgent {n}"]},
        {"and": [{"in": [f"tag-{n}", v("title")]}, {"after": [{"now": []}, v("scheduled_end_time")]}]},
    ]
    return shapes[n % len(shapes)]


def non_matching_rule(n: int, source: str, event: str) -> dict:
    kind = event.split(".")[0]
    return {
        "id": f"bench-other-{n:05d}",
        "description": f"Generated rule {n}: never true for the bench's events.",
        "on": {"source": source, "event": event},
        "when": non_matching_when(kind, n),
        "then": [{"sdp.milestones.update": {
            "project_id": "{{ %s.project.id }}" % kind, "milestone_id": "{{ %s.id }}" % kind,
            "fields": {"status": {"name": "Closed"}}}}],
    }


# 100 (source, event) pairs: 4 sources x 25 kinds; pair 0 is what the bench sends.
SOURCES = ("sdp", "zoho", "sdp-eu", "jira")
KINDS = ("milestone", "request", "task", "project", "change", "problem", "asset", "contract", "release",
         "solution", "worklog", "survey", "purchase", "announcement", "incident", "site", "department",
         "vendor", "invoice", "timesheet", "phase", "comment", "approval", "note", "checklist")
PAIRS = [(source, f"{kind}.*") for source in SOURCES for kind in KINDS]


def spread_rules(count: int, all_listening: bool = False) -> list[dict]:
    """`count` rules, rule i on pair i % 100 (so ~1% listen to the bench event), or all on
    pair 0; rule 0 is the one that matches."""
    rules = []
    for i in range(count):
        source, event = PAIRS[0] if all_listening else PAIRS[i % len(PAIRS)]
        rules.append(matching_rule(source=source, event=event) if i == 0 else non_matching_rule(i, source, event))
    return rules


def processing_rules() -> list[dict]:
    """100 rules for the end-to-end runs: the matching one, 24 more on milestone events whose
    conditions are false, 75 on other sources and kinds."""
    rules = [matching_rule()]
    for i in range(1, 100):
        source, event = PAIRS[0] if i < 25 else PAIRS[i]
        rules.append(non_matching_rule(i, source, event))
    return rules


def write_rules(directory: Path, rules: list[dict], per_file: int = 100) -> Path:
    """Rule files as a person writes them (YAML is a superset of JSON: one `rules:` list per file)."""
    directory.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(rules), per_file):
        chunk = rules[start:start + per_file]
        (directory / f"bench-{start // per_file:04d}.yaml").write_text(json.dumps({"rules": chunk}, indent=1))
    return directory
