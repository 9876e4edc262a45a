"""Dead letters: actions given up on (a 4xx, or out of tries or time), kept with their last
error until someone replays or purges them. Shared by `hookrules dead` and the admin API.

A dead letter is named like its job: `<event id>:<rule id>:<n>`. Replaying re-decides the
event with the rules as they are now (so a fixed rule sends the fixed request) and queues the
action again under a job id of its own; it is sent once, however often replay is asked for
while it is queued.
"""

from __future__ import annotations

import time
from typing import Any

from arq.connections import ArqRedis

from engine import store


class NotDead(Exception):
    """No such dead letter: the id is wrong, it was replayed or purged, or its event expired."""


def split_id(letter_id: str) -> tuple[str, str]:
    event_id, _, key = letter_id.partition(":")
    if not event_id.startswith("evt_") or ":" not in key:
        raise NotDead(f"{letter_id!r} is not a dead letter id: they look like evt_<hex>:<rule id>:<n>")
    return event_id, key


async def list_letters(redis: ArqRedis, limit: int = 1000) -> list[dict[str, Any]]:
    letters = []
    for event_id, key, at in await store.dead_letters(redis, limit):
        outcome = await store.action_outcome(redis, event_id, key) or {}
        letters.append({
            "id": f"{event_id}:{key}",
            "event_id": event_id,
            "rule": key.rsplit(":", 1)[0],
            "action": outcome.get("action"),
            "error": outcome.get("error"),
            "http_status": outcome.get("http_status"),
            "attempts": outcome.get("attempts"),
            "failed_at": at,
        })
    return letters


async def show(redis: ArqRedis, letter_id: str) -> dict[str, Any]:
    event_id, key = split_id(letter_id)
    if not any(e == event_id and k == key for e, k, _ in await store.dead_letters(redis)):
        raise NotDead(f"no dead letter {letter_id}")
    record = await store.event_record(redis, event_id)
    if record is None:
        raise NotDead(f"the event of {letter_id} has expired")
    return {"id": letter_id, "event": record["event"], "outcome": record["actions"].get(key)}


async def replay(redis: ArqRedis, letter_id: str) -> str:
    """Queue the replay; the worker re-decides and sends. Returns the replay job id."""
    await show(redis, letter_id)  # exists, and its event is still there
    event_id, key = split_id(letter_id)
    job_id = f"replay:{letter_id}:{int(time.time())}"
    await redis.enqueue_job("replay_action", event_id, key, _job_id=job_id)
    await store.forget_dead(redis, event_id, key)
    return job_id


async def purge(redis: ArqRedis, letter_id: str) -> None:
    event_id, key = split_id(letter_id)
    if not await store.forget_dead(redis, event_id, key):
        raise NotDead(f"no dead letter {letter_id}")
