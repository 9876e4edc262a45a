"""The harness of test_openapi.py: the API and a worker as real processes on Redis database 15
behind a recording SDP stand-in (the `fuzz` fixture), the request variants Schemathesis
generates, and `Fuzz.send`, which checks every answer against the description and against
what was stored."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
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
