"""The arq jobs besides run_action: scheduled scans, dead-letter replays, and the one-event
jobs of earlier versions. Each takes arq's `ctx` and plain JSON data, as arq jobs do.

ctx holds what settings.py put there: `settings`, `rules` (the ruleset in use, reloaded on
edits), `http`, `sender`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from arq import Retry

from engine import event_queue, store
from engine.actions import ActionError
from engine.dates import normalise_dates
from engine.decide import decide
from engine.event_queue import NewEvent
from engine.fetching import fetch_for_event
from engine.intake import event_id_for
from engine.models import Entity, Event
from engine.sending import ReadError
from engine.templates import TemplateError, render_tree
from workers.action_job import backoff_s
from workers.resilience import retry_on_redis_errors

log = logging.getLogger("hookrules.worker")
SCAN_TRIES = 3  # a scan whose list cannot be read is tried again this often, then waits for the next tick


@retry_on_redis_errors
async def process_event(ctx: dict[str, Any], event_data: dict[str, Any]) -> dict[str, Any]:
    """A job an earlier version queued for one event (an upgrade may find some): the event is
    already stored, so it goes on the event stream and takes the way every event takes. An event
    that was decided already is only checked there for unsettled actions."""
    await event_queue.enqueue_ids(ctx["redis"], [event_data["id"]])
    return {"moved to the event stream": event_data["id"]}


@retry_on_redis_errors
async def scan_rule(ctx: dict[str, Any], rule_id: str, tick: float) -> dict[str, Any]:
    """A scheduled rule's tick: read its list (every page) and store each item as an event
    `<kind>.scanned`, which then goes the way of a webhook."""
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
