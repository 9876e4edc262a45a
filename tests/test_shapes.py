"""Sources as they really arrive: Zoho Projects form and custom-JSON posts, SDP input_data,
and any other JSON read through a source's map; senders without a delivery id."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
import redis

from conftest import ADMIN, Service, base_env, run_service, with_db
from test_cli import hookrules

SOURCES = """\
sources:
  sdp: {shape: sdp, default_event: "{kind}.updated"}
  zoho: {shape: zoho, auth: [token, param]}
  plain: {shape: json}
  tickets:
    shape: json
    map: {kind: ticket, id: body.data.ticket_id, fields: body.data, type: headers.x-event-type, delivery: body.meta.request_id}
"""
# As a Zoho Projects workflow rule would send them: form parameters named after the project fields.
ZOHO_FORM = {"id": "170876000003152069", "name": "Promotional banner", "status": "active",
             "start_date": "02-16-2016", "end_date": "12-31-2016", "owner_name": "Patricia Boyle", "UDF_CHAR1": "Chrome"}


@pytest.fixture(scope="module")
def api(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("shapes")
    (tmp / "sources.yaml").write_text(SOURCES)
    url = with_db(redis_url, 7)
    db = redis.Redis.from_url(url)
    db.flushdb()
    env = base_env(REDIS_URL=url, HOOKRULES_SOURCES_FILE=str(tmp / "sources.yaml"),
                   HOOKRULES_SOURCE_ZOHO_SECRET="zoho-secret-1234", HOOKRULES_SOURCE_TICKETS_SECRET="tickets-secret-1234",
                   HOOKRULES_SOURCE_PLAIN_SECRET="plain-secret-1234")
    service = run_service(tmp, env, worker=False, db=db)
    yield service
    for process in service.processes:
        process.stop()


def stored(api: Service, reply: httpx.Response) -> dict:
    assert reply.status_code == 202, reply.text
    record = httpx.get(f"{api.url}/events/{reply.json()['event_id']}", headers=ADMIN, timeout=5).json()
    return record["event"]


def test_zoho_form_post(api: Service) -> None:
    reply = httpx.post(f"{api.url}/hooks/zoho", content=urlencode(ZOHO_FORM), timeout=5,
                       headers={"Content-Type": "application/x-www-form-urlencoded", "X-Hook-Token": "zoho-secret-1234"})
    event = stored(api, reply)
    assert event["type"] == "project.updated"
    assert event["entity"]["kind"] == "project" and event["entity"]["id"] == "170876000003152069"
    data = event["entity"]["data"]
    assert data["name"] == "Promotional banner" and data["UDF_CHAR1"] == "Chrome"
    assert data["end_date"] == "12-31-2016" and data["end_date_long"] == 1483142400000  # comparable as time
    iso = stored(api, httpx.post(f"{api.url}/hooks/zoho", content=urlencode({**ZOHO_FORM, "id": "170876000003152072", "end_date": "2016-12-31"}),
                                 headers={"Content-Type": "application/x-www-form-urlencoded", "X-Hook-Token": "zoho-secret-1234"}, timeout=5))
    assert iso["entity"]["data"]["end_date_long"] == 1483142400000  # a portal that shows YYYY-MM-DD
    assert event["delivery_id"].startswith("auto:")


def test_zoho_without_headers_sends_its_token_as_a_parameter_that_is_never_stored(api: Service) -> None:
    """Zoho's webhook form has no header field, only "custom parameters": the `param` scheme."""
    form = {**ZOHO_FORM, "id": "170876000003152070", "hook_token": "zoho-secret-1234"}
    in_body = httpx.post(f"{api.url}/hooks/zoho", content=urlencode(form), timeout=5,
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    in_query = httpx.post(f"{api.url}/hooks/zoho?hook_token=zoho-secret-1234", timeout=5,
                          content=urlencode({**ZOHO_FORM, "id": "170876000003152071"}),
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    for reply in (in_body, in_query):
        event = stored(api, reply)
        assert "hook_token" not in event["entity"]["data"] and "hook_token" not in json.dumps(event)
        assert "zoho-secret-1234" not in json.dumps(event)
    wrong = httpx.post(f"{api.url}/hooks/zoho?hook_token=guess", content=urlencode(ZOHO_FORM), timeout=5,
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "the hook_token parameter does not match this source's secret"
    assert "zoho-secret-1234" not in api.logs() and "hook_token=****" in api.logs()  # the access line, masked


def test_zoho_custom_json_post_and_double_post(api: Service) -> None:
    body = json.dumps({"project": {"id": 170876000000765009, "name": "Website", "status": "archived"}}).encode()
    headers = {"Content-Type": "application/json", "X-Hook-Token": "zoho-secret-1234", "X-Hook-Event": "project.archived"}
    first = httpx.post(f"{api.url}/hooks/zoho", content=body, headers=headers, timeout=5)
    event = stored(api, first)
    assert event["type"] == "project.archived" and event["entity"]["id"] == "170876000000765009"  # a string, exact
    # The sender gives no delivery id: the same body again shortly after is the same delivery.
    again = httpx.post(f"{api.url}/hooks/zoho", content=body, headers=headers, timeout=5)
    assert again.json() == {"event_id": first.json()["event_id"], "duplicate": True}


def test_zoho_custom_xml_post(api: Service) -> None:
    body = b"<project><id>170876000001849005</id><name>SAP Projects</name><end_date>05-26-2014</end_date></project>"
    reply = httpx.post(f"{api.url}/hooks/zoho", content=body, timeout=5,
                       headers={"Content-Type": "application/xml", "X-Hook-Token": "zoho-secret-1234"})
    event = stored(api, reply)
    assert event["entity"]["id"] == "170876000001849005" and event["entity"]["data"]["name"] == "SAP Projects"
    assert event["entity"]["data"]["end_date_long"] == 1401062400000
    bomb = b'<!DOCTYPE p [<!ENTITY a "aaaaaaaaaa">]><project><id>&a;</id></project>'
    refused = httpx.post(f"{api.url}/hooks/zoho", content=bomb, timeout=5,
                         headers={"Content-Type": "application/xml", "X-Hook-Token": "zoho-secret-1234"})
    assert refused.status_code == 400 and "not usable XML" in refused.json()["error"]


def test_sdp_input_data_post(api: Service) -> None:
    milestone = {"milestone": {"id": "2007594064055157", "scheduled_end_time": {"value": "1512974940000"}}}
    reply = httpx.post(f"{api.url}/hooks/sdp", content=urlencode({"input_data": json.dumps(milestone)}), timeout=5,
                       headers={"Content-Type": "application/x-www-form-urlencoded", "X-Hook-Token": "test-secret-7f3a"})
    event = stored(api, reply)
    assert event["entity"]["kind"] == "milestone" and event["entity"]["data"]["scheduled_end_time"] == {"value": 1512974940000}


def test_generic_json_read_through_the_map(api: Service) -> None:
    body = {"meta": {"request_id": "req-77"}, "data": {"ticket_id": 991, "subject": "Printer on fire", "due": "03-01-2026"}}
    reply = httpx.post(f"{api.url}/hooks/tickets", json=body, timeout=5,
                       headers={"X-Hook-Token": "tickets-secret-1234", "X-Event-Type": "ticket.created"})
    event = stored(api, reply)
    assert (event["type"], event["entity"]["kind"], event["entity"]["id"]) == ("ticket.created", "ticket", "991")
    assert event["entity"]["data"]["subject"] == "Printer on fire" and event["entity"]["data"]["due_long"] == 1772323200000
    assert event["delivery_id"] == "req-77"
    missing = httpx.post(f"{api.url}/hooks/tickets", json={"data": {}}, timeout=5, headers={"X-Hook-Token": "tickets-secret-1234"})
    assert missing.status_code == 400 and "map.id (body.data.ticket_id) finds no id" in missing.json()["error"]


def test_generic_json_default(api: Service) -> None:
    reply = httpx.post(f"{api.url}/hooks/plain", json={"id": "A-1", "state": "new"}, timeout=5,
                       headers={"X-Hook-Token": "plain-secret-1234", "X-Hook-Event": "item.created"})
    event = stored(api, reply)
    assert (event["entity"]["kind"], event["entity"]["id"], event["entity"]["data"]["state"]) == ("item", "A-1", "new")


@pytest.mark.parametrize(("text", "problem"), [
    ("sources:\n  t: {shape: json, map: {kind: x}}\n", "source 't': map needs id"),
    ("sources:\n  t: {shape: json, map: {id: data.id}}\n", "source 't': map.id must be a path starting with body."),
    ("sources:\n  t: {shape: json, map: {id: body.id, colour: red}}\n", "source 't': map has unknown keys ['colour']"),
    ("sources:\n  t: {shape: xml}\n", "source 't' has shape 'xml'; known shapes: sdp, zoho, json"),
])
def test_a_wrong_mapping_is_a_load_error_naming_the_source(tmp_path: Path, text: str, problem: str) -> None:
    (tmp_path / "sources.yaml").write_text(text)
    done = hookrules("check", env=base_env(HOOKRULES_SOURCES_FILE=str(tmp_path / "sources.yaml")))
    assert done.returncode == 2 and problem in done.stderr, done.stderr


def test_try_reads_a_pasted_zoho_form_post(tmp_path: Path) -> None:
    (tmp_path / "post.txt").write_text(urlencode(ZOHO_FORM))
    (tmp_path / "fetched.json").write_text(json.dumps({"details": {"projects": [{"milestone_count": {"open": 0}}]}}))
    # No --content-type: a body that is not JSON is read as the form it is.
    done = hookrules("try", str(tmp_path / "post.txt"), "--source", "zoho",
                     "--fetched", str(tmp_path / "fetched.json"), env=base_env(HOOKRULES_SOURCE_ZOHO_SECRET="x"))
    assert done.returncode == 0, done.stderr
    assert "event: zoho project.updated, project 170876000003152069" in done.stdout
    assert "rule archive-finished-project [on]" in done.stdout and "MATCHED" in done.stdout
    assert "POST https://zoho.example/restapi/portal/0/projects/170876000003152069/" in done.stdout
    assert "form status=archived" in done.stdout
    unknown = hookrules("try", str(tmp_path / "post.txt"), "--source", "jira")
    assert unknown.returncode == 2 and "unknown source 'jira'" in unknown.stderr
