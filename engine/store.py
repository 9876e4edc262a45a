"""Everything hookrules keeps in Redis, and the key names, in one place.

- `hookrules:event:<event id>`: a hash per event: `event` (the Event as JSON), `decision`,
  and one `action:<rule id>:<n>` field per action with its outcome. Kept HOOKRULES_EVENT_TTL.
  It doubles as the resend guard: a delivery whose event key exists is not queued again.
- `hookrules:events:stream`: the events not yet done, read in batches by the workers
  (engine/event_queue.py); `hookrules:order:<entity>`: each entity's events in arrival order;
  `hookrules:snapshot:<entity>`: the entity as last seen.
- `hookrules:heartbeat`: the last worker heartbeat (see workers/).
- arq's own keys (`arq:queue`, `arq:job:<id>`, `arq:result:<id>`, `arq:queue:health-check`).

Jobs are serialised as JSON, not pickle: a job in Redis is data an operator can read, and
unpickling what is in Redis would let anyone who can write to it run code in a worker.
"""

from __future__ import annotations

import json
import time
from typing import Any

from arq.connections import ArqRedis
from arq.constants import default_queue_name, health_check_key_suffix

from engine.jsontext import dumps
from engine.models import Event, PlannedAction

EVENT_PREFIX = "hookrules:event:"
SNAPSHOT_PREFIX = "hookrules:snapshot:"
ORDER_PREFIX = "hookrules:order:"  # per entity: event ids in arrival order, oldest first
SCAN_PREFIX = "hookrules:scan:"  # per scheduled rule: its last scan (tick, items, error)
ECHO_PREFIX = "hookrules:echo:"  # per entity: the fields our last write set, for a few minutes
FIRES_PREFIX = "hookrules:fires:"  # per rule and entity: how often it acted in the loop window
LOOPS_KEY = "hookrules:loops"  # rules stopped as loops: "rule|entity" scored by when
DEAD_KEY = "hookrules:dead"  # actions given up on: "event id|rule:n" scored by when
INDEX_KEY = "hookrules:events"  # every stored event id, scored by when it arrived
INDEX_MAX = 100_000  # events listed at most; older ones stay readable by id until their TTL
SNAPSHOT_TTL_S = 180 * 24 * 3600  # an entity not heard of for half a year is seen afresh
HEARTBEAT_KEY = "hookrules:heartbeat"
CONSUMED_KEY = "hookrules:consumed"  # when a worker last took work (a job, or a batch of events)
QUEUE = default_queue_name  # arq's: retries of actions, scheduled scans, replays
EVENT_STREAM = "hookrules:events:stream"  # accepted events not yet done, read in batches (event_queue.py)
EVENT_GROUP = "workers"
ARQ_HEALTH_KEY = QUEUE + health_check_key_suffix


def _readable(value: object) -> str:
    # arq stores a failed job's exception as its result; JSON has no exceptions, so keep
    # what an operator needs to read: its type and message.
    return f"{type(value).__name__}: {value}"


def job_serializer(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":"), default=_readable).encode()


def job_deserializer(raw: bytes) -> dict[str, Any]:
    return json.loads(raw)


def connect(url: str) -> ArqRedis:
    """The client of the API, the workers and the CLI, from REDIS_URL as redis-py reads it
    (redis://, rediss:// with its TLS options, unix://, %-escaped passwords). It connects on
    first use, so the API starts (and answers 503) while Redis is down, and a worker waits for
    it. Short timeouts: a webhook sender is waiting, and a 503 now beats a 202 never."""
    tls: dict[str, Any] = {}
    if url.startswith("rediss://"):
        # redis-py checks the certificate's chain but not, unless asked, that it names the
        # host: asked here, so a rediss:// URL means what it says. `?ssl_check_hostname=false`
        # in the URL still turns it off (the URL's options win over these).
        tls["ssl_check_hostname"] = True
    redis = ArqRedis.from_url(url, socket_connect_timeout=2, socket_timeout=5, **tls)
    redis.job_serializer = job_serializer
    redis.job_deserializer = job_deserializer
    return redis


def entity_key(event: Event) -> str:
    return f"{event.source}:{event.entity.kind}:{event.entity.id}"


def order_key(event: Event) -> str:
    return ORDER_PREFIX + entity_key(event)


def snapshot_key(event: Event) -> str:
    return SNAPSHOT_PREFIX + entity_key(event)


