"""Every catalog operation, sent the way a worker sends it (OAuth, limits, reply reading), to
the sandbox over HTTP; token refresh under concurrency; and, through the running API and
worker, a 429 waited out and an SDP failure message recorded on the event."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import redis
import redis.asyncio

from conftest import ADMIN, SECRET, base_env, run_service, with_db
from engine.config import Connector, Targets
from engine.connectors import CATALOG
from engine.http_client import HttpClient
from engine.oauth import OAuthClient
from engine.ratelimit import Limits
from engine.sandbox import SandboxSettings
from engine.sending import SendResult, Sender
from sandbox_server import Running, running_sandbox

DB = 7
PROJECT, MILESTONE = "2258743870606263", "2007594064055157"
ZOHO_PROJECT = "170876000003152069"
CLIENT = SandboxSettings(client_id="test-client", client_secret="test-client-secret", refresh_token="test-refresh")


@pytest.fixture()
def sandbox(redis_url: str) -> Iterator[Running]:
    redis.Redis.from_url(with_db(redis_url, DB)).flushdb()
    with running_sandbox(CLIENT) as running:
        yield running


def targets_for(sandbox: Running) -> Targets:
    def connector(name: str, path: str) -> Connector:
        oauth = OAuthClient(name, f"{sandbox.url}/oauth/v2/token", CLIENT.client_id, CLIENT.client_secret, CLIENT.refresh_token)
        return Connector(name, base_url=f"{sandbox.url}{path}", oauth=oauth)

    return Targets(sdp=connector("sdp", "/app/itdesk"), zoho=connector("zoho", "/restapi/portal/2063927"))


async def send_all(redis_url: str, targets: Targets, actions: list[tuple[str, dict]]) -> list[SendResult]:
    """Send each action with its own Sender and Redis connection, all at once: like that many workers."""

    async def one(name: str, args: dict) -> SendResult:
        client = redis.asyncio.Redis.from_url(with_db(redis_url, DB))
        try:
            async with HttpClient() as http:
                return await Sender.create(client, http, targets).send(CATALOG[name].build(args, targets))
        finally:
            await client.aclose()

    return list(await asyncio.gather(*(one(name, args) for name, args in actions)))


def send(redis_url: str, sandbox: Running, action: str, **args: object) -> SendResult:
    assert CATALOG[action].problems(args) == []
    (result,) = asyncio.run(send_all(redis_url, targets_for(sandbox), [(action, args)]))
    return result


def stored(sandbox: Running, path: str) -> dict:
    return httpx.get(f"{sandbox.url}/_sandbox/{path}", timeout=5).json()


def stats(sandbox: Running) -> dict:
    return httpx.get(f"{sandbox.url}/_sandbox/stats", timeout=5).json()


def test_sdp_milestone_operations(redis_url: str, sandbox: Running) -> None:
    ids = {"project_id": PROJECT, "milestone_id": MILESTONE}
    added = send(redis_url, sandbox, "sdp.milestones.add", project_id=PROJECT,
                 fields={"title": "Cut-over", "scheduled_end_time": "12-31-2026", "priority": "High"})
    assert added.outcome == "done", added.error
    updated = send(redis_url, sandbox, "sdp.milestones.update", **ids,
                   fields={"status": "Closed", "projected_end": {"value": "1516018740000", "display_value": "x"}})
    assert updated.outcome == "done", updated.error
    milestone = stored(sandbox, f"milestones/{PROJECT}/{MILESTONE}")
    assert milestone["status"]["name"] == "Closed" and milestone["projected_end"]["value"] == "1516018740000"
    got = send(redis_url, sandbox, "sdp.milestones.get", **ids)
    assert got.outcome == "done" and got.http_status == 200 and MILESTONE in got.response
    timesheet = send(redis_url, sandbox, "sdp.milestones.timesheet", **ids)
    assert timesheet.outcome == "done" and "timesheet" in timesheet.response
    uploaded = send(redis_url, sandbox, "sdp.milestones.upload", **ids, filename="closing-notes.txt", content="All done.")
    assert uploaded.outcome == "done", uploaded.error
    assert [a["name"] for a in stored(sandbox, f"milestones/{PROJECT}/{MILESTONE}")["attachments"]][-1] == "closing-notes.txt"
    listed = send(redis_url, sandbox, "sdp.milestones.list", project_id=PROJECT)
    assert listed.outcome == "done" and listed.details == {"pages": 1, "rows": 31}  # 30 seeded + the one added
    paged = send(redis_url, sandbox, "sdp.milestones.list", project_id=PROJECT, list_info={"row_count": 10})
    assert paged.details == {"pages": 4, "rows": 31}
    victim = "2007594064055186"
    deleted = send(redis_url, sandbox, "sdp.milestones.delete", project_id=PROJECT, milestone_id=victim)
    assert deleted.outcome == "done", deleted.error
    assert httpx.get(f"{sandbox.url}/_sandbox/milestones/{PROJECT}/{victim}", timeout=5).status_code == 404


def test_zoho_project_operations(redis_url: str, sandbox: Running) -> None:
    fields = send(redis_url, sandbox, "zoho.projects.custom_fields")
    assert fields.outcome == "done" and "UDF_CHAR1" in fields.response
    created = send(redis_url, sandbox, "zoho.projects.create", name="Website relaunch", start_date="1767225600000",
                   end_date="03-31-2026", strict_project=2, custom_fields={"UDF_CHAR1": "Firefox"})
    assert created.outcome == "done" and created.http_status == 201, created.error
    listed = send(redis_url, sandbox, "zoho.projects.list", status="active", sort_column="created_time", sort_order="descending", range=50)
    assert listed.outcome == "done" and "Website relaunch" in listed.response
    updated = send(redis_url, sandbox, "zoho.projects.update", project_id=ZOHO_PROJECT, name="Banner, archived", status="archived")
    assert updated.outcome == "done", updated.error
    assert stored(sandbox, f"projects/{ZOHO_PROJECT}")["status"] == "archived"
    got = send(redis_url, sandbox, "zoho.projects.get", project_id=ZOHO_PROJECT)
    assert got.outcome == "done" and "Banner, archived" in got.response
    deleted = send(redis_url, sandbox, "zoho.projects.delete", project_id=ZOHO_PROJECT)
    assert deleted.outcome == "done" and "Project Deleted Successfully" in deleted.response
    gone = send(redis_url, sandbox, "zoho.projects.get", project_id=ZOHO_PROJECT)
    assert gone.outcome == "failed" and gone.http_status == 404 and gone.error.startswith("Zoho 6404:")


def test_failures_carry_the_systems_message(redis_url: str, sandbox: Running) -> None:
    bad = send(redis_url, sandbox, "sdp.milestones.update", project_id=PROJECT, milestone_id=MILESTONE, fields={"priority": "Urgent"})
    assert bad.outcome == "failed" and bad.error.startswith("SDP 4000:") and "priority" in bad.error
    missing = send(redis_url, sandbox, "sdp.milestones.get", project_id=PROJECT, milestone_id="1")
    assert missing.outcome == "failed" and "no milestone with id 1" in missing.error


def test_token_is_fetched_once_and_shared(redis_url: str, sandbox: Running) -> None:
    targets = targets_for(sandbox)
    get = ("sdp.milestones.get", {"project_id": PROJECT, "milestone_id": MILESTONE})
    results = asyncio.run(send_all(redis_url, targets, [get] * 8))
    assert [r.outcome for r in results] == ["done"] * 8
    assert stats(sandbox)["token_requests"] == 1


def test_expired_token_is_refreshed_exactly_once(redis_url: str, sandbox: Running) -> None:
    targets = targets_for(sandbox)
    get = ("sdp.milestones.get", {"project_id": PROJECT, "milestone_id": MILESTONE})
    assert asyncio.run(send_all(redis_url, targets, [get]))[0].outcome == "done"
    httpx.post(f"{sandbox.url}/_sandbox/expire-tokens", timeout=5)  # the cached token now gets 401
    assert asyncio.run(send_all(redis_url, targets, [get]))[0].outcome == "done"
    assert stats(sandbox)["token_requests"] == 2


def test_eight_workers_on_an_expired_token_cause_one_refresh(redis_url: str, sandbox: Running) -> None:
    targets = targets_for(sandbox)
    get = ("sdp.milestones.get", {"project_id": PROJECT, "milestone_id": MILESTONE})
    asyncio.run(send_all(redis_url, targets, [get]))
    httpx.post(f"{sandbox.url}/_sandbox/expire-tokens", timeout=5)
    results = asyncio.run(send_all(redis_url, targets, [get] * 8))
    assert [r.outcome for r in results] == ["done"] * 8
    assert stats(sandbox)["token_requests"] == 2  # the first token, and one refresh for all eight


def test_refused_refresh_is_reported_in_health_and_not_retried_at_once(redis_url: str, tmp_path: Path) -> None:
    wrong = SandboxSettings(client_id="other-client")
    redis.Redis.from_url(with_db(redis_url, DB)).flushdb()
    with running_sandbox(wrong) as sandbox:
        targets = targets_for(sandbox)
        get = ("sdp.milestones.get", {"project_id": PROJECT, "milestone_id": MILESTONE})
        first, second = (asyncio.run(send_all(redis_url, targets, [get]))[0] for _ in range(2))
        assert first.outcome == second.outcome == "retry"
        assert "invalid_client" in first.error and first.retry_after_s == 60
        assert stats(sandbox)["token_requests"] == 1  # the second send did not ask again
        env = base_env(REDIS_URL=with_db(redis_url, DB), HOOKRULES_SDP_URL=f"{sandbox.url}/app/itdesk",
                       HOOKRULES_ACCOUNTS_URL=sandbox.url, HOOKRULES_SDP_CLIENT_ID=CLIENT.client_id,
                       HOOKRULES_SDP_CLIENT_SECRET=CLIENT.client_secret, HOOKRULES_SDP_REFRESH_TOKEN=CLIENT.refresh_token)
        api = run_service(tmp_path, env, worker=False)
        try:
            report = httpx.get(f"{api.url}/ready", headers=ADMIN, timeout=5).json()
        finally:
            api.processes[0].stop()
        assert report["connectors"]["sdp"]["auth"] == "oauth"
        assert "invalid_client" in report["connectors"]["sdp"]["oauth"]["last_error"]["error"]
        assert any("sdp: the last OAuth token refresh failed" in w for w in report["warnings"])
        assert CLIENT.client_secret not in json.dumps(report) and CLIENT.refresh_token not in json.dumps(report)


def test_worker_waits_out_429_and_records_sdp_messages(redis_url: str, tmp_path: Path) -> None:
    url = with_db(redis_url, DB)
    redis.Redis.from_url(url).flushdb()
    with running_sandbox(CLIENT) as sandbox:
        env = base_env(
            REDIS_URL=url, HOOKRULES_SDP_URL=f"{sandbox.url}/app/itdesk", HOOKRULES_ACCOUNTS_URL=sandbox.url,
            HOOKRULES_SDP_CLIENT_ID=CLIENT.client_id, HOOKRULES_SDP_CLIENT_SECRET=CLIENT.client_secret,
            HOOKRULES_SDP_REFRESH_TOKEN=CLIENT.refresh_token,
        )
        service = run_service(tmp_path, env, db=redis.Redis.from_url(url))
        try:
            fault = {"status": 429, "retry_after": 2, "count": 1, "path_contains": f"/milestones/{MILESTONE}"}
            httpx.post(f"{sandbox.url}/_sandbox/faults", json=fault, timeout=5)
            sample = json.loads((Path(__file__).parent.parent / "samples" / "milestone-completed.json").read_text())
            posted = time.monotonic()
            event_id = service.post(json.dumps(sample).encode()).json()["event_id"]
            closed = service.wait_event(event_id, lambda r: r["actions"].get("close-finished-milestone:0", {}).get("outcome") == "done", 30)
            assert closed is not None, service.logs()
            assert time.monotonic() - posted >= 2.0  # the second try came after Retry-After, not before
            assert closed["actions"]["close-finished-milestone:0"]["attempts"] == 2
            assert stored(sandbox, f"milestones/{PROJECT}/{MILESTONE}")["status"]["name"] == "Closed"

            sample["milestone"]["id"] = "99"  # SDP does not know it: 404 with status_code 4000 and a message
            event_id = service.post(json.dumps(sample).encode()).json()["event_id"]
            failed = service.wait_event(event_id, lambda r: r["actions"].get("close-finished-milestone:0", {}).get("outcome") == "failed")
            assert failed is not None, service.logs()
            outcome = failed["actions"]["close-finished-milestone:0"]
            assert outcome["http_status"] == 404 and outcome["attempts"] == 1
            assert outcome["error"].startswith("SDP 4000:") and "no milestone with id 99" in outcome["error"]
        finally:
            for process in service.processes:
                process.stop()


def test_waiting_for_a_rate_limit_turn_does_not_use_up_tries(redis_url: str, sandbox: Running) -> None:
    from arq import Retry

    from engine.config import load_settings
    from engine.store import connect
    from workers.action_job import run_action

    base = targets_for(sandbox)
    slow = Connector("sdp", base_url=base.sdp.base_url, oauth=base.sdp.oauth, limits=Limits(max_concurrent=5, per_second=0.2, burst=1))
    targets = Targets(sdp=slow, zoho=base.zoho)
    settings = replace(load_settings(base_env()), targets=targets, max_tries=1)
    request = CATALOG["sdp.milestones.get"].build({"project_id": PROJECT, "milestone_id": MILESTONE}, targets)

    async def scenario() -> tuple[object, object, dict]:
        redis_client = connect(with_db(redis_url, DB))
        try:
            async with HttpClient() as http:
                ctx = {"settings": settings, "redis": redis_client,
                       "sender": replace(Sender.create(redis_client, http, targets), rate_wait_s=0.0)}
                first = await run_action(ctx, "evt_rate", "r", 0, "sdp.milestones.get", request.to_dict())
                try:
                    await run_action(ctx, "evt_rate", "r", 1, "sdp.milestones.get", request.to_dict())
                    second: object = "no retry"
                except Retry as exc:
                    second = exc
                return first, second, json.loads(await redis_client.hget("hookrules:event:evt_rate", "action:r:1"))
        finally:
            await redis_client.aclose()

    first, second, recorded = asyncio.run(scenario())
    assert first == "done"
    # Waits for its turn (1 per 5 s), less the time since the first took the token (a busy
    # machine may spend a second or two on the first call).
    assert isinstance(second, Retry) and 3.0 <= second.defer_score / 1000 <= 5.5
    assert recorded["outcome"] == "retrying" and recorded["attempts"] == 0  # max_tries=1, yet not failed
    assert "rate limit" in recorded["error"]


def test_a_401_that_renewal_does_not_cure_renews_once_not_per_action(redis_url: str, sandbox: Running) -> None:
    # Say the client lacks the Zoho scope: every call answers 401 whatever the token.
    httpx.post(f"{sandbox.url}/_sandbox/faults", json={"status": 401, "count": 50, "path_contains": "/restapi/"}, timeout=5)
    get = ("zoho.projects.get", {"project_id": ZOHO_PROJECT})
    results = [asyncio.run(send_all(redis_url, targets_for(sandbox), [get]))[0] for _ in range(6)]
    assert {r.outcome for r in results} == {"failed"}
    assert "zoho refused the access token (HTTP 401)" in results[-1].error and "scopes" in results[-1].error
    assert stats(sandbox)["token_requests"] == 2  # the first token and one renewal, not one per action


def test_waiting_is_bounded_by_time(redis_url: str, sandbox: Running) -> None:
    from arq import Retry

    from engine.config import load_settings
    from engine.store import connect
    from workers.action_job import run_action

    base = targets_for(sandbox)
    slow = Connector("sdp", base_url=base.sdp.base_url, oauth=base.sdp.oauth, limits=Limits(max_concurrent=5, per_second=0.2, burst=1))
    targets = Targets(sdp=slow, zoho=base.zoho)
    # Two seconds: far more than the few Redis round trips of a try take on a busy machine.
    settings = replace(load_settings(base_env()), targets=targets, action_max_wait_s=2.0)
    request = CATALOG["sdp.milestones.get"].build({"project_id": PROJECT, "milestone_id": MILESTONE}, targets)

    async def scenario() -> str:
        redis_client = connect(with_db(redis_url, DB))
        try:
            async with HttpClient() as http:
                ctx = {"settings": settings, "redis": redis_client,
                       "sender": replace(Sender.create(redis_client, http, targets), rate_wait_s=0.0)}
                await run_action(ctx, "evt_wait", "r", 0, "sdp.milestones.get", request.to_dict())  # takes the one slot
                with pytest.raises(Retry):  # the first wait for a turn: deferred
                    await run_action(ctx, "evt_wait", "r", 1, "sdp.milestones.get", request.to_dict())
                await asyncio.sleep(2.1)
                return await run_action(ctx, "evt_wait", "r", 1, "sdp.milestones.get", request.to_dict())
        finally:
            await redis_client.aclose()

    assert asyncio.run(scenario()) == "failed"
    recorded = json.loads(redis.Redis.from_url(with_db(redis_url, DB)).hget("hookrules:event:evt_wait", "action:r:1"))
    assert recorded["error"].startswith("gave up after 2 s: sdp rate limit")
    assert recorded["attempts"] == 0


def test_a_send_that_takes_too_long_is_cut_off_and_retried(redis_url: str) -> None:
    from stand_in import StandIn

    with StandIn() as slow:
        slow.delay_s = 1.0
        request = CATALOG["http.request"].build({"method": "GET", "url": slow.url + "/slow"}, Targets())

        async def go() -> SendResult:
            client = redis.asyncio.Redis.from_url(with_db(redis_url, DB))
            try:
                async with HttpClient() as http:
                    return await replace(Sender.create(client, http, Targets(http_allow_hosts=("127.0.0.1",))), deadline_s=0.2).send(request)
            finally:
                await client.aclose()

        result = asyncio.run(go())
    assert result.outcome == "retry" and result.sent and "not finished within 0.2 s" in result.error


def test_a_zoho_list_read_follows_every_page(redis_url: str, sandbox: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scheduled scan reads the whole list, not its first page. One project a page here
    (the sandbox holds a few), so the pages are many and the last one is empty (204)."""
    from engine import zoho

    monkeypatch.setattr(zoho, "PAGE_ROWS", 1)
    targets = targets_for(sandbox)
    request = CATALOG["zoho.projects.list"].build({}, targets)
    assert request.paging == "zoho" and request.query == {"index": "1", "range": "1"}

    async def read() -> dict:
        client = redis.asyncio.Redis.from_url(with_db(redis_url, DB))
        try:
            async with HttpClient() as http:
                return await Sender.create(client, http, targets).read(request)
        finally:
            await client.aclose()

    listed = asyncio.run(read())
    everything = httpx.get(f"{sandbox.url}/restapi/portal/2063927/projects/", params={"range": 200}, timeout=5,
                           headers={"Authorization": f"Zoho-oauthtoken {sandbox_token(sandbox)}"}).json()["projects"]
    assert len(everything) >= 3
    assert [p["id_string"] for p in listed["projects"]] == [p["id_string"] for p in everything]
    # A page asked for by index or range is that page, as asked.
    assert CATALOG["zoho.projects.list"].build({"range": 50}, targets).paging is None


def sandbox_token(sandbox: Running) -> str:
    reply = httpx.post(f"{sandbox.url}/oauth/v2/token", timeout=5, data={
        "grant_type": "refresh_token", "client_id": CLIENT.client_id, "client_secret": CLIENT.client_secret,
        "refresh_token": CLIENT.refresh_token})
    return reply.json()["access_token"]
