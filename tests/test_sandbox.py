"""The sandbox emulator of ServiceDesk Plus milestones, Zoho Projects and Zoho OAuth, over real
sockets: what a client sees, including everything the real APIs would refuse."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.sandbox import SandboxSettings
from sandbox_server import Running, running_sandbox

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "1000.static-test-token"  # a test value
ACCEPT = "application/vnd.manageengine.sdp.v3+json"
SDP_HEADERS = {"Accept": ACCEPT, "Authorization": f"Zoho-oauthtoken {TOKEN}"}
ZOHO_HEADERS = {"Authorization": f"Zoho-oauthtoken {TOKEN}"}
PROJECT, MILESTONE = "2258743870606263", "2007594064055157"
SDP = f"/app/itdesk/api/v3/projects/{PROJECT}/milestones"
ZOHO = "/restapi/portal/2063927/projects/"
GRANT = {"grant_type": "refresh_token", "client_id": "sandbox-client", "client_secret": "sandbox-secret",
         "refresh_token": "sandbox-refresh"}


@pytest.fixture(scope="module")
def server() -> Iterator[Running]:
    with running_sandbox(SandboxSettings(static_tokens=frozenset({TOKEN}))) as running:
        yield running


@pytest.fixture
def client(server: Running) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5) as http:
        assert http.post("/_sandbox/reset").status_code == 200
        yield http


def put_milestone(client: httpx.Client, changes: Any, milestone_id: str = MILESTONE, **headers: str) -> httpx.Response:
    return client.put(f"{SDP}/{milestone_id}", headers={**SDP_HEADERS, **headers},
                      data={"input_data": json.dumps({"milestone": changes})})


def sdp_failure(reply: httpx.Response) -> dict[str, Any]:
    """The one message of an SDP failure, after checking the envelope."""
    status = reply.json()["response_status"]
    assert status["status_code"] == 4000 and status["status"] == "failed", status
    (message,) = status["messages"]
    assert message["type"] == "failed"
    return message


def stored(client: httpx.Client, milestone_id: str = MILESTONE) -> dict[str, Any]:
    return client.get(f"/_sandbox/milestones/{PROJECT}/{milestone_id}").json()


# ---- OAuth ----------------------------------------------------------------------------------


def test_token_from_query_or_form_opens_both_apis(client: httpx.Client, server: Running) -> None:
    for reply in (client.post("/oauth/v2/token", params=GRANT), client.post("/oauth/v2/token", data=GRANT)):
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["access_token"].startswith("1000.") and body["expires_in"] == 3600
        assert body["api_domain"] == server.url and body["token_type"] == "Bearer"
        auth = {"Authorization": f"Zoho-oauthtoken {body['access_token']}"}
        assert client.get(f"{SDP}/{MILESTONE}", headers={**auth, "Accept": ACCEPT}).status_code == 200
        assert client.get(ZOHO, headers=auth).status_code == 200
    stats = client.get("/_sandbox/stats").json()
    assert stats["token_requests"] == 2 and stats["tokens_issued"] == 2


@pytest.mark.parametrize("change, error", [
    ({"client_secret": "wrong"}, "invalid_client"),
    ({"client_id": "someone-else"}, "invalid_client"),
    ({"refresh_token": "1000.revoked"}, "invalid_code"),
    ({"grant_type": "authorization_code"}, "unsupported_grant_type"),
])
def test_token_refused_for_wrong_credentials(client: httpx.Client, change: dict[str, str], error: str) -> None:
    reply = client.post("/oauth/v2/token", data={**GRANT, **change})
    assert reply.status_code == 400 and reply.json() == {"error": error}
    assert client.get("/_sandbox/stats").json()["tokens_issued"] == 0


def test_eleventh_token_in_ten_minutes_is_refused(client: httpx.Client) -> None:
    tokens = [client.post("/oauth/v2/token", data=GRANT).json()["access_token"] for _ in range(10)]
    assert len(set(tokens)) == 10
    reply = client.post("/oauth/v2/token", data=GRANT)
    assert reply.status_code == 400
    assert reply.json()["error"] == "Access Denied" and "too many requests" in reply.json()["error_description"]
    # The tokens already issued keep working.
    assert client.get(ZOHO, headers={"Authorization": f"Zoho-oauthtoken {tokens[0]}"}).status_code == 200


def test_expired_tokens_get_401_in_each_systems_shape(client: httpx.Client) -> None:
    token = client.post("/oauth/v2/token", data=GRANT).json()["access_token"]
    assert client.post("/_sandbox/expire-tokens").json() == {"expired": 1}
    auth = {"Authorization": f"Zoho-oauthtoken {token}"}
    sdp = client.get(f"{SDP}/{MILESTONE}", headers={**auth, "Accept": ACCEPT})
    assert sdp.status_code == 401 and "UNAUTHORISED" in sdp_failure(sdp)["message"]
    zoho = client.get(ZOHO, headers=auth)
    assert zoho.status_code == 401 and zoho.json()["error"]["code"] == 6401
    assert client.get(ZOHO, headers=ZOHO_HEADERS).status_code == 200  # static tokens never expire


def test_issued_token_expires_after_its_lifetime() -> None:
    with running_sandbox(SandboxSettings(token_lifetime_s=1)) as running:
        token = httpx.post(running.url + "/oauth/v2/token", data=GRANT).json()["access_token"]
        auth = {"Authorization": f"Zoho-oauthtoken {token}"}
        assert httpx.get(running.url + ZOHO, headers=auth).status_code == 200
        time.sleep(1.1)
        assert httpx.get(running.url + ZOHO, headers=auth).status_code == 401


def test_settings_from_env_keep_secrets_out_of_repr() -> None:
    settings = SandboxSettings.from_env({"HOOKRULES_SANDBOX_CLIENT_ID": "c", "HOOKRULES_SANDBOX_CLIENT_SECRET": "s3cr3t",
                                         "HOOKRULES_SANDBOX_TOKEN": "1000.fixed", "HOOKRULES_SANDBOX_TOKEN_LIFETIME": "60"})
    assert (settings.client_id, settings.client_secret, settings.token_lifetime_s) == ("c", "s3cr3t", 60)
    assert settings.static_tokens == frozenset({"1000.fixed"}) and settings.refresh_token == "sandbox-refresh"
    assert "s3cr3t" not in repr(settings) and "1000.fixed" not in repr(settings)
    assert SandboxSettings.from_env({}) == SandboxSettings()
    with pytest.raises(ValueError, match="HOOKRULES_SANDBOX_TOKEN_LIFETIME"):
        SandboxSettings.from_env({"HOOKRULES_SANDBOX_TOKEN_LIFETIME": "1h"})


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
    for path in (f"{SDP}/1", f"/app/itdesk/api/v3/projects/999/milestones", f"{SDP}/1833218547112732"):
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


# ---- Zoho Projects ---------------------------------------------------------------------------


def zoho_names(reply: httpx.Response) -> list[str]:
    assert reply.status_code == 200, reply.text
    return [p["name"] for p in reply.json()["projects"]]


def test_zoho_lists_filter_sort_and_page(client: httpx.Client) -> None:
    everything = zoho_names(client.get(ZOHO, headers=ZOHO_HEADERS))
    assert "SAP Projects" in everything and "Website launch (template)" not in everything
    assert zoho_names(client.get(ZOHO, headers=ZOHO_HEADERS, params={"status": "template"})) == ["Website launch (template)"]
    oldest = {"sort_column": "created_time", "sort_order": "ascending"}
    assert zoho_names(client.get(ZOHO, headers=ZOHO_HEADERS, params=oldest)) == [
        "Website Design Templates", "SAP Projects", "Promotional banner for women's day"]
    page = {**oldest, "index": "2", "range": "1"}
    assert zoho_names(client.get(ZOHO.rstrip("/"), headers=ZOHO_HEADERS, params=page)) == ["SAP Projects"]
    assert client.get(ZOHO, headers=ZOHO_HEADERS, params={"index": "50"}).status_code == 204


@pytest.mark.parametrize("query, named", [({"range": "201"}, "range"), ({"status": "closed"}, "status"),
                                          ({"sort_column": "name"}, "sort_column"), ({"page": "2"}, "page")])
def test_zoho_list_refuses_bad_parameters(client: httpx.Client, query: dict[str, str], named: str) -> None:
    reply = client.get(ZOHO, headers=ZOHO_HEADERS, params=query)
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == 6831 and named in reply.json()["error"]["message"]


def test_zoho_project_details_and_custom_fields(client: httpx.Client, server: Running) -> None:
    (project,) = client.get(f"{ZOHO}170876000000765009", headers=ZOHO_HEADERS).json()["projects"]
    assert project["id"] == 170876000000765009 and project["name"] == "Website Design Templates"
    assert project["task_count"] == {"open": 6, "closed": 7} and project["created_date_long"] == 1350926134092
    assert project["link"]["self"]["url"] == f"{server.url}{ZOHO}170876000000765009/"
    fields = client.get(f"{ZOHO}customfields/", headers=ZOHO_HEADERS).json()["project_custom_fields"]
    assert [f["field_id"] for f in fields] == ["UDF_CHAR1", "UDF_DATE1"]
    missing = client.get(f"{ZOHO}1/", headers=ZOHO_HEADERS)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == 6404


def test_zoho_create_takes_form_parameters(client: httpx.Client) -> None:
    sent = {"name": "Intranet", "description": "New intranet", "start_date": "03-01-2024", "end_date": "03-31-2024",
            "strict_project": "2", "UDF_CHAR1": "Firefox", "UDF_DATE1": "04-15-2024"}
    reply = client.post(ZOHO, headers=ZOHO_HEADERS, data=sent)
    assert reply.status_code == 201, reply.text
    (project,) = reply.json()["projects"]
    assert project["name"] == "Intranet" and project["status"] == "active" and project["end_date"] == "03-31-2024"
    assert project["start_date_long"] == 1709280000000  # Mar 1, 2024 00:00 at UTC-8
    assert project["custom_fields"] == [{"Supported browser": "Firefox"}, {"Due Date": "04-15-2024"}]
    assert project["bug_count"] == {"open": 0, "closed": 0} and project["id_string"] == str(project["id"])
    assert client.get(f"/_sandbox/projects/{project['id']}").json()["name"] == "Intranet"
    from_template = client.post(ZOHO.rstrip("/"), headers=ZOHO_HEADERS,
                                data={"name": "Launch", "template_id": "170876000002000001"})
    assert from_template.status_code == 201 and from_template.json()["projects"][0]["task_count"]["open"] == 12


@pytest.mark.parametrize("sent, named", [
    ({"name": "x" * 101}, "name"),
    ({"description": "no name"}, "name"),
    ({"name": "A", "start_date": "2024-03-01"}, "start_date"),
    ({"name": "A", "end_date": "02-30-2024"}, "end_date"),
    ({"name": "A", "start_date": "03-02-2024", "end_date": "03-01-2024"}, "end_date"),
    ({"name": "A", "UDF_CHAR9": "x"}, "UDF_CHAR9"),
    ({"name": "A", "UDF_DATE1": "tomorrow"}, "UDF_DATE1"),
    ({"name": "A", "strict_project": "3"}, "strict_project"),
    ({"name": "A", "template_id": "170876000000765009"}, "template_id"),
    ({"name": "A", "owner": "me"}, "owner"),
])
def test_zoho_create_refuses_bad_parameters(client: httpx.Client, sent: dict[str, str], named: str) -> None:
    reply = client.post(ZOHO, headers=ZOHO_HEADERS, data=sent)
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == 6831 and named in reply.json()["error"]["message"]
    assert len(zoho_names(client.get(ZOHO, headers=ZOHO_HEADERS))) == 3


def test_zoho_refuses_a_json_body(client: httpx.Client) -> None:
    reply = client.post(ZOHO, headers=ZOHO_HEADERS, json={"name": "A"})
    assert reply.status_code == 400 and "JSON" in reply.json()["error"]["message"]


def test_zoho_update_needs_name_and_status(client: httpx.Client) -> None:
    path = f"{ZOHO}170876000003152069/"
    assert "status" in client.post(path, headers=ZOHO_HEADERS, data={"name": "B"}).json()["error"]["message"]
    assert client.post(path, headers=ZOHO_HEADERS, data={"name": "B", "status": "template"}).status_code == 400
    reply = client.post(path, headers=ZOHO_HEADERS, data={"name": "Banner", "status": "archived", "UDF_CHAR1": "Safari"})
    assert reply.status_code == 200, reply.text
    (project,) = reply.json()["projects"]
    assert project["status"] == "archived" and {"Supported browser": "Safari"} in project["custom_fields"]
    assert client.get(f"/_sandbox/projects/170876000003152069").json()["name"] == "Banner"
    assert client.post(f"{ZOHO}42/", headers=ZOHO_HEADERS, data={"name": "B", "status": "active"}).status_code == 404


def test_zoho_delete(client: httpx.Client) -> None:
    reply = client.delete(f"{ZOHO}170876000001849005", headers=ZOHO_HEADERS)
    assert reply.status_code == 200 and reply.json() == {"response": "Project Deleted Successfully"}
    assert client.get(f"{ZOHO}170876000001849005/", headers=ZOHO_HEADERS).status_code == 404
    assert client.delete(f"{ZOHO}170876000001849005/", headers=ZOHO_HEADERS).status_code == 404


# ---- faults, stats, reset --------------------------------------------------------------------


def test_fault_429_with_retry_after_then_normal(client: httpx.Client) -> None:
    assert client.post("/_sandbox/faults", json={"status": 429, "retry_after": 2, "count": 1,
                                                 "path_contains": "/api/v3/"}).status_code == 200
    assert client.get(ZOHO, headers=ZOHO_HEADERS).status_code == 200  # another path: not affected
    throttled = put_milestone(client, {"status": {"name": "Closed"}})
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "2"
    assert sdp_failure(throttled)["status_code"] == 4015
    assert stored(client)["status"]["name"] == "Open"  # nothing applied
    assert put_milestone(client, {"status": {"name": "Closed"}}).status_code == 200
    put = "PUT /app/{portal}/api/v3/projects/{project_id}/milestones/{milestone_id}"
    assert client.get("/_sandbox/stats").json()["requests"][put] == 2


def test_faults_in_zoho_and_token_shapes(client: httpx.Client) -> None:
    client.post("/_sandbox/faults", json={"status": 503, "count": 2, "path_contains": "/restapi/"})
    client.post("/_sandbox/faults", json={"status": 429, "path_contains": "/oauth/"})
    for _ in range(2):
        reply = client.get(ZOHO, headers=ZOHO_HEADERS)
        assert reply.status_code == 503 and reply.json()["error"]["code"] == 6500 and "retry-after" not in reply.headers
    assert client.get(ZOHO, headers=ZOHO_HEADERS).status_code == 200
    token = client.post("/oauth/v2/token", data=GRANT)
    assert token.status_code == 429 and token.json()["error"] == "Access Denied"
    assert client.post("/oauth/v2/token", data=GRANT).status_code == 200


@pytest.mark.parametrize("fault", [{"status": 200}, {"status": 429, "count": 0}, {"status": 429, "colour": "red"}, []])
def test_bad_fault_is_refused(client: httpx.Client, fault: Any) -> None:
    assert client.post("/_sandbox/faults", json=fault).status_code == 400
    assert client.get(ZOHO, headers=ZOHO_HEADERS).status_code == 200


def test_reset_restores_seed_data_and_counts(client: httpx.Client) -> None:
    client.delete(f"{SDP}/{MILESTONE}", headers=SDP_HEADERS)
    client.post("/_sandbox/faults", json={"status": 500})
    client.post("/_sandbox/reset")
    assert client.get("/_sandbox/stats").json() == {"token_requests": 0, "tokens_issued": 0, "requests": {}}
    assert client.get(f"{SDP}/{MILESTONE}", headers=SDP_HEADERS).status_code == 200
