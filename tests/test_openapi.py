"""The HTTP API against its own OpenAPI description (engine/openapi.py), fuzzed with Schemathesis
over a real socket: the API and a worker run as real processes on Redis database 15.

For every generated request: no 5xx (Redis is up), the answer is what the description says
(status, content type, body schema, headers), a refused request (>= 400) stores no event,
and a 202 stores exactly one new event (none for a resend). After each batch the API process
is still running and /health answers 200, and the number of stored events equals the number
of distinct event ids answered 202.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conftest import SDP_TOKEN, SECRET, Service, base_env, run_service, wait_until, with_db
from engine.openapi import OPENAPI
from stand_in import StandIn

DB = 15  # the brief's own database, flushed first: no other test uses it
ADMIN_TOKEN = "test-admin-token-2b7d"  # a test value, not a real credential
SAMPLE = (Path(__file__).resolve().parent.parent / "samples" / "milestone-completed.json").read_bytes()
EVENT_KEYS = "hookrules:event:*"
# The shipped `sdp` source (token, hmac), one that takes every scheme, one no address may send
# to (403) and one over its rate from the first request (429). Rates high enough that fuzzing
# never meets them elsewhere.
SOURCES = """
sources:
  sdp: {shape: sdp, default_event: "{kind}.updated", rate: 100000}
  open: {shape: sdp, default_event: "{kind}.updated", auth: [token, hmac, github, standard], rate: 100000}
  fenced: {shape: sdp, allow_ips: [192.0.2.0/24]}
  slow: {shape: sdp, rate: 0.001}
