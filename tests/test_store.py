"""What hookrules keeps in Redis, against the real server."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest
import redis

from conftest import with_db
from redis.exceptions import RedisError

from engine import event_queue, store
from engine.event_queue import NewEvent
from engine.event_writer import EventWriter
from engine.models import Entity, Event


def make_event(event_id: str, at: float | None = None) -> Event:
    return Event(event_id, "sdp", "milestone.updated", Entity("milestone", "1", {"id": "1"}), at or time.time(), "d1", {})


@pytest.fixture
def url(redis_url: str) -> str:
    return with_db(redis_url, 3)


@pytest.fixture
def plain(url: str) -> Iterator[redis.Redis]:
    """A plain client on an emptied database, emptied again afterwards."""
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def test_jobs_are_json_and_a_failed_jobs_exception_stays_readable() -> None:
    raw = store.job_serializer({"r": ValueError("no such milestone"), "s": False})
    assert json.loads(raw) == {"r": "ValueError: no such milestone", "s": False}


def test_store_events_writes_record_order_index_and_queue_entry_once(url: str, plain: redis.Redis) -> None:

    now = time.time()

    async def scenario() -> list[bool]:
        client = store.connect(url)
        try:
            results = await event_queue.store_events(client, [NewEvent(make_event("evt_a", now), {"address": "x"})], ttl_s=60)
            # A resend in a later call, and twice in one batch: still stored once.
            results += await event_queue.store_events(client, [NewEvent(make_event("evt_a"), {})] * 2, ttl_s=60)
            return results
        finally:
            await client.aclose()

    assert asyncio.run(scenario()) == [True, False, False]
    entries = plain.xrange(store.EVENT_STREAM)
    assert [fields[b"id"] for _, fields in entries] == [b"evt_a"]
    record = plain.hgetall("hookrules:event:evt_a")
    assert json.loads(record[b"event"])["id"] == "evt_a" and record[b"status"] == b"queued"
    assert json.loads(record[b"received"]) == {"address": "x"}
    assert plain.lrange("hookrules:order:sdp:milestone:1", 0, -1) == [b"evt_a"]
    assert plain.zscore(store.INDEX_KEY, "evt_a") == now
    assert 0 < plain.ttl("hookrules:event:evt_a") <= 60
    assert plain.hget("hookrules:stats:intake", "sdp|202") == b"1" and plain.hget("hookrules:stats:intake", "sdp|duplicate") == b"2"


def test_the_writer_batches_concurrent_requests_and_answers_each(url: str, plain: redis.Redis) -> None:

    async def scenario() -> list[bool]:
        client = store.connect(url)
        writer = EventWriter(client, ttl_s=60)
        calls = []
        original = client.evalsha

        async def counted_evalsha(*args: object) -> object:
            calls.append(len(args))
            return await original(*args)

        client.evalsha = counted_evalsha  # type: ignore[method-assign]
        try:
            ids = [f"evt_{n}" for n in range(200)] + ["evt_0"]
            return await asyncio.gather(*(writer.store(NewEvent(make_event(i), {})) for i in ids)), len(calls)
        finally:
            await client.aclose()

    results, calls = asyncio.run(scenario())
    assert results == [True] * 200 + [False]
    assert 1 <= calls < 10, "200 concurrent requests should share a few script calls"
    assert plain.xlen(store.EVENT_STREAM) == 200


def test_the_writer_reports_a_redis_failure_to_every_waiting_request() -> None:
    async def scenario() -> list[object]:
        client = store.connect("redis://127.0.0.1:1/0")  # nothing listens there
        writer = EventWriter(client, ttl_s=60)
        try:
            return await asyncio.gather(*(writer.store(NewEvent(make_event(f"evt_{n}"), {})) for n in range(5)),
                                        return_exceptions=True)
        finally:
            await client.aclose()

    results = asyncio.run(scenario())
    assert all(isinstance(r, RedisError) for r in results), results


def test_queue_entries_are_read_once_taken_over_when_idle_and_handed_back(url: str, plain: redis.Redis) -> None:

    async def scenario() -> dict[str, object]:
        client = store.connect(url)
        try:
            await event_queue.ensure_group(client)
            await event_queue.store_events(client, [NewEvent(make_event(f"evt_{n}"), {}) for n in range(3)], ttl_s=60)
            first = await event_queue.read_new(client, "a", 2, 10)
            second = await event_queue.read_new(client, "b", 10, 10)
            nothing = await event_queue.read_new(client, "b", 10, 10)
            await event_queue.acknowledge(client, [second[0][0]])
            # "a" died: after the idle time, "b" takes its entries over.
            await asyncio.sleep(0.05)
            taken = await event_queue.claim_stale(client, "b", 20, 10)
            await event_queue.hand_back(client, taken)
            again = await event_queue.read_new(client, "c", 10, 10)
            return {"first": first, "second": second, "nothing": nothing, "taken": taken, "again": again}
        finally:
            await client.aclose()

    got = asyncio.run(scenario())
    assert [i for _, i in got["first"]] == ["evt_0", "evt_1"] and [i for _, i in got["second"]] == ["evt_2"]
    assert got["nothing"] == []
    assert [i for _, i in got["taken"]] == ["evt_0", "evt_1"]
    assert [i for _, i in got["again"]] == ["evt_0", "evt_1"]
    assert plain.xlen(store.EVENT_STREAM) == 2  # the acknowledged one is gone, the handed-back ones wait again


def test_stopped_workers_names_leave_the_group_once_idle_and_done(url: str, plain: redis.Redis) -> None:

    async def scenario() -> tuple[list[str], list[str]]:
        client = store.connect(url)
        try:
            await event_queue.ensure_group(client)
            await event_queue.store_events(client, [NewEvent(make_event(f"evt_{n}"), {}) for n in range(2)], ttl_s=60)
            done = await event_queue.read_new(client, "stopped", 1, 10)
            await event_queue.acknowledge(client, [done[0][0]])
            await event_queue.read_new(client, "holding", 1, 10)  # still has an entry pending
            await asyncio.sleep(0.05)
            forgotten = await event_queue.forget_idle_consumers(client, 20)
            left = [c["name"].decode() for c in await client.xinfo_consumers(store.EVENT_STREAM, store.EVENT_GROUP)]
            return forgotten, left
        finally:
            await client.aclose()

    forgotten, left = asyncio.run(scenario())
    assert forgotten == ["stopped"] and left == ["holding"]


def test_a_later_event_waits_for_the_earlier_one_then_goes_only_after_the_order_wait(url: str, plain: redis.Redis) -> None:
    """Entity 1's line holds evt_1 then evt_2; a batch holding only evt_2 waits, however old
    evt_2 is, until it has itself waited `order_wait` (workers/batch.py: the take-over time
    of a dead worker's events plus a margin), and evt_2 goes at once when it is at the head."""
    from workers.batch import Taken, take_turns

    old = time.time() - 3600  # received an hour ago: the wait counts from when it was first blocked

    async def scenario() -> list[list[str]]:
        client = store.connect(url)
        try:
            await event_queue.store_events(client, [NewEvent(make_event(f"evt_{n}", old), {}) for n in (1, 2)], ttl_s=600)
            later = [Taken("0-2", make_event("evt_2", old), "queued")]
            seen = []
            now = time.time()
            for at in (now, now + 5, now + 20):
                ready, _ = await take_turns(client, later, at, order_wait=10)
                seen.append([t.event.id for t in ready])
            await client.lrem(store.order_key(make_event("evt_1")), 1, "evt_1")  # evt_1 decided
            again = [Taken("0-2", make_event("evt_2", old), "queued")]
            ready, _ = await take_turns(client, again, now, order_wait=10)
            seen.append([t.event.id for t in ready])
            return seen
        finally:
            await client.aclose()

    assert asyncio.run(scenario()) == [[], [], ["evt_2"], ["evt_2"]]
