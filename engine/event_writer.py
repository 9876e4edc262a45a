"""Intake's writes, batched across concurrent requests: one Redis call for many webhooks.

Each request hands its event to `EventWriter.store()` and waits. While one batch is on its
way to Redis, the events of the requests that arrive meanwhile gather, and go together in the
next call (engine/coalesce.py). An idle server writes each event at once (a batch of one); a
busy one writes hundreds per call, which is what lets one API process accept thousands of
webhooks a second. A request is answered 202 only after the call that holds its event has
returned: batching never answers before the write is done.
"""

from __future__ import annotations

import logging

from redis.asyncio import Redis

from engine.coalesce import Coalescer
from engine.event_queue import NewEvent, store_events
from engine.models import Event

log = logging.getLogger("hookrules.api")
MAX_BATCH = 500  # events per script call: keeps one call's time in Redis to a few milliseconds


class EventWriter:
    def __init__(self, redis: Redis, ttl_s: int, max_batch: int = MAX_BATCH) -> None:
        self.redis = redis
        self.ttl_s = ttl_s
        self._writes: Coalescer[NewEvent, bool] = Coalescer(self._write, max_batch)

    async def store(self, item: NewEvent) -> bool:
        """True when stored and queued, False when it is a resend of a stored event. Raises
        the Redis error when the write failed: then the event was not stored."""
        return await self._writes.submit(item)

    async def _write(self, batch: list[NewEvent]) -> list[bool]:
        results = await store_events(self.redis, batch, self.ttl_s)
        log_stored([item.event for item in batch], results)
        return results


def log_stored(events: list[Event], created: list[bool]) -> None:
    """A line per webhook while they come one at a time; under load, a line per write, so
    logging does not cost more than the write (every event's own lines are the worker's)."""
    if len(events) == 1:
        event = events[0]
        log.info("event %s from %s: %s %s %s%s", event.id, event.source, event.type, event.entity.kind, event.entity.id,
                 "" if created[0] else " (resend, not queued again)", extra={"event_id": event.id, "source": event.source})
    else:
        resends = len(created) - sum(created)
        log.info("stored %d webhooks in one write (%s ... %s)%s", len(events), events[0].id, events[-1].id,
                 f", {resends} resend(s) not queued again" if resends else "")
