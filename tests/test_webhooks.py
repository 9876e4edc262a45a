"""The webhook contract over a real socket: every bad input gets its status and a reason, and
nothing is stored or queued for it."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import httpx
import pytest
import redis

from conftest import ADMIN, SECRET, Service, base_env, free_port, run_service, with_db

SAMPLE = (Path(__file__).resolve().parent.parent / "samples" / "milestone-completed.json").read_bytes()


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


BAD_INPUTS = [
    # (what, source, headers (replacing the defaults), body, status, words in the reason)
    ("no credentials", "sdp", {"Content-Type": "application/json"}, SAMPLE, 401, "missing credentials"),
    ("wrong token", "sdp", {"Content-Type": "application/json", "X-Hook-Token": "nope"}, SAMPLE, 401, "X-Hook-Token"),
    ("signature of another body", "sdp", {"Content-Type": "application/json", "X-Hook-Signature": sign(b"{}")}, SAMPLE, 401, "X-Hook-Signature"),
    ("signature with wrong secret", "sdp", {"Content-Type": "application/json", "X-Hook-Signature": sign(SAMPLE, "x")}, SAMPLE, 401, "X-Hook-Signature"),
    ("signature without scheme", "sdp", {"Content-Type": "application/json", "X-Hook-Signature": "abc"}, SAMPLE, 401, "sha256="),
    ("unknown source", "jira", {"Content-Type": "application/json", "X-Hook-Token": SECRET}, SAMPLE, 404, "unknown source 'jira'"),
    ("unparseable JSON", "sdp", {"Content-Type": "application/json", "X-Hook-Token": SECRET}, b'{"milestone": ', 400, "not valid JSON"),
    ("JSON that is not an object", "sdp", {"Content-Type": "application/json", "X-Hook-Token": SECRET}, b"[1, 2]", 400, "must be a JSON object"),
    ("no entity", "sdp", {"Content-Type": "application/json", "X-Hook-Token": SECRET}, b'{"milestone": {"title": "x"}}', 400, "no entity"),
    ("two entities", "sdp", {"Content-Type": "application/json", "X-Hook-Token": SECRET}, b'{"a": {"id": 1}, "b": {"id": 2}}', 400, "several objects"),
    ("form without input_data", "sdp", {"Content-Type": "application/x-www-form-urlencoded", "X-Hook-Token": SECRET}, b"x=1", 400, "input_data"),
    ("form with bad JSON", "sdp", {"Content-Type": "application/x-www-form-urlencoded", "X-Hook-Token": SECRET}, b"input_data=%7Bnope", 400, "input_data field is not valid JSON"),
    ("not UTF-8", "sdp", {"Content-Type": "application/json", "X-Hook-Token": SECRET}, b"\xff\xfe", 400, "UTF-8"),
    ("bad event type", "sdp", {"Content-Type": "application/json", "X-Hook-Token": SECRET, "X-Hook-Event": "a b"}, SAMPLE, 400, "event type"),
    ("bad delivery id", "sdp", {"Content-Type": "application/json", "X-Hook-Token": SECRET, "X-Delivery-Id": "a b"}, SAMPLE, 400, "delivery id"),
    ("XML", "sdp", {"Content-Type": "text/xml", "X-Hook-Token": SECRET}, b"<milestone/>", 415, "not supported"),
    ("no content type", "sdp", {"X-Hook-Token": SECRET}, SAMPLE, 415, "no Content-Type"),
    ("over 1 MiB", "sdp", {"Content-Type": "application/json", "X-Hook-Token": SECRET}, b" " * (1024 * 1024 + 1), 413, "limit"),
]


@pytest.mark.parametrize(("what", "source", "headers", "body", "status", "reason"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_refused_and_nothing_is_stored(
    service: Service, what: str, source: str, headers: dict, body: bytes, status: int, reason: str
) -> None:
    stored_before = service.stored_events()
    reply = httpx.post(f"{service.url}/hooks/{source}", content=body, headers=headers, timeout=10)
    assert reply.status_code == status, reply.text
    assert reason in reply.json()["error"]
    # The event record and its job are written in one transaction (store.store_event): no
    # new record means no job either.
    assert service.stored_events() == stored_before


def test_over_limit_body_sent_in_chunks_is_refused(service: Service) -> None:
    # No Content-Length: the limit is enforced while reading the stream.
    def chunks():  # noqa: ANN202
        for _ in range(20):
            yield b" " * 65536

    stored_before = service.stored_events()
    reply = httpx.post(f"{service.url}/hooks/sdp", content=chunks(), timeout=10,
                       headers={"Content-Type": "application/json", "X-Hook-Token": SECRET})
    assert reply.status_code == 413
    assert service.stored_events() == stored_before


def test_signature_header_is_accepted(service: Service) -> None:
    reply = httpx.post(f"{service.url}/hooks/sdp", content=SAMPLE, timeout=10,
                       headers={"Content-Type": "application/json", "X-Hook-Signature": sign(SAMPLE)})
    assert reply.status_code == 202, reply.text
    assert reply.json()["event_id"].startswith("evt_")


def test_event_type_from_header_then_body_then_default(service: Service) -> None:
    body = json.loads(SAMPLE)
    by_header = service.post(json.dumps(body).encode(), {"X-Hook-Event": "milestone.closed"}).json()["event_id"]
    by_body = service.post(json.dumps({**body, "event": "milestone.created"}).encode()).json()["event_id"]
    by_default = service.post(SAMPLE).json()["event_id"]
    types = [service.event(e)["event"]["type"] for e in (by_header, by_body, by_default)]
    assert types == ["milestone.closed", "milestone.created", "milestone.updated"]


def test_unknown_event_id_is_404(service: Service) -> None:
    reply = httpx.get(f"{service.url}/events/evt_nothing", headers=ADMIN, timeout=5)
    assert reply.status_code == 404
    assert "no such event" in reply.json()["error"]


def test_a_wrong_method_or_path_gets_the_json_error_every_refusal_has(service: Service) -> None:
    wrong_method = httpx.get(f"{service.url}/hooks/sdp", timeout=5)
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert wrong_method.json() == {"error": "GET is not accepted at /hooks/sdp; it takes POST"}
    nowhere = httpx.post(f"{service.url}/hook/sdp", content=b"{}", timeout=5)
    assert nowhere.status_code == 404
    assert nowhere.json() == {"error": "nothing at /hook/sdp: webhooks go to POST /hooks/<source> (see GET /openapi.json)"}


def test_only_the_webhook_route_and_a_short_health_answer_are_open(service: Service) -> None:
    event_id = service.post(SAMPLE).json()["event_id"]
    assert httpx.get(f"{service.url}/events/{event_id}", timeout=5).status_code == 401
    assert httpx.get(f"{service.url}/events/{event_id}", headers={"Authorization": "Bearer wrong"}, timeout=5).status_code == 401
    assert httpx.get(f"{service.url}/admin/dead-letters", timeout=5).status_code == 401
    short = httpx.get(f"{service.url}/ready", timeout=5)
    assert short.status_code == 200 and short.json() == {"status": "ok"}
    assert "ruleset" in httpx.get(f"{service.url}/ready", headers=ADMIN, timeout=5).json()


def test_redis_down_answers_503_with_retry_after(tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    down = run_service(tmp_path, base_env(REDIS_URL=dead), worker=False)
    try:
        reply = httpx.post(f"{down.url}/hooks/sdp", content=SAMPLE, timeout=10,
                           headers={"Content-Type": "application/json", "X-Hook-Token": SECRET})
        assert reply.status_code == 503
        assert reply.headers["retry-after"] == "5"
        assert "unreachable" in reply.json()["error"]
        health = httpx.get(f"{down.url}/ready", headers=ADMIN, timeout=10)
        assert health.status_code == 503
        assert health.json()["redis"]["reachable"] is False
        # This API cannot take webhooks either: its own readiness says so.
        own = httpx.get(f"{down.url}/ready?scope=api", timeout=10)
        assert own.status_code == 503 and own.json()["status"] == "unavailable"
        assert "Redis is unreachable" in own.json()["problems"][0]
        # Bad input is still judged before Redis is needed.
        assert httpx.post(f"{down.url}/hooks/sdp", content=SAMPLE, timeout=10).status_code == 401
    finally:
        for process in down.processes:
            process.stop()


def test_health(service: Service, redis_url: str, tmp_path: Path) -> None:
    reply = httpx.get(f"{service.url}/ready", headers=ADMIN, timeout=5)
    assert reply.status_code == 200
    report = reply.json()
    assert report["status"] == "ok"
    assert report["redis"] == {"reachable": True}
    assert report["ruleset"]["rules"] == 3 and len(report["ruleset"]["version"]) == 12
    assert report["ruleset"]["errors"] == []
    assert 0 <= report["worker"]["heartbeat_age_s"] <= 6  # 3 intervals of HOOKRULES_HEARTBEAT=2
    assert "j_complete=" in report["worker"]["arq"]
    assert isinstance(report["queue"]["depth"], int)

    # An API whose Redis database no worker reports to: 503, and why.
    url = with_db(redis_url, 2)
    redis.Redis.from_url(url).flushdb()
    lonely = run_service(tmp_path, base_env(REDIS_URL=url), worker=False)
    try:
        reply = httpx.get(f"{lonely.url}/ready", headers=ADMIN, timeout=5)
        assert reply.status_code == 503
        assert reply.json()["problems"] == ["no worker has reported in the last 6 s"]
        # Without workers the API still stores webhooks: as one replica, it is ready.
        own = httpx.get(f"{lonely.url}/ready?scope=api", timeout=5)
        assert own.status_code == 200 and own.json() == {"status": "ok", "scope": "api", "problems": []}
        unknown = httpx.get(f"{lonely.url}/ready?scope=worker", timeout=5)
        assert unknown.status_code == 400 and "scope=api" in unknown.json()["error"]
    finally:
        for process in lonely.processes:
            process.stop()
