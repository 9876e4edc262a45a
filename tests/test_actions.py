"""The action catalog: what each operation sends, and what a rule file gets wrong at load time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.actions import ActionError
from engine.config import Connector, Targets
from engine.connectors import CATALOG
from engine.rule_files import load_ruleset
from engine.rules import RuleProblems

SDP = "https://sdp.example/app/itdesk"
ZOHO = "https://projectsapi.zoho.eu/restapi/portal/2063927"
TARGETS = Targets(sdp=Connector("sdp", base_url=SDP, token="t"), zoho=Connector("zoho", base_url=ZOHO, token="t"))
M = {"project_id": "22", "milestone_id": "33"}


def build(action: str, **args: object):  # noqa: ANN201
    spec = CATALOG[action]
    assert spec.problems(args) == []
    return spec.build(args, TARGETS)


def test_catalog_has_every_documented_operation() -> None:
    assert sorted(CATALOG) == sorted([
        "sdp.milestones.add", "sdp.milestones.update", "sdp.milestones.get", "sdp.milestones.list",
        "sdp.milestones.delete", "sdp.milestones.timesheet", "sdp.milestones.upload",
        "zoho.projects.list", "zoho.projects.get", "zoho.projects.custom_fields", "zoho.projects.create",
        "zoho.projects.update", "zoho.projects.delete", "http.request",
    ])


def test_sdp_add_writes_input_data_with_dates_as_value_objects() -> None:
    request = build("sdp.milestones.add", project_id="22", fields={
        "title": "Go live", "scheduled_end_time": "12-31-2026", "projected_end": {"value": 1800000000000, "display_value": "x"},
        "priority": "High", "owner": {"id": "7", "email": "ignored"}})
    assert (request.method, request.url, request.connector) == ("POST", f"{SDP}/api/v3/projects/22/milestones", "sdp")
    assert request.headers == {"Accept": "application/vnd.manageengine.sdp.v3+json", "Content-Type": "application/x-www-form-urlencoded"}
    assert json.loads(request.form["input_data"]) == {"milestone": {
        "title": "Go live",
        "scheduled_end_time": {"value": "1798675200000"},
        "projected_end": {"value": "1800000000000"},
        "priority": {"name": "High"},
        "owner": {"id": "7"},
    }}


@pytest.mark.parametrize(("name", "method", "suffix"), [
    ("sdp.milestones.get", "GET", "/milestones/33"),
    ("sdp.milestones.delete", "DELETE", "/milestones/33"),
    ("sdp.milestones.timesheet", "GET", "/milestones/33/_timesheet"),
])
def test_sdp_reads_and_delete(name: str, method: str, suffix: str) -> None:
    request = build(name, **M)
    assert (request.method, request.url) == (method, f"{SDP}/api/v3/projects/22{suffix}")
    assert request.form is None and request.headers["Accept"].endswith("sdp.v3+json")


def test_sdp_list_pages_through_list_info_in_the_query() -> None:
    request = build("sdp.milestones.list", project_id="22", list_info={"sort_field": "title"})
    assert (request.method, request.url, request.paging) == ("GET", f"{SDP}/api/v3/projects/22/milestones", "sdp")
    assert json.loads(request.query["input_data"]) == {"list_info": {"sort_field": "title", "row_count": 100, "start_index": 1}}


def test_sdp_upload_is_multipart_with_filename_part() -> None:
    request = build("sdp.milestones.upload", **M, filename="notes.txt", content="closed by hookrules", addtoattachment=False)
    assert (request.method, request.url) == ("POST", f"{SDP}/api/v3/projects/22/milestones/33/_uploads")
    assert request.files == {"filename": ["notes.txt", "closed by hookrules", "text/plain"]}
    assert request.form == {"addtoattachment": "false"}
    assert request.headers["Content-Type"] == "multipart/form-data"  # what try and the event record show


def test_zoho_create_sends_form_parameters_and_zoho_dates() -> None:
    request = build("zoho.projects.create", name="SAP Projects", start_date="1401109494737", end_date="12-31-2026",
                    strict_project=2, custom_fields={"UDF_CHAR1": "Firefox"})
    assert (request.method, request.url, request.connector) == ("POST", f"{ZOHO}/projects/", "zoho")
    assert request.headers == {"Content-Type": "application/x-www-form-urlencoded"}
    assert request.form == {"name": "SAP Projects", "start_date": "05-26-2014", "end_date": "12-31-2026",
                            "strict_project": "2", "UDF_CHAR1": "Firefox"}
    typed = build("zoho.projects.create", name="x", end_date="2026-12-31")  # YYYY-MM-DD, written the way Zoho reads
    assert typed.form["end_date"] == "12-31-2026"


def test_zoho_operations() -> None:
    listed = build("zoho.projects.list", index=1, range=50, status="archived", sort_column="created_time", sort_order="descending")
    assert (listed.method, listed.url) == ("GET", f"{ZOHO}/projects/")
    assert listed.query == {"index": "1", "range": "50", "status": "archived", "sort_column": "created_time", "sort_order": "descending"}
    assert build("zoho.projects.get", project_id="170876000000765009").url == f"{ZOHO}/projects/170876000000765009/"
    assert build("zoho.projects.custom_fields").url == f"{ZOHO}/projects/customfields/"
    updated = build("zoho.projects.update", project_id="5", name="SAP", status="archived")
    assert (updated.method, updated.url, updated.form) == ("POST", f"{ZOHO}/projects/5/", {"name": "SAP", "status": "archived"})
    deleted = build("zoho.projects.delete", project_id="5")
    assert (deleted.method, deleted.url) == ("DELETE", f"{ZOHO}/projects/5/")


@pytest.mark.parametrize(("name", "args", "problem"), [
    ("sdp.milestones.add", {"project_id": "1", "fields": {"description": "x"}}, "fields.title is mandatory"),
    ("sdp.milestones.update", {**M, "fields": {"colour": "red"}}, "fields.colour is not a milestone field"),
    ("sdp.milestones.update", {**M, "fields": {"scheduled_end_time": "next week"}}, "fields.scheduled_end_time must be a date"),
    ("sdp.milestones.update", {**M}, "missing argument 'fields'"),
    ("sdp.milestones.get", {**M, "fields": {}}, "unknown argument 'fields'"),
    ("sdp.milestones.get", {"project_id": "abc", "milestone_id": "1"}, "project_id must be the digits of an id"),
    ("sdp.milestones.get", {"project_id": "1" * 21, "milestone_id": "1"}, "project_id must be the digits of an id (at most 20)"),
    ("zoho.projects.create", {"name": "x" * 101}, "name must be at most 100 characters, got 101"),
    ("zoho.projects.create", {"name": "x", "start_date": "31.12.2026"}, "start_date must be a date"),
    ("zoho.projects.create", {"name": "x", "strict_project": 3}, "strict_project must be one of 1, 2"),
    ("zoho.projects.create", {"name": "x", "custom_fields": {"Browser": "Chrome"}}, "'Browser' is not a field_id"),
    ("zoho.projects.update", {"project_id": "1", "name": "x"}, "missing argument 'status'"),
    ("zoho.projects.update", {"project_id": "1", "name": "x", "status": "actve"}, "status must be one of active, archived"),
    ("zoho.projects.list", {"sort_order": "up"}, "sort_order must be one of ascending, descending"),
    ("http.request", {"method": "FETCH", "url": "https://x"}, "method must be one of"),
    ("http.request", {"method": "GET", "url": "ftp://x/"}, "url must start with http:// or https://"),
])
def test_mistakes_written_in_the_rule_are_load_errors(name: str, args: dict, problem: str) -> None:
    assert any(problem in p for p in CATALOG[name].problems(args)), CATALOG[name].problems(args)


def test_an_upper_case_scheme_is_a_scheme() -> None:
    request = build("http.request", method="get", url="HTTPS://Hooks.Example.com:8443/x")
    assert (request.method, request.url) == ("GET", "https://Hooks.Example.com:8443/x")


def test_templated_values_are_judged_when_rendered_not_at_load() -> None:
    args = {"project_id": "{{ milestone.project.id }}", "name": "{{ milestone.title }}", "status": "{{ s }}"}
    assert CATALOG["zoho.projects.update"].problems(args) == []
    with pytest.raises(ActionError, match="status must be one of"):
        CATALOG["zoho.projects.update"].build({"project_id": "1", "name": "x", "status": "gone"}, TARGETS)


def test_load_error_names_the_rule_and_line(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "id: archive\non: {source: zoho, event: '*'}\nthen:\n  - zoho.projects.update:\n"
        "      project_id: '{{ project.id }}'\n      name: '{{ project.name }}'\n      status: closed\n")
    with pytest.raises(RuleProblems) as caught:
        load_ruleset(tmp_path, TARGETS)
    assert caught.value.problems == [
        f"{tmp_path / 'r.yaml'}:4: rule 'archive': action 1 (zoho.projects.update): status must be one of active, archived, got 'closed'"
    ]


def test_not_configured_connector_says_which_setting() -> None:
    with pytest.raises(ActionError, match="HOOKRULES_ZOHO_PORTAL"):
        CATALOG["zoho.projects.get"].build({"project_id": "1"}, Targets())


def test_a_whole_date_object_can_be_passed_through_a_template(tmp_path: Path) -> None:
    from engine.sources import Source
    from engine.decide import decide
    from engine.intake import to_event

    (tmp_path / "r.yaml").write_text(
        "id: copy-dates\non: {source: sdp, event: '*'}\nthen:\n"
        "  - sdp.milestones.update:\n      project_id: '{{ milestone.project.id }}'\n      milestone_id: '{{ milestone.id }}'\n"
        "      fields: {scheduled_end_time: '{{ milestone.projected_end }}', priority: '{{ milestone.priority }}'}\n"
        "  - zoho.projects.update:\n      project_id: '5'\n      name: '{{ milestone.title }}'\n      status: active\n"
        "      custom_fields: {UDF_DATE1: '{{ milestone.projected_end }}', UDF_CHAR1: '{{ milestone.title }}'}\n")
    ruleset = load_ruleset(tmp_path, TARGETS)
    body = {"milestone": {"id": "33", "project": {"id": "22"}, "title": "Go live",
                          "projected_end": {"value": "1516018740000", "display_value": "Jan 15, 2018"},
                          "priority": {"name": "High", "id": "9"}}}
    event = to_event(Source("sdp", secrets=("s",), default_event="{kind}.updated"),
                     {"x-hook-token": "s", "content-type": "application/json"}, json.dumps(body).encode(), 0.0)
    sdp_action, zoho_action = decide(event, None, ruleset, now=0.0).actions
    assert json.loads(sdp_action.request.form["input_data"]) == {
        "milestone": {"scheduled_end_time": {"value": "1516018740000"}, "priority": {"id": "9", "name": "High"}}}
    assert zoho_action.request.form["UDF_DATE1"] == "01-15-2018" and zoho_action.request.form["UDF_CHAR1"] == "Go live"
