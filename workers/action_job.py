"""The run_action job: send one planned action, at most once in effect, and record every attempt.

Effect once, per (event, rule, action):
- the job id is event:rule:n, so a resent webhook or a second enqueue never makes a second job;
- a run that finds the action already `done` (a redelivered job) sends nothing;
- just before sending, the action is marked in flight; a run that finds that mark (the worker
  died after sending and before recording) first asks the target whether the change is already
  there, where the action allows (sdp.milestones.update), and sends only if it is not.
The window that remains: an action other than an SDP milestone update whose worker is killed
between the target's reply and our record (a few milliseconds) is sent again.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

from arq import Retry

from engine import stats, store
from engine.config import Settings
from engine.echo import written
from engine.models import Request
from engine.sending import SendResult
from workers.resilience import retry_on_redis_errors

log = logging.getLogger("hookrules.worker")
HISTORY = 20  # attempts kept on the record, newest last


def backoff_s(attempt: int, retry_after_s: float | None, base_s: float = 1.0) -> float:
    """Exponential, with jitter so a burst of failures does not come back as one burst, and
    never sooner than the target asked for with Retry-After."""
    delay = min(300.0, base_s * 2.0 ** (attempt - 1)) * random.uniform(0.5, 1.5)
    return max(delay, retry_after_s or 0.0)


def limits_for(settings: Settings, request: Request) -> tuple[int, float]:
    """(tries, age in seconds) for this request's connector, or the global ones."""
    if request.connector is None:
        return settings.max_tries, settings.action_max_wait_s
    connector = settings.targets.connector(request.connector)
    return connector.max_tries or settings.max_tries, connector.max_age_s or settings.action_max_wait_s


async def attempt(ctx: dict[str, Any], event_id: str, key: str, request: Request) -> SendResult:
    """One try: verify an interrupted earlier try where possible, else mark and send."""
    redis, sender = ctx["redis"], ctx["sender"]
    if await store.was_sending(redis, event_id, key):
        if await sender.already_applied(request):
            log.info("action %s:%s: an interrupted earlier try had already applied it; not sending again", event_id, key)
            return SendResult("done", None, "", error=None, sent=False, details={"verified": "applied by an interrupted earlier try"})
    await store.mark_sending(redis, event_id, key)
    try:
        return await sender.send(request)
    except Exception as exc:  # a defect of ours: record it rather than lose the action silently
        log.exception("action %s:%s: sending failed unexpectedly", event_id, key)
        return SendResult("failed", None, "", error=f"internal error: {type(exc).__name__}: {exc}", sent=False)


def outcome_record(settings: Settings, action_name: str, request_data: dict[str, Any], request: Request,
                   result: SendResult, previous: dict[str, Any], first_at: float, replay: int) -> dict[str, Any]:
    """What one try comes to, as the action's record: `done`, `failed` (with why), or
    `retrying` while tries and time are left. Pure: the inline first try of a worker's batch
    and the run_action job that tries again share it."""
    # Attempts count requests that reached the system. Waiting for a rate-limit turn or a
    # token is not an attempt: a burst queued behind a 5/s limit must not use up the tries
    # before it is ever sent. Waiting is bounded by age instead.
    attempts = previous.get("attempts", 0) + (1 if result.sent else 0)
    tries, age = limits_for(settings, request)
    outcome, error = {"done": "done", "failed": "failed", "retry": "retrying"}[result.outcome], result.error
    if outcome == "retrying" and attempts >= tries:
        outcome, error = "failed", f"gave up after {attempts} attempts: {error}"
    elif outcome == "retrying" and time.time() - first_at > age:
        outcome, error = "failed", f"gave up after {age:g} s: {error}"
    entry = {"at": time.time(), "outcome": outcome, "http_status": result.http_status, "error": error, "sent": result.sent}
    return {
        "action": action_name,
        "outcome": outcome,
        "request": request_data,
        **{k: v for k, v in result.to_dict().items() if k not in ("outcome", "sent")},
        "error": error,
        "attempts": attempts,
        "first_at": first_at,
        "replay": replay,
        "history": (previous.get("history", []) + [entry])[-HISTORY:],
        "at": time.time(),
    }


def retry_delay(settings: Settings, result: SendResult, attempts: int) -> float:
    """How long until the next try of an action whose try came to `retrying`."""
    return backoff_s(attempts, result.retry_after_s, settings.backoff_s) if result.sent else (result.retry_after_s or 1.0)


@retry_on_redis_errors
async def run_action(
    ctx: dict[str, Any],
    event_id: str,
    rule_id: str,
    index: int,
    action_name: str,
    request_data: dict[str, Any],
    replay: int = 0,
) -> str:
    settings: Settings = ctx["settings"]
    key = f"{rule_id}:{index}"
    previous = await store.action_outcome(ctx["redis"], event_id, key) or {}
    if previous.get("outcome") == "done" or (previous.get("outcome") == "failed" and previous.get("replay", 0) >= replay):
        return previous["outcome"]  # redelivered after it was settled: never again
    if previous.get("replay", 0) != replay:
        previous = {"history": previous.get("history", [])}  # a replay starts its count afresh
    request = Request.from_dict(request_data)
    first_at = previous.get("first_at") or time.time()
    result = await attempt(ctx, event_id, key, request)
    record = outcome_record(settings, action_name, request_data, request, result, previous, first_at, replay)
    outcome, attempts, error = record["outcome"], record["attempts"], record["error"]
    # One transaction, as a first try's: the record, the counts and the echo memory agree, even
    # when the worker dies right after.
    async with ctx["redis"].pipeline(transaction=True) as pipe:
        store.add_outcome(pipe, event_id, key, record)
        stats.add_action_counts(pipe, [(request.connector, outcome, time.time() - first_at)])
        if outcome == "done" and (write := written(request)) is not None:
            # Remember it, so the webhook that brings it back is known as our own echo.
            kind, entity_id, fields = write
            store.add_write(pipe, request.connector or "", kind, entity_id, fields, settings.echo_window_s)
        await pipe.execute()
    log.info("action %s:%s %s (HTTP %s, attempt %d)%s", event_id, key, outcome, result.http_status, attempts,
             f": {error}" if outcome == "failed" else "", extra={"event_id": event_id, "rule_id": rule_id, "action": action_name})
    if outcome == "retrying":
        raise Retry(defer=retry_delay(settings, result, attempts))
    return outcome
