"""The first try of a batch's actions, sent by the worker that decided them.

Most actions succeed at the first try, so that try is made at once, without a job of its own:
the in-flight marks were written with the batch's decisions (batch.py), the requests go out
together (at most HOOKRULES_WORKER_CONCURRENCY at a time), and every outcome, count and echo
memory is written in one more. Only an action that has to be tried again becomes a run_action
job (workers/action_job.py), deferred by its backoff, under the job id event:rule:n: the same
id a re-run of the batch would use, so it never runs twice.

Effect once holds as in run_action: the mark is written before sending; a batch re-run after
a crash finds its events decided and hands their unsettled actions to run_action, which checks
an interrupted send before sending again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from engine import stats, store
from engine.config import Settings
from engine.echo import written
from engine.models import Event, PlannedAction, Request
from engine.sending import SendResult
from workers.action_job import outcome_record, retry_delay
from workers.batch import Decided

log = logging.getLogger("hookrules.worker")


async def send_first_tries(ctx: dict[str, Any], decided: list[Decided]) -> dict[str, list[str]]:
    """Send every action the batch planned. Per event id, a few words on each action's try
    ("rule:0 done (HTTP 200, attempt 1)"), for the event's log line."""
    redis, settings = ctx["redis"], ctx["settings"]
    planned = [(d.event, a) for d in decided for a in d.decision.actions if a.request is not None]
    said: dict[str, list[str]] = {}
    if not planned:
        return said
    # Each is already marked in flight, in the transaction that stored its decision (batch.py).
    first_at = time.time()
    results = await asyncio.gather(*(_send(ctx["sender"], ctx["send_gate"], action.request) for _, action in planned))
    records = [outcome_record(settings, action.action, action.request.to_dict(), action.request, result, {}, first_at, 0)
               for (_, action), result in zip(planned, results)]
    await _save(redis, settings, planned, records, first_at)
    for (event, action), result, record in zip(planned, results, records):
        if record["outcome"] == "retrying":
            await store.enqueue_action(redis, event.id, action, settings.event_ttl_s,
                                       defer_s=retry_delay(settings, result, record["attempts"]))
        said.setdefault(event.id, []).append(outcome_words(action, record))
        if record["outcome"] != "done":
            _log(event, action, record)
    return said


async def _send(sender: Any, gate: asyncio.Semaphore, request: Request) -> SendResult:
    async with gate:
        try:
            return await sender.send(request)
        except Exception as exc:  # a defect of ours: record it rather than lose the action silently
            log.exception("sending %s %s failed unexpectedly", request.method, request.url)
            return SendResult("failed", None, "", error=f"internal error: {type(exc).__name__}: {exc}", sent=False)


async def _save(redis: Any, settings: Settings, planned: list[tuple[Event, PlannedAction]],
                records: list[dict[str, Any]], first_at: float) -> None:
    now = time.time()
    async with redis.pipeline(transaction=True) as pipe:
        for (event, action), record in zip(planned, records):
            store.add_outcome(pipe, event.id, action.key, record, first_try=True)
            assert action.request is not None
            if record["outcome"] == "done" and (write := written(action.request)) is not None:
                # Remember it, so the webhook that brings it back is known as our own echo.
                kind, entity_id, fields = write
                store.add_write(pipe, action.request.connector or "", kind, entity_id, fields, settings.echo_window_s)
        stats.add_action_counts(pipe, [(a.request.connector if a.request else None, r["outcome"], now - first_at)
                                       for (_, a), r in zip(planned, records)])
        await pipe.execute()


def outcome_words(action: PlannedAction, record: dict[str, Any]) -> str:
    return f"{action.key} {record['outcome']} (HTTP {record.get('http_status')}, attempt {record['attempts']})"


def _log(event: Event, action: PlannedAction, record: dict[str, Any]) -> None:
    """An action that is not done has a line of its own, with why."""
    log.info("action %s:%s: %s", event.id, outcome_words(action, record), record["error"],
             extra={"event_id": event.id, "rule_id": action.rule_id, "action": action.action})
