"""The event queue: a Redis stream of accepted event ids, read in batches by the workers.

Why a stream and not one arq job per event: a worker takes up to a few hundred events with one
command and acknowledges them with one more, where an arq job costs about ten round trips of
its own; and the stream keeps what it handed out (the consumer group's pending list), so an
event whose worker dies is taken over by another (`claim_stale`) and never lost.

- `hookrules:events:stream`: one entry per accepted event, `id` = the event id. Entries are
  deleted once the event is decided and its actions are settled or handed to their retry jobs.
- consumer group `workers`: each worker process reads as consumer `<host>:<pid>`.

Intake writes everything about a new event in one script call for a whole batch of requests
(`store_events`): the record, the entity's arrival order, the index behind GET /events, the
intake counters and the stream entry, or nothing at all for a resend.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from engine import stats
from engine.jsontext import dumps_bytes
from engine.models import Event
from engine.store import EVENT_GROUP as GROUP
from engine.store import EVENT_PREFIX, INDEX_KEY
from engine.store import EVENT_STREAM as STREAM
from engine.store import order_key

# ARGV: ttl_ms, ttl_s, now (s), minute key, stream, index, intake counters (or "" not to count:
# a scan's items are not webhooks), event key prefix, then per event: id, event JSON, received
# JSON, order key, received_at, source. Returns 1 (stored and queued) or 0 (a resend) per event.
# Keys are named in ARGV, not KEYS: hookrules runs on one Redis (or a primary), not a cluster.
_STORE_EVENTS = """
local ttl_ms, ttl_s, now, minute = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local stream, index, intake, event_prefix = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local created, results = 0, {}
for i = 9, #ARGV, 6 do
  local id, order, source = ARGV[i], ARGV[i + 3], ARGV[i + 5]
  local key = event_prefix .. id
  if redis.call('EXISTS', key) == 1 then
    results[#results + 1] = 0
    if intake ~= '' then redis.call('HINCRBY', intake, source .. '|duplicate', 1) end
  else
    redis.call('HSET', key, 'event', ARGV[i + 1], 'status', 'queued', 'received', ARGV[i + 2])
    redis.call('PEXPIRE', key, ttl_ms)
    redis.call('RPUSH', order, id)
    redis.call('PEXPIRE', order, ttl_ms)
    redis.call('ZADD', index, ARGV[i + 4], id)
    redis.call('XADD', stream, '*', 'id', id)
    if intake ~= '' then redis.call('HINCRBY', intake, source .. '|202', 1) end
    created = created + 1
    results[#results + 1] = 1
  end
end
if created > 0 then
  if intake ~= '' then
    redis.call('HINCRBY', minute, 'events', created)
    redis.call('EXPIRE', minute, 86400)
  end
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now - ttl_s)
end
return results
"""


@dataclass(frozen=True)
class NewEvent:
    """An event on its way into Redis, with what arrived (the audit record's `received`)."""

    event: Event
    received: dict[str, Any]


def store_args(batch: Sequence[NewEvent], ttl_s: int, now: float, counted: bool = True) -> list[Any]:
    """The script's arguments for a batch: the encoding is done here, once per event."""
    args: list[Any] = [ttl_s * 1000, ttl_s, now, stats.minute_key(now), STREAM, INDEX_KEY,
                       stats.INTAKE if counted else "", EVENT_PREFIX]
    for item in batch:
        event = item.event
        args += [event.id, dumps_bytes(event.to_dict()), dumps_bytes(item.received), order_key(event),
                 event.received_at, event.source]
    return args


async def store_events(redis: Redis, batch: Sequence[NewEvent], ttl_s: int, counted: bool = True) -> list[bool]:
    """Store and queue every new event of the batch in one atomic script call; per event,
    True when stored, False when it is a resend of a stored one. Raises on a Redis error,
    and then nothing of the batch was stored. `counted`: webhooks are counted for /metrics."""
    if not batch:
        return []
    # EVALSHA, the script loaded once: the call carries only the events.
    script = redis.register_script(_STORE_EVENTS)
    results = await script(args=store_args(batch, ttl_s, time.time(), counted))
    return [bool(r) for r in results]


async def ensure_group(redis: Redis) -> None:
    """The consumer group, reading from the stream's beginning: events accepted before any
    worker ever started are read too."""
    try:
        await redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _entries(reply: Any) -> list[tuple[str, str]]:
    """(entry id, event id) pairs from an XREADGROUP or XCLAIM reply."""
    out = []
    for entry_id, fields in reply:
        if fields:  # an entry deleted while pending comes back without fields
            out.append((entry_id.decode(), fields[b"id"].decode()))
    return out


async def read_new(redis: Redis, consumer: str, count: int, block_ms: int) -> list[tuple[str, str]]:
    """Up to `count` entries no worker has had yet; waits up to `block_ms` for the first."""
    try:
        reply = await redis.xreadgroup(GROUP, consumer, {STREAM: ">"}, count=count, block=block_ms)
    except ResponseError as exc:
        if "NOGROUP" not in str(exc):
            raise
        await ensure_group(redis)  # Redis lost its data (no AOF) or the stream was deleted
        return []
    return _entries(reply[0][1]) if reply else []


async def read_own_pending(redis: Redis, consumer: str, count: int) -> list[tuple[str, str]]:
    """Entries handed to this consumer and not acknowledged: after the worker restarted in
    the same process (a Redis outage), it finishes what it had."""
    try:
        reply = await redis.xreadgroup(GROUP, consumer, {STREAM: "0"}, count=count)
    except ResponseError as exc:
        if "NOGROUP" not in str(exc):
            raise
        return []
    return _entries(reply[0][1]) if reply else []


async def claim_stale(redis: Redis, consumer: str, idle_ms: int, count: int) -> list[tuple[str, str]]:
    """Entries another consumer has held longer than `idle_ms` without acknowledging them
    (its worker died): this consumer takes them over."""
    try:
        _, claimed, *_ = await redis.xautoclaim(STREAM, GROUP, consumer, idle_ms, "0-0", count=count)
    except ResponseError as exc:
        if "NOGROUP" not in str(exc):
            raise
        return []
    return _entries(claimed)


async def keep_claimed(redis: Redis, consumer: str, entry_ids: Sequence[str]) -> None:
    """Reset the idle time of entries this consumer is still working on (events waiting for
    their turn), so no other worker takes them over meanwhile."""
    if entry_ids:
        await redis.xclaim(STREAM, GROUP, consumer, 0, list(entry_ids), justid=True)


async def acknowledge(redis: Redis, entry_ids: Sequence[str]) -> None:
    """Done with these entries: out of the pending list and out of the stream."""
    if entry_ids:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.xack(STREAM, GROUP, *entry_ids)
            pipe.xdel(STREAM, *entry_ids)
            await pipe.execute()


async def enqueue_ids(redis: Redis, event_ids: Sequence[str]) -> None:
    """Queue stored events (again): a worker reads them as any other."""
    if event_ids:
        async with redis.pipeline(transaction=True) as pipe:
            for event_id in event_ids:
                pipe.xadd(STREAM, {"id": event_id})
            await pipe.execute()


async def hand_back(redis: Redis, entries: Sequence[tuple[str, str]]) -> None:
    """Put unfinished entries back at the end of the stream for any worker (a worker shutting
    down): the arrival-order lists, not the stream, say which event of an entity goes first."""
    if entries:
        async with redis.pipeline(transaction=True) as pipe:
            for _, event_id in entries:
                pipe.xadd(STREAM, {"id": event_id})
            pipe.xack(STREAM, GROUP, *(entry_id for entry_id, _ in entries))
            pipe.xdel(STREAM, *(entry_id for entry_id, _ in entries))
            await pipe.execute()


async def forget_idle_consumers(redis: Redis, idle_ms: int) -> list[str]:
    """Consumers with nothing pending that have not read for `idle_ms`: workers that stopped
    (every worker process reads under a name of its own, so restarts and deploys leave their
    names behind). Their entries were acknowledged or taken over: forgetting them loses nothing."""
    try:
        consumers = await redis.xinfo_consumers(STREAM, GROUP)
    except ResponseError:
        return []  # no stream or group yet
    gone = [c["name"] for c in consumers if int(c["pending"]) == 0 and int(c["idle"]) > idle_ms]
    for name in gone:
        await redis.xgroup_delconsumer(STREAM, GROUP, name)
    return [name.decode() if isinstance(name, bytes) else str(name) for name in gone]