"""

# from_dict stringifies keys in place: give it a copy, so the served document stays as written.
SCHEMA = schemathesis.openapi.from_dict(copy.deepcopy(OPENAPI))
OPERATIONS = {operation.label: operation for operation in (result.ok() for result in SCHEMA.get_all_operations())}

HOOK = "POST /hooks/{source}"
ADMIN_OPERATIONS = [
    "GET /events",
    "GET /events/{event_id}",
    "GET /admin/dead-letters",
    "GET /admin/dead-letters/{letter_id}",
    "DELETE /admin/dead-letters/{letter_id}",
    "POST /admin/dead-letters/{letter_id}/replay",
]
CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
FUZZ_SETTINGS = settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    database=None,  # no .hypothesis/ directory in the work tree
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)


@dataclass
class Variant:
    operation: str
    mode: GenerationMode
    headers: dict[str, str] = field(default_factory=dict)  # sent on every request, over the generated ones
    path_parameters: dict[str, str] | None = None  # fixed; the others are generated

    @property
    def id(self) -> str:
        auth = "+".join(sorted(self.headers)) or "no-auth"
        fixed = ",".join(f"{k}={v}" for k, v in (self.path_parameters or {}).items())
        return f"{self.operation} {self.mode.value} {auth}{' ' + fixed if fixed else ''}"


HOOK_TOKEN = {"X-Hook-Token": SECRET}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
VARIANTS = [
    # Mostly 401 (no or a generated token) or 404 (a generated source): judged before the body.
    Variant(HOOK, GenerationMode.POSITIVE),
    Variant(HOOK, GenerationMode.NEGATIVE),
    # The right token and source: bodies reach the parser.
    Variant(HOOK, GenerationMode.POSITIVE, HOOK_TOKEN, {"source": "sdp"}),
    Variant(HOOK, GenerationMode.NEGATIVE, HOOK_TOKEN, {"source": "sdp"}),
    Variant(HOOK, GenerationMode.NEGATIVE, HOOK_TOKEN),
    # Generated signature headers of every scheme reach their verifiers.
    Variant(HOOK, GenerationMode.POSITIVE, {}, {"source": "open"}),
    Variant(HOOK, GenerationMode.NEGATIVE, {}, {"source": "open"}),
    Variant(HOOK, GenerationMode.POSITIVE, HOOK_TOKEN, {"source": "fenced"}),  # 403
    Variant(HOOK, GenerationMode.POSITIVE, HOOK_TOKEN, {"source": "slow"}),  # 429
    Variant("GET /ready", GenerationMode.POSITIVE),
    Variant("GET /ready", GenerationMode.POSITIVE, ADMIN),  # the whole report
    Variant("GET /health", GenerationMode.POSITIVE),  # liveness
    Variant("GET /metrics", GenerationMode.POSITIVE, ADMIN),
    Variant("GET /openapi.json", GenerationMode.POSITIVE, ADMIN),
    *(Variant(name, mode, headers) for name in ADMIN_OPERATIONS for mode, headers in [
        (GenerationMode.POSITIVE, ADMIN),
        (GenerationMode.POSITIVE, {}),
        (GenerationMode.NEGATIVE, ADMIN),
    ]),
]


class FailingMilestones:
    """Put in place of StandIn.replies: 400 for the milestones named in `ids`, 200 for the rest.
    By path, not in order, so an action of an earlier event still in flight cannot take the
    failure meant for another. (StandIn records a request, then pops its reply, under one lock.)"""

    def __init__(self, sdp: StandIn) -> None:
        self.sdp = sdp
        self.ids: set[str] = set()

    def __bool__(self) -> bool:
        return True

    def pop(self, index: int) -> tuple[int, dict[str, str]]:
        path = self.sdp.requests[-1].path
        return (400, {}) if any(path.endswith(f"/milestones/{i}") for i in self.ids) else (200, {})


@dataclass
class Fuzz:
    """The running service, and every event id it answered 202 for."""

    service: Service
    sdp: StandIn
    session: requests.Session
    failing: FailingMilestones
    accepted: set[str] = field(default_factory=set)

    @property
    def url(self) -> str:
        return self.service.url

    def stored(self) -> int:
        return len(self.service.redis.keys(EVENT_KEYS))

    def send(self, case: Case, headers: dict[str, str], checks: list | None = CONFORMANCE) -> Any:
        """Send one case; check the status, the description and what was stored."""
        before = self.stored()
        response = case.call(base_url=self.url, session=self.session, headers=headers, timeout=15)
        after = self.stored()
        status = response.status_code
        request = case.as_curl_command(headers=dict(response.request.headers), base_url=self.url)
        # Redis is up here, so no 5xx at all, 503 included.
        assert status < 500, f"{case.operation.label} answered {status}: {response.text[:500]}\n{request}"
        if status == 202 and case.operation.label == HOOK:
            reply = response.json()
            event_id = reply["event_id"]
            if reply["duplicate"]:
                assert event_id in self.accepted, f"a duplicate of an event never accepted\n{request}"
                assert after == before, f"a resend stored another event\n{request}"
            else:
                assert event_id not in self.accepted, f"a new event reused {event_id}\n{request}"
                assert after == before + 1, f"a 202 stored {after - before} events\n{request}"
                self.accepted.add(event_id)
            assert self.service.redis.exists("hookrules:event:" + event_id), f"202 without a stored event\n{request}"
        else:
            assert after == before, f"{status} yet {after - before} event(s) stored\n{request}"
        if checks:
            case.validate_response(response, checks=checks, headers=headers, transport_kwargs={"base_url": self.url})
        return response

    def alive(self) -> None:
        for process in self.service.processes:
            assert process.popen.poll() is None, f"{process.name} exited\n{process.output()[-3000:]}"
        reply = httpx.get(f"{self.url}/ready", timeout=10)
        assert reply.status_code == 200, reply.text
        assert self.stored() == len(self.accepted), "stored events differ from the events answered 202"

    def dead_letter(self, milestone_id: str) -> str:
        """Make an action fail (the stand-in answers 400) and return its dead letter's id. A
        milestone not seen before, so that its actual end time counts as just set."""
        body = json.loads(SAMPLE)
        body["milestone"]["id"] = milestone_id
        self.failing.ids.add(milestone_id)
        case = OPERATIONS[HOOK].Case(path_parameters={"source": "sdp"}, body=body, media_type="application/json")
        event_id = self.send(case, HOOK_TOKEN).json()["event_id"]

        def listed() -> str | None:
            letters = httpx.get(f"{self.url}/admin/dead-letters", headers=ADMIN, timeout=10).json()["dead_letters"]
            return next((letter["id"] for letter in letters if letter["event_id"] == event_id), None)

        letter_id = wait_until(listed, timeout_s=20)
        assert letter_id, f"no dead letter for {event_id}\n{self.service.logs()[-3000:]}"
        self.failing.ids.discard(milestone_id)  # a replay succeeds
        return letter_id

    def wait_done(self, letter_id: str) -> None:
        """Wait for a replayed action to be sent again (the stand-in answers 200)."""
        event_id, _, key = letter_id.partition(":")

        def done() -> bool:
            reply = httpx.get(f"{self.url}/events/{event_id}", headers=ADMIN, timeout=10).json()
            return (reply["actions"].get(key) or {}).get("outcome") == "done"

        assert wait_until(done, timeout_s=20), f"replay of {letter_id} not done\n{self.service.logs()[-3000:]}"


@pytest.fixture(scope="module")
def fuzz(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzz]:
    url = with_db(redis_url, DB)
    db = redis.Redis.from_url(url)
    db.flushdb()
    sources = tmp_path_factory.mktemp("openapi-sources") / "sources.yaml"
    sources.write_text(SOURCES)
    with StandIn() as sdp, requests.Session() as session:
        env = base_env(
            REDIS_URL=url,
            HOOKRULES_SOURCES_FILE=str(sources),
            HOOKRULES_SOURCE_OPEN_SECRET=SECRET,
            HOOKRULES_SOURCE_FENCED_SECRET=SECRET,
            HOOKRULES_SOURCE_SLOW_SECRET=SECRET,
            HOOKRULES_ADMIN_TOKEN=ADMIN_TOKEN,
            HOOKRULES_SDP_URL=sdp.url + "/app/itdesk",
            HOOKRULES_SDP_TOKEN=SDP_TOKEN,
        )
        service = run_service(tmp_path_factory.mktemp("openapi"), env, sdp=sdp, db=db)
        try:
            sdp.replies = FailingMilestones(sdp)  # type: ignore[assignment]
            yield Fuzz(service, sdp, session, sdp.replies)
        finally:
            for process in service.processes:
                process.stop()
            db.flushdb()
            db.close()


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
