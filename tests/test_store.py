"""What hookrules keeps in Redis, against the real server."""

from __future__ import annotations

import asyncio
import json

import redis

from conftest import with_db
from engine import store
from engine.models import Entity, Event


def make_event(event_id: str) -> Event:
    return Event(event_id, "sdp", "milestone.updated", Entity("milestone", "1", {"id": "1"}), 0.0, "d1", {})


def test_jobs_are_json_and_a_failed_jobs_exception_stays_readable() -> None:
    raw = store.job_serializer({"r": ValueError("no such milestone"), "s": False})
    assert json.loads(raw) == {"r": "ValueError: no such milestone", "s": False}


def test_store_event_writes_record_and_job_once(redis_url: str) -> None:
    url = with_db(redis_url, 3)
    plain = redis.Redis.from_url(url)
    plain.flushdb()

    async def scenario() -> list[bool]:
        client = store.connect(url)
        try:
            results = [await store.store_event(client, make_event("evt_a"), ttl_s=60)]
            # Two concurrent resends of the same delivery: still stored once.
            results += await asyncio.gather(*(store.store_event(client, make_event("evt_a"), 60) for _ in range(2)))
            return results
        finally:
            await client.aclose()

    assert asyncio.run(scenario()) == [True, False, False]
    assert plain.zrange("arq:queue", 0, -1) == [b"evt_a"]
    job = json.loads(plain.get("arq:job:evt_a"))
    assert job["f"] == "process_event" and job["a"][0]["id"] == "evt_a"
    assert 0 < plain.ttl("hookrules:event:evt_a") <= 60 and 0 < plain.ttl("arq:job:evt_a") <= 60
    plain.flushdb()
    plain.close()
