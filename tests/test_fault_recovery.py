"""The heavy fault tests: a worker SIGKILLed mid-stream, and Redis restarted mid-stream.
Bounded in count and time, loopback only; every process and server is stopped at the end."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import redis

from conftest import SECRET, base_env, free_port, run_service, start, wait_until
from engine.embedded_redis import start_embedded
from faults import PROJECT, TOKEN, counted_sandbox, fault_service, milestone_body
from stand_in import StandIn

EVENTS = 2000
CLOSE_RULE = """\
id: close-each
on: {source: sdp, event: "milestone.*"}
then:
  - sdp.milestones.update:
      project_id: "{{ milestone.project.id }}"
      milestone_id: "{{ milestone.id }}"
      fields: {title: "{{ milestone.title }} done"}
"""


def add_milestones(url: str, count: int) -> list[str]:
    headers = {"Accept": "application/vnd.manageengine.sdp.v3+json", "Authorization": f"Zoho-oauthtoken {TOKEN}"}
    ids = []
    with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
        for n in range(count):
            reply = client.post(f"/app/itdesk/api/v3/projects/{PROJECT}/milestones",
                                data={"input_data": f'{{"milestone": {{"title": "m{n}"}}}}'})
            assert reply.status_code in (200, 201), reply.text
            ids.append(reply.json()["milestone"]["id"])
    return ids


async def post_all(url: str, bodies: list[bytes], concurrency: int = 20, on_progress=None) -> list[str]:  # noqa: ANN001
    """Post every body, sending again after a 429 or a 503, as a webhook sender does; the event ids of the 202s."""
    accepted: list[str] = []
    queue = list(enumerate(bodies))
    headers = {"Content-Type": "application/json", "X-Hook-Token": SECRET}

    async def sender(client: httpx.AsyncClient) -> None:
        while queue:
            n, body = queue.pop(0)
            for _ in range(100):
                try:
                    reply = await client.post(f"{url}/hooks/sdp", content=body, headers=headers)
                except httpx.HTTPError:
                    await asyncio.sleep(0.2)
                    continue
                if reply.status_code == 202:
                    accepted.append(reply.json()["event_id"])
                    break
                assert reply.status_code in (429, 503), reply.text  # both say: send again later
                await asyncio.sleep(0.2)
            if on_progress:
                on_progress(len(accepted))

    async with httpx.AsyncClient(timeout=10) as client:
        await asyncio.gather(*(sender(client) for _ in range(concurrency)))
    return accepted


def test_a_worker_killed_mid_stream_loses_nothing_and_repeats_nothing(redis_url: str, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "close.yaml").write_text(CLOSE_RULE)
    with counted_sandbox() as (url, applied):
        ids = add_milestones(url, EVENTS)
        service = fault_service(tmp_path, redis_url, 13, url, rules, workers=2, HOOKRULES_JOB_TIMEOUT="5",
                                HOOKRULES_SDP_RATE="100000", HOOKRULES_SDP_BURST="100000", HOOKRULES_SDP_MAX_CONCURRENT="500")
        victim = service.processes[2]
        try:
            killed = []

            def kill_midway(count: int) -> None:
                if count >= EVENTS // 3 and not killed:
                    os.kill(victim.popen.pid, signal.SIGKILL)
                    killed.append(time.monotonic())

            bodies = [milestone_body(i, title=f"m{n}") for n, i in enumerate(ids)]
            accepted = asyncio.run(post_all(service.url, bodies, on_progress=kill_midway))
            assert killed and len(accepted) == EVENTS
            # The killed worker's events come back after arq's job timeout (5 s) + 10 s. An event whose
            # PUT it sent just before dying is applied already, but its outcome is written only by the
            # take-over (which asks SDP first): so wait for the outcomes, not only for the PUTs.
            def outcomes() -> list[str | None]:
                pipe = service.redis.pipeline()
                for event_id in accepted:
                    pipe.hget(f"hookrules:event:{event_id}", "action:close-each:0")
                return [json.loads(raw)["outcome"] if raw else None for raw in pipe.execute()]

            assert wait_until(lambda: outcomes().count("done") == EVENTS, timeout_s=120, interval_s=0.5), \
                (collections.Counter(outcomes()), len(applied.puts), service.logs()[-3000:])
            time.sleep(2)  # any late duplicate would arrive now
            assert set(applied.puts) == set(ids)
            assert max(applied.puts.values()) == 1, [m for m, n in applied.puts.items() if n > 1]
        finally:
            for process in service.processes:
                process.stop()


def test_redis_restarted_mid_stream_loses_no_accepted_event(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "valkey"
    server = start_embedded(data, port=port)
    servers = [server]
    with StandIn() as target:
        rules = tmp_path / "rules"
        rules.mkdir()
        (rules / "notify.yaml").write_text(
            "id: notify\non: {source: sdp, event: '*'}\nthen:\n"
            f"  - http.request: {{method: POST, url: '{target.url}/seen/{{{{ milestone.id }}}}'}}\n")
        env = base_env(REDIS_URL=f"redis://127.0.0.1:{port}/0", HOOKRULES_RULES_DIR=str(rules))
        service = run_service(tmp_path, env, db=redis.Redis(port=port))
        try:
            restarted = []

            def restart_midway(count: int) -> None:
                if count >= 100 and not restarted:
                    restarted.append(True)
                    servers[-1].stop()  # graceful: the append-only file is flushed
                    time.sleep(1.0)  # webhooks meanwhile get 503 and are sent again
                    servers.append(start_embedded(data, port=port))

            bodies = [milestone_body(str(1000 + n), title=f"m{n}") for n in range(300)]
            accepted = asyncio.run(post_all(service.url, bodies, concurrency=5, on_progress=restart_midway))
            assert restarted and len(accepted) == 300
            client = redis.Redis(port=port)

            def all_decided() -> bool:
                pipe = client.pipeline()
                for event_id in accepted:
                    pipe.hget(f"hookrules:event:{event_id}", "status")
                return all(status == b"decided" for status in pipe.execute())

            if not wait_until(all_decided, timeout_s=90, interval_s=0.5):
                statuses = [client.hget(f"hookrules:event:{e}", "status") for e in accepted]
                stuck = [(e, s) for e, s in zip(accepted, statuses) if s != b"decided"]
                raise AssertionError(f"{len(stuck)} accepted event(s) not decided, e.g. {stuck[:3]}; queue "
                                     f"{client.zcard('arq:queue')}\n{service.logs()[-4000:]}")
            assert wait_until(lambda: len({r.path for r in target.requests}) == 300, timeout_s=30)
        finally:
            for process in service.processes:
                process.stop()
            servers[-1].stop()


def test_sigterm_lets_a_worker_finish_or_hand_back_its_work(redis_url: str, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "close.yaml").write_text(CLOSE_RULE)
    with counted_sandbox() as (url, applied):
        ids = add_milestones(url, 300)
        service = fault_service(tmp_path, redis_url, 14, url, rules, workers=2, HOOKRULES_JOB_TIMEOUT="5",
                                HOOKRULES_SHUTDOWN_WAIT="5", HOOKRULES_SDP_RATE="100000", HOOKRULES_SDP_BURST="100000")
        leaving = service.processes[2]
        try:
            assert wait_until(lambda: "Starting worker for" in leaving.output(), timeout_s=20), leaving.output()
            stopped = []

            def stop_midway(count: int) -> None:
                if count >= 100 and not stopped:
                    leaving.popen.send_signal(signal.SIGTERM)
                    stopped.append(True)

            bodies = [milestone_body(i, title=f"m{n}") for n, i in enumerate(ids)]
            accepted = asyncio.run(post_all(service.url, bodies, on_progress=stop_midway))
            assert leaving.popen.wait(timeout=30) == 0  # a clean exit, within the shutdown wait
            assert "shutdown on SIGTERM" in leaving.output()
            assert wait_until(lambda: len(applied.puts) == len(accepted) == 300, timeout_s=60, interval_s=0.5), service.logs()[-3000:]
            time.sleep(1)
            assert max(applied.puts.values()) == 1
        finally:
            for process in service.processes:
                process.stop()


@pytest.mark.parametrize("noticed", ["reading again in", "the worker starts again in"])
def test_a_worker_told_to_stop_while_redis_is_gone_stops(tmp_path: Path, noticed: str) -> None:
    """A worker keeps trying while Redis is away, but not once it is told to stop: a host
    shutting down (or `up` killed outright) stops Redis and the worker together, and a worker
    that tried again forever would never exit. Found by test_cli's `up` killed outright.
    Told while its event reader waits to read again, or while the worker waits to start again."""
    server = start_embedded(tmp_path / "valkey")  # a port of its own choosing, tried again if taken
    port = server.port
    env = base_env(REDIS_URL=f"redis://127.0.0.1:{port}/0")
    worker = start(["worker"], env, tmp_path)
    try:
        assert wait_until(lambda: redis.Redis(port=port).exists("hookrules:heartbeat"), timeout_s=30), worker.output()
        server.stop()
        assert wait_until(lambda: noticed in worker.output(), timeout_s=30), worker.output()
        worker.popen.send_signal(signal.SIGTERM)
        try:
            code = worker.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the worker did not stop in 20 s\n{worker.output()[-3000:]}") from None
        assert code == 0, worker.output()[-3000:]
        if noticed == "the worker starts again in":  # stopped by our handler, not by a replay in arq's next loop
            assert "told to stop while waiting for Redis" in worker.output(), worker.output()[-3000:]
    finally:
        worker.stop()
        if server.is_running():
            server.stop()