async def previous_state(redis: ArqRedis, event: Event) -> dict[str, Any] | None:
    """The entity as it stood before this event. Read once and kept with the event, so a
    job that runs again after a crash decides on the same `previous` (the snapshot may
    already hold this event's state by then)."""
    kept = await redis.hget(EVENT_PREFIX + event.id, "previous")
    if kept is not None:
        return json.loads(kept)
    raw = await redis.get(snapshot_key(event))
    previous = json.loads(raw)["data"] if raw else None
    await redis.hsetnx(EVENT_PREFIX + event.id, "previous", json.dumps(previous))
    return json.loads(await redis.hget(EVENT_PREFIX + event.id, "previous"))


async def record_outcome(redis: ArqRedis, event_id: str, action_key: str, outcome: dict[str, Any]) -> None:
    """The action's outcome; the in-flight mark goes in the same transaction, and a `failed`
    outcome puts the action on the dead-letter list, a `done` one takes it off."""
    async with redis.pipeline(transaction=True) as pipe:
        add_outcome(pipe, event_id, action_key, outcome)
        await pipe.execute()


def add_outcome(pipe: Any, event_id: str, action_key: str, outcome: dict[str, Any], first_try: bool = False) -> None:
    """record_outcome's writes, added to a transaction that holds others (a worker's batch).
    After a first try there is no dead letter to take off."""
    member = f"{event_id}|{action_key}"
    pipe.hset(EVENT_PREFIX + event_id, "action:" + action_key, dumps(outcome))
    pipe.hdel(EVENT_PREFIX + event_id, "sending:" + action_key)
    if outcome.get("outcome") == "failed":
        pipe.zadd(DEAD_KEY, {member: time.time()})
    elif outcome.get("outcome") == "done" and not first_try:
        pipe.zrem(DEAD_KEY, member)


async def mark_sending(redis: ArqRedis, event_id: str, action_key: str) -> None:
    """Written just before a request goes out: if the worker dies before the outcome is
    recorded, the next run knows the request may have landed."""
    await redis.hset(EVENT_PREFIX + event_id, "sending:" + action_key, str(time.time()))


def add_sending(pipe: Any, event_id: str, action_key: str, now: float) -> None:
    """mark_sending's write, added to a transaction that holds others (a worker's batch)."""
    pipe.hset(EVENT_PREFIX + event_id, "sending:" + action_key, str(now))


async def was_sending(redis: ArqRedis, event_id: str, action_key: str) -> bool:
    return bool(await redis.hexists(EVENT_PREFIX + event_id, "sending:" + action_key))


async def dead_letters(redis: ArqRedis, limit: int = 1000) -> list[tuple[str, str, float]]:
    """(event id, action key, when it was given up on), newest first."""
    members = await redis.zrevrange(DEAD_KEY, 0, limit - 1, withscores=True)
    return [(*m.decode().split("|", 1), score) for m, score in members]


async def dead_count(redis: ArqRedis) -> int:
    return int(await redis.zcard(DEAD_KEY))


async def forget_dead(redis: ArqRedis, event_id: str, action_key: str) -> bool:
    return bool(await redis.zrem(DEAD_KEY, f"{event_id}|{action_key}"))


async def action_outcome(redis: ArqRedis, event_id: str, action_key: str) -> dict[str, Any] | None:
    raw = await redis.hget(EVENT_PREFIX + event_id, "action:" + action_key)
    return json.loads(raw) if raw else None


async def enqueue_action(redis: ArqRedis, event_id: str, action: PlannedAction, ttl_s: int, replay: int = 0,
                         defer_s: float | None = None) -> bool:
    """One job per planned action; its id (event:rule:n) makes a second enqueue a no-op. A
    replay of a dead letter gets a job id of its own (…:replay:<n>). `defer_s`: not before
    then (a retry after a failed first try)."""
    job = await redis.enqueue_job(
        "run_action",
        event_id,
        action.rule_id,
        action.index,
        action.action,
        action.request.to_dict() if action.request else None,
        replay,
        _job_id=f"{event_id}:{action.key}" + (f":replay:{replay}" if replay else ""),
        _expires=ttl_s,
        _defer_by=defer_s,
    )
    return job is not None


async def event_record(redis: ArqRedis, event_id: str) -> dict[str, Any] | None:
    """The event, its decision and each action's outcome, as one JSON-ready dict."""
    raw = await redis.hgetall(EVENT_PREFIX + event_id)
    if not raw:
        return None
    fields = {key.decode(): value.decode() for key, value in raw.items()}
    actions = {
        key.removeprefix("action:"): json.loads(value) for key, value in sorted(fields.items()) if key.startswith("action:")
    }
    return {
        "event": json.loads(fields["event"]),
        "received": json.loads(fields.get("received") or "{}"),
        "status": fields.get("status"),
        "decided_at": float(fields["decided_at"]) if "decided_at" in fields else None,
        "decision": json.loads(fields["decision"]) if "decision" in fields else None,
        "actions": actions,
    }


