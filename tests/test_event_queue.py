"""The worker's event queue: a batch with an event that cannot be decided (a defect, not Redis)
still decides the others, and that one is marked failed with a reason, not retried forever; a
one-event job an earlier version queued goes the way every event goes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import redis

from conftest import Service, base_env, run_service, start, wait_until, with_db
from engine import store

SAMPLE = json.loads((Path(__file__).resolve().parent.parent / "samples" / "milestone-slipped.json").read_text())
ENV = {"HOOKRULES_SDP_URL": "http://127.0.0.1:9/app/x", "HOOKRULES_SDP_TOKEN": "t"}


def stored_without_worker(redis_url: str, tmp_path: Path, count: int) -> tuple[Service, dict[str, str], list[str]]:
    """An API alone (no worker yet) on a fresh database, and `count` events it accepted."""
    url = with_db(redis_url, 12)
    db = redis.Redis.from_url(url)
    db.flushdb()
    env = base_env(REDIS_URL=url, **ENV)
    service = run_service(tmp_path, env, worker=False, db=db)
    ids = []
    for n in range(count):
        body = json.loads(json.dumps(SAMPLE))
        body["milestone"]["id"] = str(900 + n)
        reply = service.post(json.dumps(body).encode())
        assert reply.status_code == 202
        ids.append(reply.json()["event_id"])
    return service, env, ids


def statuses(db: redis.Redis, ids: list[str]) -> list[bytes | None] | None:
    """Every event's status, once none is queued any more."""
    found = [db.hget(f"hookrules:event:{i}", "status") for i in ids]
    return found if b"queued" not in found else None


def test_one_undecidable_event_is_marked_failed_and_the_rest_of_its_batch_is_decided(redis_url: str, tmp_path: Path) -> None:
    service, env, ids = stored_without_worker(redis_url, tmp_path, 3)
    db = service.redis
    try:
        # A record no worker can read (what a defect, or a hand edit, could leave behind).
        db.hset(f"hookrules:event:{ids[1]}", "event", "{not json")
        service.processes.append(start(["worker"], {**env, "HOOKRULES_PORT": "0"}, tmp_path))
        assert wait_until(lambda: statuses(db, ids), timeout_s=30) == [b"decided", b"failed", b"decided"], service.logs()
        assert "internal error" in json.loads(db.hget(f"hookrules:event:{ids[1]}", "error"))
        # Nothing left to be read again (an event's entry goes once its actions are tried,
        # a moment after its status says decided).
        assert wait_until(lambda: db.xlen(store.EVENT_STREAM) == 0, timeout_s=10), service.logs()
    finally:
        for process in service.processes:
            process.stop()
        db.flushdb()


def test_a_one_event_job_of_an_earlier_version_is_decided_through_the_stream(redis_url: str, tmp_path: Path) -> None:
    service, env, ids = stored_without_worker(redis_url, tmp_path, 1)
    db = service.redis
    try:
        # What an earlier version left: the event stored, its job on arq's queue, no stream entry.
        db.delete(store.EVENT_STREAM)
        event = json.loads(db.hget(f"hookrules:event:{ids[0]}", "event"))

        async def enqueue() -> None:
            client = store.connect(with_db(redis_url, 12))
            try:
                await client.enqueue_job("process_event", event, _job_id=ids[0])
            finally:
                await client.aclose()

        asyncio.run(enqueue())
        service.processes.append(start(["worker"], {**env, "HOOKRULES_PORT": "0"}, tmp_path))
        assert wait_until(lambda: statuses(db, ids), timeout_s=30) == [b"decided"], service.logs()
        decision = json.loads(db.hget(f"hookrules:event:{ids[0]}", "decision"))
        assert [r["rule_id"] for r in decision["results"] if r["matched"]] == ["raise-priority-when-slipping"]
    finally:
        for process in service.processes:
            process.stop()
        db.flushdb()


def test_closing_cancels_a_batch_again_when_it_swallowed_the_first_cancel() -> None:
    """Python 3.11's asyncio.timeout can turn a cancel that meets its deadline into its own
    TimeoutError: the batch goes on. A stopping worker must not wait for it for ever (a
    SIGTERMed worker once hung in the scale test, in CI)."""
    import asyncio

    from workers.consumer import EventConsumer

    async def scenario() -> tuple[bool, int]:
        consumer = EventConsumer({"worker_id": "test:1", "settings": None})
        swallowed = []

        async def stubborn_batch() -> None:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                swallowed.append(True)  # as the race does: the batch goes on...
            await asyncio.sleep(3600)  # ...until a second cancel

        task = asyncio.get_running_loop().create_task(stubborn_batch())
        consumer.tasks[task] = []
        await asyncio.sleep(0)
        await asyncio.wait_for(consumer.close(), timeout=10)
        return task.cancelled(), len(swallowed)

    cancelled, swallowed = asyncio.run(scenario())
    assert cancelled and swallowed == 1
