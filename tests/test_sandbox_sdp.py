"""The sandbox's ServiceDesk Plus milestones API over real sockets: what a client sees,
including everything the real API would refuse."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest

from sandbox_client import ACCEPT, MILESTONE, PROJECT, ROOT, SDP, SDP_HEADERS, TOKEN, put_milestone, sdp_failure, stored
from sandbox_client import client, server  # noqa: F401 (fixtures: pytest finds them by name)

# ---- ServiceDesk Plus: strictness ------------------------------------------------------------


@pytest.mark.parametrize("accept", [None, "application/json", "*/*"])
def test_sdp_wants_its_accept_header(client: httpx.Client, accept: str | None) -> None:
    headers = {"Authorization": SDP_HEADERS["Authorization"], **({"Accept": accept} if accept else {})}
    reply = client.get(f"{SDP}/{MILESTONE}", headers=headers)
    assert reply.status_code == 400 and ACCEPT in sdp_failure(reply)["message"]


@pytest.mark.parametrize("authorization", [None, "Zoho-oauthtoken 1000.unknown", f"Bearer {TOKEN}", TOKEN])
def test_sdp_wants_a_valid_token(client: httpx.Client, authorization: str | None) -> None:
    headers = {"Accept": ACCEPT, **({"Authorization": authorization} if authorization else {})}
    reply = client.put(f"{SDP}/{MILESTONE}", headers=headers, data={"input_data": '{"milestone": {"title": "x"}}'})
    assert reply.status_code == 401
    assert stored(client)["title"] == "test-title"


@pytest.mark.parametrize("changes, field, code", [
    ({"actual_end_time": 1512974940000}, "actual_end_time", 4001),
    ({"actual_end_time": {"value": "Dec 11, 2017"}}, "actual_end_time", 4001),
    ({"projected_end": {"value": "1512974940000", "display_value": "Dec 11, 2017 12:19 PM"}}, "projected_end", 4001),
    ({"status": "Closed"}, "status", 4001),
    ({"priority": {"color": "#ffffff"}}, "priority", 4001),
    ({"status": {"name": "Finished"}}, "status", 4001),
    ({"colour": "red"}, "colour", 4001),
    ({"created_time": {"value": "1478758440000"}}, "created_time", 4014),
    ({"title": None}, "title", 4012),
    ({"estimated_hours": "two"}, "estimated_hours", 4001),
    ({"scheduled_start_time": {"value": "1600000000000"}}, "scheduled_end_time", 4016),
])
def test_sdp_refuses_bad_fields_naming_them(client: httpx.Client, changes: dict[str, Any], field: str, code: int) -> None:
    before = stored(client)
    reply = put_milestone(client, changes)
    assert reply.status_code == 400
    message = sdp_failure(reply)
    assert message["status_code"] == code and message["field"] == field and field in message["message"]
    assert stored(client) == before


@pytest.mark.parametrize("send", [
    {"json": {"milestone": {"title": "x"}}},
    {"data": {"milestone": '{"title": "x"}'}},
    {"data": {"input_data": '{"title": "x"}'}},
    {"data": {"input_data": '{"milestone": {"title": "x"}'}},
    {"data": {"input_data": '{"milestone": {"title": "x"}}', "extra": "1"}},
])
def test_sdp_wants_one_form_field_input_data(client: httpx.Client, send: dict[str, Any]) -> None:
    reply = client.put(f"{SDP}/{MILESTONE}", headers=SDP_HEADERS, **send)
    assert reply.status_code == 400 and sdp_failure(reply)["message"]
    assert stored(client)["title"] == "test-title"


def test_sdp_unknown_project_or_milestone_is_404(client: httpx.Client) -> None:
    for path in (f"{SDP}/1", "/app/itdesk/api/v3/projects/999/milestones", f"{SDP}/1833218547112732"):
        reply = client.get(path, headers=SDP_HEADERS)
        assert reply.status_code == 404 and sdp_failure(reply)["status_code"] == 4007, path


# ---- ServiceDesk Plus: operations -------------------------------------------------------------


def test_seeded_milestone_is_the_sample(client: httpx.Client) -> None:
    sample = json.loads((ROOT / "samples" / "milestone-completed.json").read_text())
    reply = client.get(f"{SDP}/{MILESTONE}", headers=SDP_HEADERS)
    assert reply.status_code == 200 and reply.json() == sample


def test_edit_applies_resolves_references_and_logs(client: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hookrules.sandbox")
    reply = put_milestone(client, {"status": {"name": "Closed"}, "priority": {"id": "1968809555410720"},
                                   "scheduled_end_time": {"value": "1516018740000"}})
    assert reply.status_code == 200 and reply.json()["response_status"] == {"status_code": 2000, "status": "success"}
    milestone = reply.json()["milestone"]
    assert milestone["status"]["name"] == "Closed" and milestone["status"]["id"] == "2058840951375599"
    assert milestone["priority"]["name"] == "Medium"
    assert milestone["scheduled_end_time"] == {"display_value": "Jan 15, 2018 05:49 PM", "value": "1516018740000"}
    assert stored(client) == milestone
    assert f'milestone {MILESTONE} of project {PROJECT} now {{"status": {{"name": "Closed"}}' in caplog.text
    assert TOKEN not in caplog.text


def test_add_needs_a_title_and_lists_the_new_milestone(client: httpx.Client) -> None:
    headers = SDP_HEADERS
    refused = client.post(SDP, headers=headers, data={"input_data": json.dumps({"milestone": {"description": "x"}})})
    assert refused.status_code == 400 and sdp_failure(refused)["status_code"] == 4012
    sent = {"title": "Go live", "owner": {"name": "Charles"}, "scheduled_start_time": {"value": "1421988300000"},
            "scheduled_end_time": {"value": "1512974940000"}, "estimated_hours": "12"}
    reply = client.post(SDP, headers=headers, data={"input_data": json.dumps({"milestone": sent})})
    assert reply.status_code == 201, reply.text
    added = reply.json()["milestone"]
    assert added["title"] == "Go live" and added["owner"]["id"] == "1256498736565975" and added["index"] == "31"
    assert added["project"]["id"] == PROJECT and added["status"] is None and added["estimated_hours"] == "12"
    assert stored(client, added["id"]) == added


def test_list_pages_through_every_milestone(client: httpx.Client) -> None:
    first = client.get(SDP, headers=SDP_HEADERS).json()
    assert first["response_status"] == [{"status_code": 2000, "status": "success"}]
    assert first["list_info"] == {"has_more_rows": True, "row_count": 10, "start_index": 1}
    seen, start = [], 1
    while True:
        query = {"input_data": json.dumps({"list_info": {"row_count": 7, "start_index": start}})}
        page = client.get(SDP, headers=SDP_HEADERS, params=query).json()
        seen += [m["id"] for m in page["milestones"]]
        if not page["list_info"]["has_more_rows"]:
            break
        start += 7
    assert len(seen) == len(set(seen)) == 30 and seen[0] == MILESTONE
    assert page["list_info"] == {"has_more_rows": False, "row_count": 2, "start_index": 29}
    for rows, more in ((29, True), (30, False)):  # the edge: exactly one row left, or none
        query = {"input_data": json.dumps({"list_info": {"row_count": rows}})}
        assert client.get(SDP, headers=SDP_HEADERS, params=query).json()["list_info"]["has_more_rows"] is more
    query = {"input_data": json.dumps({"list_info": {"row_count": 3, "sort_field": "index", "sort_order": "desc",
                                                     "get_total_count": True}})}
    newest = client.get(SDP, headers=SDP_HEADERS, params=query).json()
    assert [m["index"] for m in newest["milestones"]] == ["30", "29", "28"] and newest["list_info"]["total_count"] == 30


@pytest.mark.parametrize("list_info", [{"row_count": 101}, {"start_index": 0}, {"row_count": "10"},
                                       {"search_criteria": {}}, {"sort_order": "down"}])
def test_list_refuses_bad_list_info(client: httpx.Client, list_info: dict[str, Any]) -> None:
    reply = client.get(SDP, headers=SDP_HEADERS, params={"input_data": json.dumps({"list_info": list_info})})
    assert reply.status_code == 400 and sdp_failure(reply)["status_code"] == 4001


def test_delete_then_the_milestone_is_gone(client: httpx.Client) -> None:
    reply = client.delete(f"{SDP}/{MILESTONE}", headers=SDP_HEADERS)
    assert reply.status_code == 200 and reply.json() == {"response_status": {"status_code": 2000, "status": "success"}}
    assert client.get(f"{SDP}/{MILESTONE}", headers=SDP_HEADERS).status_code == 404
    assert client.delete(f"{SDP}/{MILESTONE}", headers=SDP_HEADERS).status_code == 404
    assert client.get(f"/_sandbox/milestones/{PROJECT}/{MILESTONE}").status_code == 404


def test_timesheet(client: httpx.Client) -> None:
    body = client.get(f"{SDP}/{MILESTONE}/_timesheet", headers=SDP_HEADERS).json()
    assert body["timesheet"][0]["owner"]["name"] == "Charles" and body["timesheet"][0]["total_amount_spent"] == "18.23"
    assert client.get(f"{SDP}/2007594064055158/_timesheet", headers=SDP_HEADERS).json()["timesheet"] == []
    assert client.get(f"{SDP}/1/_timesheet", headers=SDP_HEADERS).status_code == 404


def upload(client: httpx.Client, content: bytes, add: str | None = "true", name: str = "filename") -> httpx.Response:
    data = {"addtoattachment": add} if add is not None else {}
    return client.post(f"{SDP}/{MILESTONE}/_uploads", headers=SDP_HEADERS, data=data,
                       files={name: ("report.bin", content, "application/octet-stream")})


def test_upload_is_multipart_and_attaches_when_asked(client: httpx.Client) -> None:
    content = bytes(range(256)) + b"\r\n--not-a-boundary\r\n"
    reply = upload(client, content)
    assert reply.status_code == 200, reply.text
    (described,) = reply.json()["files"]
    assert described["size"] == str(len(content)) and described["name"] == "report.bin"
    assert described["content_url"].endswith(f"/milestones/{MILESTONE}/_uploads/{described['file_id']}")
    assert stored(client)["attachments"] == [
        {k: described[k] for k in ("content_type", "size", "file_id", "name")}]
    assert upload(client, b"x", add="false").status_code == 200 and upload(client, b"y", add=None).status_code == 200
    assert len(stored(client)["attachments"]) == 1


def test_upload_refusals(client: httpx.Client) -> None:
    assert sdp_failure(upload(client, b"x", name="file"))["status_code"] == 4001
    assert sdp_failure(upload(client, b"x", add="yes"))["field"] == "addtoattachment"
    no_file = client.post(f"{SDP}/{MILESTONE}/_uploads", headers=SDP_HEADERS, data={"addtoattachment": "true"})
    assert no_file.status_code == 400  # a form, not multipart
    for _ in range(50):
        assert upload(client, b"x").status_code == 200
    full = upload(client, b"x")
    assert full.status_code == 400 and sdp_failure(full)["field"] == "attachments"
    assert len(stored(client)["attachments"]) == 50