async def queue_depth(redis: ArqRedis) -> int:
    """Events not yet done plus arq's jobs (action retries, scans, replays)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.xlen(EVENT_STREAM)
        pipe.zcard(QUEUE)
        events, jobs = await pipe.execute()
    return int(events) + int(jobs)


async def write_heartbeat(redis: ArqRedis, worker_id: str, interval_s: float, ruleset_version: str) -> None:
    beat = json.dumps({"at": time.time(), "worker": worker_id, "ruleset": ruleset_version})
    # Lives three intervals: the same window /health allows before it calls the workers gone.
    await redis.set(HEARTBEAT_KEY, beat, px=int(interval_s * 3000))


async def read_heartbeat(redis: ArqRedis) -> tuple[dict[str, Any] | None, str | None]:
    """Our heartbeat (time and worker id) and arq's health-check line (jobs done, failed...)."""
    beat, arq_line = await redis.mget(HEARTBEAT_KEY, ARQ_HEALTH_KEY)
    return (json.loads(beat) if beat else None, arq_line.decode() if arq_line else None)


async def record_scan(redis: ArqRedis, rule_id: str, report: dict[str, Any]) -> None:
    await redis.set(SCAN_PREFIX + rule_id, json.dumps({**report, "at": time.time()}))


async def last_scans(redis: ArqRedis, rule_ids: list[str]) -> dict[str, Any]:
    if not rule_ids:
        return {}
    raw = await redis.mget([SCAN_PREFIX + rule_id for rule_id in rule_ids])
    return {rule_id: json.loads(value) if value else None for rule_id, value in zip(rule_ids, raw)}


def _write_args(source: str, kind: str, entity_id: str, fields: dict[str, Any]) -> tuple[str, str]:
    return f"{ECHO_PREFIX}{source}:{kind}:{entity_id}", json.dumps({"fields": fields, "at": time.time()})


def add_write(pipe: Any, source: str, kind: str, entity_id: str, fields: dict[str, Any], window_s: int) -> None:
    """Remember a write of ours for the echo window, added to the transaction that records the
    action's outcome: the webhook it brings back is then known as our own echo."""
    pipe.set(*_write_args(source, kind, entity_id, fields), ex=window_s)


async def record_loop(redis: ArqRedis, rule_id: str, event: Event) -> None:
    await redis.zadd(LOOPS_KEY, {f"{rule_id}|{entity_key(event)}": time.time()})


async def recent_loops(redis: ArqRedis, since: float) -> list[dict[str, Any]]:
    members = await redis.zrangebyscore(LOOPS_KEY, since, "+inf", withscores=True)
    return [{"rule": m.decode().split("|", 1)[0], "entity": m.decode().split("|", 1)[1], "at": at} for m, at in members]


async def trim_events(redis: ArqRedis, keep: int = INDEX_MAX) -> int:
    """Retention by count: the records of events beyond the newest `keep` go (age is their TTL)."""
    extra = int(await redis.zcard(INDEX_KEY)) - keep
    if extra <= 0:
        return 0
    oldest = await redis.zpopmin(INDEX_KEY, extra)
    await redis.delete(*(EVENT_PREFIX + member.decode() for member, _ in oldest))
    return len(oldest)


async def recent_event_ids(redis: ArqRedis, since: float, until: float, limit: int) -> list[str]:
    """Event ids received in [since, until], newest first."""
    ids = await redis.zrevrangebyscore(INDEX_KEY, until, since, start=0, num=limit)
    return [i.decode() for i in ids]


async def oldest_queued_age(redis: ArqRedis, now_ms: int) -> float | None:
    """Seconds the oldest event not yet done, or the oldest arq job due now, has been waiting,
    or None when nothing waits. A stream entry's id is the time it was added, in ms."""
    due = await redis.zrangebyscore(QUEUE, "-inf", now_ms, start=0, num=1, withscores=True)
    first = await redis.xrange(EVENT_STREAM, count=1)
    waits = [(now_ms - due[0][1]) / 1000] if due else []
    if first:
        waits.append(max(0.0, (now_ms - int(first[0][0].decode().split("-", 1)[0])) / 1000))
    return max(waits) if waits else None


async def last_consumed(redis: ArqRedis) -> float | None:
    raw = await redis.get(CONSUMED_KEY)
    return float(raw) if raw else None
