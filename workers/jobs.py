"""The two jobs a worker runs. Each takes arq's `ctx` and plain JSON data, as arq jobs do.

ctx holds what settings.py put there: `settings`, `rules` (the ruleset in use, reloaded on
edits), `http`, `sender`.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import replace
from typing import Any

from arq import Retry

from engine import event_queue, stats, store
from engine.actions import ActionError
from engine.changes import diff, merge
from engine.config import Settings
from engine.dates import normalise_dates
from engine.decide import decide
from engine.echo import is_echo
from engine.event_queue import NewEvent
from engine.fetching import fetch_for_event
from engine.intake import event_id_for
from engine.models import Decision, Entity, Event, PlannedAction
from engine.sending import ReadError
from engine.templates import TemplateError, render_tree
from workers.action_job import backoff_s
from workers.resilience import retry_on_redis_errors

log = logging.getLogger("hookrules.worker")
# How long an event waits for an earlier event of the same entity before it is decided anyway
# (that earlier one's worker died and arq has not run it again yet).
ORDER_WAIT_S = 120.0
SCAN_TRIES = 3  # a scan whose list cannot be read is tried again this often, then waits for the next tick


@retry_on_redis_errors
async def process_event(ctx: dict[str, Any], event_data: dict[str, Any]) -> dict[str, Any]:
    redis = ctx["redis"]
    event = Event.from_dict(event_data)
    if not await store.take_turn(redis, event):
        if time.time() - event.received_at < ORDER_WAIT_S:
            # An earlier event of this entity is still being decided: come back shortly.
            raise Retry(defer=random.uniform(0.05, 0.2))
        log.warning("event %s: an earlier event of %s is stuck; deciding this one anyway", event.id, store.entity_key(event))
    try:
        previous = await store.previous_state(redis, event)
        current = merge(previous, event.entity.data)
        echo = await _is_echo(redis, event, previous, current)
        ruleset, now = ctx["rules"].ruleset, time.time()
        fetched = await fetch_for_event(ctx["sender"], ruleset, event, previous, now)
        decision = decide(event, previous, ruleset, now, fetched, echo=echo)
        decision = await _stop_loops(redis, ctx["settings"], event, decision)
        await store.record_decision(redis, decision)
        await stats.count_decision(redis, decision, event.received_at, time.time())
        await store.save_snapshot(redis, event, current)
    finally:
        await store.end_turn(redis, event)
    queued = await _dispatch(redis, ctx["settings"], decision)
    matched = [r.rule_id for r in decision.results if r.matched]
    log.info("event %s (%s %s): matched %s, %d action(s) queued", event.id, event.source, event.type, matched, queued,
             extra={"event_id": event.id, "source": event.source, "rule_id": ",".join(matched) or None})
    return {"matched": matched, "queued": queued}


async def _is_echo(redis: Any, event: Event, previous: dict[str, Any] | None, current: dict[str, Any]) -> bool:
    written = await store.recent_write(redis, event)
    if written is None or not is_echo(written, current, diff(previous, current)):
        return False
    await store.forget_write(redis, event)
    log.info("event %s: the echo of hookrules' own write to %s", event.id, store.entity_key(event))
    return True


async def _stop_loops(redis: Any, settings: Settings, event: Event, decision: Decision) -> Decision:
    """A rule acting on one entity more than HOOKRULES_LOOP_LIMIT times in the window is
    stopped for this event, recorded as a loop, and shown in /health."""
    acting = sorted({a.rule_id for a in decision.actions})
    stopped: dict[str, str] = {}
    for rule_id in acting:
        count = await store.count_fire(redis, rule_id, event, settings.loop_window_s)
        if count > settings.loop_limit:
            stopped[rule_id] = (f"stopped as a loop: it acted on {event.entity.kind} {event.entity.id} {count} times "
                                f"within {settings.loop_window_s} s (HOOKRULES_LOOP_LIMIT={settings.loop_limit})")
            await store.record_loop(redis, rule_id, event)
            log.warning("rule %s: %s", rule_id, stopped[rule_id], extra={"event_id": event.id, "rule_id": rule_id})
    if not stopped:
        return decision
    results = [replace(r, error=stopped[r.rule_id]) if r.rule_id in stopped else r for r in decision.results]
    actions = [a for a in decision.actions if a.rule_id not in stopped]
    return replace(decision, results=results, actions=actions)


async def _dispatch(redis: Any, settings: Any, decision: Decision) -> int:
    """Record what shadow rules would send and what could not be built; queue the rest."""
    for action in decision.shadowed:
        await _record_unsent(redis, decision.event_id, action, "shadow")
    queued = 0
    for action in decision.actions:
        if action.request is None:
            await _record_unsent(redis, decision.event_id, action, "failed")
        elif await store.enqueue_action(redis, decision.event_id, action, settings.event_ttl_s):
            queued += 1
    return queued


async def _record_unsent(redis: Any, event_id: str, action: PlannedAction, outcome: str) -> None:
    await store.record_outcome(
        redis,
        event_id,
        action.key,
        {
            "action": action.action,
            "outcome": outcome,
            "request": action.request.to_dict() if action.request else None,
            "error": action.error,
            "attempts": 0,
            "at": time.time(),
        },
    )


@retry_on_redis_errors
async def scan_rule(ctx: dict[str, Any], rule_id: str, tick: float) -> dict[str, Any]:
    """A scheduled rule's tick: read its list (every page) and store each item as an event
    `<kind>.scanned`, which then goes through process_event like a webhook."""
    redis, ruleset = ctx["redis"], ctx["rules"].ruleset
    rule = next((r for r in ruleset.rules if r.id == rule_id and r.scan is not None), None)
    if rule is None or rule.scan is None:
        log.info("scan %s: the rule is gone or no longer scheduled; nothing to do", rule_id)
        return {"items": 0, "queued": 0}
    try:
        request = rule.scan.spec.build(render_tree(rule.scan.args, {"now": int(tick * 1000)}), ruleset.targets)
        body = await ctx["sender"].read(request)
    except (ReadError, ActionError, TemplateError) as exc:
        await store.record_scan(redis, rule_id, {"tick": tick, "error": str(exc), "try": ctx.get("job_try", 1)})
        log.warning("scan %s at %s failed (try %d): %s", rule_id, int(tick), ctx.get("job_try", 1), exc)
        if ctx.get("job_try", 1) < SCAN_TRIES:
            raise Retry(defer=backoff_s(ctx.get("job_try", 1), None) * 5) from None
        return {"error": str(exc)}
    kind, key = rule.scan.spec.items or ("item", "items")
    items = [item for item in (body.get(key) if isinstance(body, dict) else None) or [] if isinstance(item, dict) and item.get("id")]
    events = [
        Event(
            id=event_id_for(rule.sources[0], delivery), source=rule.sources[0], type=f"{kind}.scanned",
            entity=Entity(kind, str(item["id"]), normalise_dates(item)), received_at=time.time(),
            delivery_id=delivery, payload={"scan": {"rule": rule_id, "tick": int(tick)}},
        )
        for item in items
        for delivery in [f"scan:{rule_id}:{int(tick)}:{item['id']}"]
    ]
    stored = await event_queue.store_events(redis, [NewEvent(event, {}) for event in events], ctx["settings"].event_ttl_s,
                                           counted=False)
    queued = sum(stored)
    await store.record_scan(redis, rule_id, {"tick": tick, "items": len(items), "queued": queued, "error": None})
    log.info("scan %s at %s: %d %s(s), %d queued", rule_id, int(tick), len(items), kind, queued)
    return {"items": len(items), "queued": queued}


@retry_on_redis_errors
async def replay_action(ctx: dict[str, Any], event_id: str, action_key: str) -> str:
    """A dead letter asked to be replayed: decide its event again with the rules as they are
    now (the fix) and queue that one action afresh."""
    redis, ruleset = ctx["redis"], ctx["rules"].ruleset
    record = await store.event_record(redis, event_id)
    if record is None:
        return "the event has expired"
    event = Event.from_dict(record["event"])
    previous = await store.previous_state(redis, event)
    now = time.time()
    fetched = await fetch_for_event(ctx["sender"], ruleset, event, previous, now)
    decision = decide(event, previous, ruleset, now, fetched)
    planned = next((a for a in decision.actions if a.key == action_key), None)
    if planned is None or planned.request is None:
        reason = planned.error if planned else "the rule no longer plans this action for this event"
        await store.record_outcome(redis, event_id, action_key, {
            **(record["actions"].get(action_key) or {}), "outcome": "failed", "error": f"replay: {reason}", "at": now})
        log.warning("replay %s:%s: %s", event_id, action_key, reason)
        return reason
    replays = (record["actions"].get(action_key) or {}).get("replay", 0) + 1
    await store.enqueue_action(redis, event_id, planned, ctx["settings"].event_ttl_s, replay=replays)
    log.info("replay %s:%s queued (replay %d)", event_id, action_key, replays)
    return "queued"
