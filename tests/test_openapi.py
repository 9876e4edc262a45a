"""The HTTP API against its own OpenAPI description (engine/openapi.py), fuzzed with Schemathesis
over a real socket: the API and a worker run as real processes on Redis database 15.

For every generated request: no 5xx (Redis is up), the answer is what the description says
(status, content type, body schema, headers), a refused request (>= 400) stores no event,
and a 202 stores exactly one new event (none for a resend). After each batch the API process
is still running and /health answers 200, and the number of stored events equals the number
of distinct event ids answered 202.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error

from engine.openapi import OPENAPI
from openapi_fuzz import (
    ADMIN,
    ADMIN_OPERATIONS,
    CONFORMANCE,
    FUZZ_SETTINGS,
    HOOK,
    HOOK_TOKEN,
    OPERATIONS,
    SCHEMA,
    VARIANTS,
    Fuzz,
    Variant,
)
from openapi_fuzz import fuzz  # noqa: F401 (a fixture: pytest finds it by name)


def test_description_is_valid_openapi() -> None:
    SCHEMA.validate()
    assert set(OPERATIONS) == {
        HOOK, "GET /ready", "GET /health", "GET /metrics", "GET /openapi.json", *ADMIN_OPERATIONS,
    }
    # Every error answer of every route is the shared {"error": ...} shape.
    shared = OPENAPI["components"]["responses"]
    for path, item in OPENAPI["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            for status, response in operation["responses"].items():
                if int(status) < 400 or path == "/ready":  # /ready's 503 is its report
                    continue
                ref = response["$ref"].rsplit("/", 1)[-1]
                schema = shared[ref]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (path, method, status)


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.id for v in VARIANTS])
def test_generated_requests(fuzz: Fuzz, variant: Variant) -> None:
    operation = OPERATIONS[variant.operation]
    strategy = operation.as_strategy(generation_mode=variant.mode, path_parameters=variant.path_parameters)
    # Negative data may put '/', '.', '..' or '%2F' in a path parameter: the path then misses
    # every route and Starlette answers its own plain-text 404, which no description of ours
    # covers. So negative cases get the no-5xx, storage and error-shape checks only.
    checks = CONFORMANCE if variant.mode is GenerationMode.POSITIVE else [not_a_server_error]

    @FUZZ_SETTINGS
    @given(case=strategy)
    def run(case: Case) -> None:
        response = fuzz.send(case, variant.headers, checks)
        if variant.mode is GenerationMode.NEGATIVE and response.status_code >= 400 and _is_json(response):
            assert isinstance(response.json().get("error"), str), response.text
        if variant.operation in ADMIN_OPERATIONS and not variant.headers:
            assert response.status_code == 401, response.text
        expected = {"fenced": 403, "slow": 429}.get((variant.path_parameters or {}).get("source", ""))
        if expected:
            assert response.status_code == expected, response.text

    run()
    fuzz.alive()


def test_documented_example_is_accepted(fuzz: Fuzz) -> None:
    operation = OPERATIONS[HOOK]
    example = OPENAPI["paths"]["/hooks/{source}"]["post"]["requestBody"]["content"]["application/json"]["example"]
    for body, media_type in [
        (example, "application/json"),
        ({"input_data": json.dumps(example)}, "application/x-www-form-urlencoded"),
    ]:
        case = operation.Case(path_parameters={"source": "sdp"}, body=body, media_type=media_type)
        assert fuzz.send(case, HOOK_TOKEN).status_code == 202
    # A resend: same delivery id, same event id, nothing new stored.
    case = operation.Case(path_parameters={"source": "sdp"}, body=example, media_type="application/json")
    first = fuzz.send(case, {**HOOK_TOKEN, "X-Delivery-Id": "openapi-resend-1"}).json()
    again = fuzz.send(case, {**HOOK_TOKEN, "X-Delivery-Id": "openapi-resend-1"}).json()
    assert again == {"event_id": first["event_id"], "duplicate": True}
    # Its record matches the description, with and without the admin token.
    record = OPERATIONS["GET /events/{event_id}"].Case(path_parameters={"event_id": first["event_id"]})
    assert fuzz.send(record, ADMIN).status_code == 200
    assert fuzz.send(record, {}).status_code == 401
    fuzz.alive()


def test_dead_letter_routes(fuzz: Fuzz) -> None:
    def case(label: str, letter_id: str | None = None) -> Case:
        return OPERATIONS[label].Case(path_parameters={"letter_id": letter_id} if letter_id else None)

    letter_id = fuzz.dead_letter("9000000000000001")
    listed = fuzz.send(case("GET /admin/dead-letters"), ADMIN).json()["dead_letters"]
    assert letter_id in [letter["id"] for letter in listed]
    shown = fuzz.send(case("GET /admin/dead-letters/{letter_id}", letter_id), ADMIN)
    assert shown.status_code == 200 and shown.json()["id"] == letter_id
    assert fuzz.send(case("GET /admin/dead-letters/{letter_id}", letter_id), {}).status_code == 401
    assert fuzz.send(case("POST /admin/dead-letters/{letter_id}/replay", letter_id), ADMIN).status_code == 202
    assert fuzz.send(case("GET /admin/dead-letters/{letter_id}", letter_id), ADMIN).status_code == 404
    fuzz.wait_done(letter_id)

    letter_id = fuzz.dead_letter("9000000000000002")
    assert fuzz.send(case("DELETE /admin/dead-letters/{letter_id}", letter_id), ADMIN).status_code == 200
    assert fuzz.send(case("DELETE /admin/dead-letters/{letter_id}", letter_id), ADMIN).status_code == 404
    assert fuzz.send(case("POST /admin/dead-letters/{letter_id}/replay", letter_id), ADMIN).status_code == 404
    fuzz.alive()


# Schemathesis fills a free-form object with random keys, so its bodies almost never hold an
# entity: these do, in either encoding, with random fields and SDP-shaped dates among them.
JSON_LEAF = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
SDP_DATE = st.fixed_dictionaries(
    {"value": st.from_regex(r"\A[0-9]{12,14}\Z") | st.text(max_size=15)},
    optional={"display_value": st.text(max_size=20)},
)
ENTITY = st.fixed_dictionaries(
    {"id": st.text(min_size=1, max_size=20) | st.integers()},
    optional={
        "project": st.fixed_dictionaries({"id": st.from_regex(r"\A[0-9]{1,16}\Z") | JSON_LEAF}),
        "status": st.fixed_dictionaries({"name": st.sampled_from(["Open", "Closed"]) | st.text(max_size=10)}),
        "priority": st.fixed_dictionaries({"name": st.sampled_from(["High", "Low"]) | JSON_LEAF}),
        "actual_end_time": SDP_DATE | JSON_VALUE,
        "scheduled_end_time": SDP_DATE | JSON_VALUE,
        "projected_end": SDP_DATE | JSON_VALUE,
        "title": st.text(max_size=30),
        "extra": JSON_VALUE,
    },
)
ENTITY_BODY = st.builds(
    lambda kind, entity, beside: {**beside, kind: entity},
    st.sampled_from(["milestone", "project"]) | st.from_regex(r"\A[a-z_]{1,12}\Z"),
    ENTITY,
    st.fixed_dictionaries({}, optional={
        "event": st.from_regex(r"\A[a-z.]{1,20}\Z") | st.text(max_size=10),
        "response_status": JSON_VALUE,
        "list_info": JSON_VALUE,
    }),
)


def test_entity_shaped_bodies(fuzz: Fuzz) -> None:
    operation = OPERATIONS[HOOK]
    accepted: list[str] = []

    @settings(FUZZ_SETTINGS, max_examples=50)
    @given(body=ENTITY_BODY, form=st.booleans(), extra=st.fixed_dictionaries({}, optional={
        "X-Hook-Event": st.from_regex(r"\A[A-Za-z0-9_.:-]{1,30}\Z"),
        "X-Delivery-Id": st.from_regex(r"\A[a-z0-9]{1,8}\Z"),
    }))
    def run(body: dict[str, Any], form: bool, extra: dict[str, str]) -> None:
        if form:
            case = operation.Case(path_parameters={"source": "sdp"}, body={"input_data": json.dumps(body)},
                                  media_type="application/x-www-form-urlencoded")
        else:
            case = operation.Case(path_parameters={"source": "sdp"}, body=body, media_type="application/json")
        response = fuzz.send(case, {**HOOK_TOKEN, **extra})
        assert response.status_code in (202, 400), response.text
        if response.status_code == 202:
            accepted.append(response.json()["event_id"])

    run()
    assert accepted, "no entity-shaped body was accepted"
    # The worker decides every one of them, and each record matches the description.
    deadline = time.monotonic() + 30
    waiting = set(accepted)
    while waiting and time.monotonic() < deadline:
        waiting = {e for e in waiting if fuzz.service.redis.hget("hookrules:event:" + e, "status") != b"decided"}
        time.sleep(0.1)
    assert not waiting, f"never decided: {sorted(waiting)[:5]}\n{fuzz.service.logs()[-3000:]}"
    for event_id in sorted(set(accepted))[:10]:
        record = OPERATIONS["GET /events/{event_id}"].Case(path_parameters={"event_id": event_id})
        assert fuzz.send(record, ADMIN).status_code == 200
    fuzz.alive()


STANDARD = {"webhook-id": "msg_1", "webhook-signature": "v1,AAAA"}
HOSTILE = [
    # (name, source, headers, raw JSON body, the statuses that are right)
    pytest.param("deep nesting", "sdp", HOOK_TOKEN,
                 b'{"milestone": {"id": "1", "d": ' + b"[" * 50_000 + b"]" * 50_000 + b"}}", {400}, id="deep-nesting"),
    pytest.param("5000-digit number", "sdp", HOOK_TOKEN, b'{"milestone": {"id": "1", "n": ' + b"1" * 5000 + b"}}", {400},
                 id="5000-digit-number"),
    pytest.param("NaN", "sdp", HOOK_TOKEN, b'{"milestone": {"id": "1", "x": NaN, "y": 1e999}}', {202, 400}, id="nan-then-get-event"),
    pytest.param("lone surrogate id", "sdp", HOOK_TOKEN, b'{"milestone": {"id": "\\ud800"}}', {202, 400}, id="lone-surrogate-id"),
    pytest.param("webhook-timestamp ²", "open", {**STANDARD, "webhook-timestamp": "\u00b2"}, b"{}", {401},
                 id="timestamp-superscript-two"),
    pytest.param("webhook-timestamp of 5000 digits", "open", {**STANDARD, "webhook-timestamp": "1" * 5000}, b"{}", {401},
                 id="timestamp-5000-digits"),
]


@pytest.mark.parametrize(("name", "source", "headers", "body", "status"), HOSTILE)
def test_hostile_requests(fuzz: Fuzz, name: str, source: str, headers: dict[str, str], body: bytes, status: set[int]) -> None:
    """Inputs random generation reaches only rarely: each must get its 4xx (or a 202 whose
    record can be read), never a 5xx."""
    case = OPERATIONS[HOOK].Case(path_parameters={"source": source}, body=body, media_type="application/json")
    response = fuzz.send(case, headers)
    assert response.status_code in status, response.text
    if response.status_code == 202:
        record = OPERATIONS["GET /events/{event_id}"].Case(path_parameters={"event_id": response.json()["event_id"]})
        assert fuzz.send(record, ADMIN).status_code == 200
    fuzz.alive()


def test_served_description_is_this_one(fuzz: Fuzz) -> None:
    assert httpx.get(f"{fuzz.url}/openapi.json", timeout=5).status_code == 401  # admin only
    reply = httpx.get(f"{fuzz.url}/openapi.json", headers=ADMIN, timeout=5)
    assert reply.status_code == 200
    assert reply.json() == OPENAPI


def _is_json(response: Any) -> bool:
    # A Schemathesis Response: lower-case header names, a list of values each.
    return any(value.startswith("application/json") for value in response.headers.get("content-type", []))
