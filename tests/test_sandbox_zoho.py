"""The sandbox's Zoho Projects API over real sockets: lists, details, create, update and
delete, and what the real API would refuse."""

from __future__ import annotations


import httpx
import pytest

from sandbox_client import ZOHO, ZOHO_HEADERS
from sandbox_client import client, server  # noqa: F401 (fixtures: pytest finds them by name)
from sandbox_server import Running


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
    assert client.get("/_sandbox/projects/170876000003152069").json()["name"] == "Banner"
    assert client.post(f"{ZOHO}42/", headers=ZOHO_HEADERS, data={"name": "B", "status": "active"}).status_code == 404


def test_zoho_delete(client: httpx.Client) -> None:
    reply = client.delete(f"{ZOHO}170876000001849005", headers=ZOHO_HEADERS)
    assert reply.status_code == 200 and reply.json() == {"response": "Project Deleted Successfully"}
    assert client.get(f"{ZOHO}170876000001849005/", headers=ZOHO_HEADERS).status_code == 404
    assert client.delete(f"{ZOHO}170876000001849005/", headers=ZOHO_HEADERS).status_code == 404
