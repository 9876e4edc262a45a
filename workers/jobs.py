"""The two jobs a worker runs. Each takes arq's `ctx` and plain JSON data, as arq jobs do.

ctx holds what settings.py put there: `settings`, `rules` (the ruleset in use, reloaded on
edits), `http`, `sender`.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

from arq import Retry

from engine import store
from engine.actions import ActionError
from engine.changes import merge
from engine.dates import normalise_dates
from engine.decide import decide
from engine.fetching import fetch_for_event
from engine.intake import event_id_for
from engine.models import Decision, Entity, Event, PlannedAction
from engine.sending import ReadError
from engine.templates import TemplateError, render_tree
from workers.action_job import backoff_s

log = logging.getLogger("hookrules.worker")
# How long an event waits for an earlier event of the same entity before it is decided anyway
# (that earlier one's worker died and arq has not run it again yet).
ORDER_WAIT_S = 120.0
SCAN_TRIES = 3  # a scan whose list cannot be read is tried again this often, then waits for the next tick


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
        ruleset, now = ctx["rules"].ruleset, time.time()
        fetched = await fetch_for_event(ctx["sender"], ruleset, event, previous, now)
        decision = decide(event, previous, ruleset, now, fetched)
        await store.record_decision(redis, decision)
        await store.save_snapshot(redis, event, merge(previous, event.entity.data))
    finally:
        await store.end_turn(redis, event)
    queued = await _dispatch(redis, ctx["settings"], decision)
    matched = [r.rule_id for r in decision.results if r.matched]
    log.info("event %s (%s %s): matched %s, %d action(s) queued", event.id, event.source, event.type, matched, queued)
    return {"matched": matched, "queued": queued}


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
    queued = 0
    for item in items:
        delivery = f"scan:{rule_id}:{int(tick)}:{item['id']}"
        event = Event(
            id=event_id_for(rule.sources[0], delivery), source=rule.sources[0], type=f"{kind}.scanned",
            entity=Entity(kind, str(item["id"]), normalise_dates(item)), received_at=time.time(),
            delivery_id=delivery, payload={"scan": {"rule": rule_id, "tick": int(tick)}},
        )
        queued += await store.store_event(redis, event, ctx["settings"].event_ttl_s)
    await store.record_scan(redis, rule_id, {"tick": tick, "items": len(items), "queued": queued, "error": None})
    log.info("scan %s at %s: %d %s(s), %d queued", rule_id, int(tick), len(items), kind, queued)
    return {"items": len(items), "queued": queued}
