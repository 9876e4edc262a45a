"""Intake's writes, batched across concurrent requests: one Redis call for many webhooks.

Each request hands its event to `EventWriter.store()` and waits. While one batch is on its
way to Redis, the events of the requests that arrive meanwhile gather, and go together in the
next call. An idle server writes each event at once (a batch of one); a busy one writes
hundreds per call, which is what lets one API process accept thousands of webhooks a second.
A request is answered 202 only after the call that holds its event has returned: batching
never answers before the write is done.
"""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis

from engine.event_queue import NewEvent, store_events
from engine.models import Event

log = logging.getLogger("hookrules.api")

MAX_BATCH = 500  # events per script call: keeps one call's time in Redis to a few milliseconds


class EventWriter:
    def __init__(self, redis: Redis, ttl_s: int, max_batch: int = MAX_BATCH) -> None:
        self.redis = redis
        self.ttl_s = ttl_s
        self.max_batch = max_batch
        self._pending: list[tuple[NewEvent, asyncio.Future[bool]]] = []
        self._flushing = False

    async def store(self, item: NewEvent) -> bool:
        """True when stored and queued, False when it is a resend of a stored event. Raises
        the Redis error when the write failed: then the event was not stored."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().create_task(self._flush())
        # A sender that hangs up cancels only its own wait: the batch is written all the same.
        return await future

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
                await self._write(batch)
        finally:
            self._flushing = False

    async def _write(self, batch: list[tuple[NewEvent, asyncio.Future[bool]]]) -> None:
        try:
            results = await store_events(self.redis, [item for item, _ in batch], self.ttl_s)
        except Exception as exc:  # every waiting request learns of it (503); none is left hanging
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), created in zip(batch, results):
            if not future.done():
                future.set_result(created)
        log_stored([item.event for item, _ in batch], results)


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
