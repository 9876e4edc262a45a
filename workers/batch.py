"""Deciding a batch of events taken from the event queue: a worker's hot path.

The same steps as one event at a time, with the Redis work of the whole batch in a few round
trips: read the events, check each entity's turn, read snapshots and echo marks, decide each
event (pure, engine.decide), count loop fires, then write every decision, snapshot and count
in one transaction. Events of one entity are decided in arrival order, each seeing the one
before as `previous`, within a batch as across workers (the arrival-order list of each entity
says whose turn it is).

A re-run after a crash is safe: an event is marked decided in the same transaction that moves
its entity's snapshot on, so it is decided again from the same `previous` or not at all; an
event found already decided only has its unsettled actions handed to their retry jobs.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Any

from engine import stats, store
from engine.changes import diff, merge
from engine.config import Settings
from engine.decide import decide
from engine.echo import is_echo
from engine.fetching import fetch_for_event
from engine.jsontext import dumps, loads
from engine.models import Decision, Event, PlannedAction, Request

log = logging.getLogger("hookrules.worker")
# How long an event waits for an earlier event of its entity, beyond the time a dead worker's
# events take to be taken over (HOOKRULES_JOB_TIMEOUT + 10 s), before it is decided anyway:
# only an earlier event that is truly lost, never one merely on its way, breaks the order.
ORDER_MARGIN_S = 60.0


def order_wait_s(settings: Settings) -> float:
    return settings.job_timeout_s + 10 + ORDER_MARGIN_S


@dataclass
class Taken:
    """An event taken from the queue: its stream entry, the event, and what Redis holds."""

    entry_id: str
    event: Event
    status: str
    decision: dict[str, Any] | None = None
    blocked_since: float | None = None  # when it was first found waiting for an earlier event


@dataclass(frozen=True)
class Decided:
    event: Event
    decision: Decision


async def load(redis: Any, entries: list[tuple[str, str]]) -> tuple[list[Taken], list[str]]:
    """The events behind the entries, and the entries whose event has expired (nothing to do)."""
    async with redis.pipeline(transaction=False) as pipe:
        for _, event_id in entries:
            pipe.hmget(store.EVENT_PREFIX + event_id, "event", "status", "decision")
        rows = await pipe.execute()
    taken, gone = [], []
    for (entry_id, _), (raw, status, decision) in zip(entries, rows):
        if raw is None:
            gone.append(entry_id)
            continue
        taken.append(Taken(entry_id, Event.from_dict(loads(raw)), (status or b"queued").decode(),
                           loads(decision) if decision else None))
    return taken, gone


def by_entity(taken: list[Taken]) -> dict[str, list[Taken]]:
    groups: dict[str, list[Taken]] = defaultdict(list)
    for item in taken:
        groups[store.order_key(item.event)].append(item)
    return groups


async def take_turns(redis: Any, queued: list[Taken], now: float, order_wait: float) -> tuple[list[Taken], list[Taken]]:
    """(events whose turn it is, events that must wait for an earlier one of their entity).
    Of an entity's events in the batch, those at the head of its arrival-order list go now, in
    order. An earlier event already decided (its worker died before clearing the line) or
    expired is cleared from the head, and the batch looks again."""
    groups = by_entity(queued)
    async with redis.pipeline(transaction=False) as pipe:
        for key, items in groups.items():
            pipe.lrange(key, 0, len(items) - 1)
        lines = [[i.decode() for i in line] for line in await pipe.execute()]
    ready, waiting, blocked = [], [], []
    for (key, items), line in zip(groups.items(), lines):
        first = 0
        while first < len(items) and first < len(line) and line[first] == items[first].event.id:
            first += 1
        if first == 0:
            blocked.append((key, items, line))
        ready += items[:first]
        waiting += items[first:]
    for item in waiting:
        item.blocked_since = item.blocked_since or now
    if not blocked:
        return ready, waiting
    unblocked = await _look_at_heads(redis, blocked, now, order_wait)
    return ready + unblocked, [item for item in waiting if item not in unblocked]


async def _look_at_heads(redis: Any, blocked: list[tuple[str, list[Taken], list[str]]], now: float,
                         order_wait: float) -> list[Taken]:
    """For entities whose head is not this batch's: the events that may go all the same (not in
    the line at all, as after it expired; or waiting longer than `order_wait`). A head that is decided
    (its worker died before clearing it) or expired is cleared, for the next look."""
    async with redis.pipeline(transaction=False) as pipe:
        for key, items, line in blocked:
            pipe.lpos(key, items[0].event.id)
            pipe.hget(store.EVENT_PREFIX + (line[0] if line else ""), "status")
        replies = await pipe.execute()
    going: list[Taken] = []
    async with redis.pipeline(transaction=False) as pipe:
        for (key, items, line), position, status in zip(blocked, replies[0::2], replies[1::2]):
            if position is None:
                going += items  # not in the line at all: nothing to wait for
            elif now - (items[0].blocked_since or now) >= order_wait:
                log.warning("event %s: an earlier event of %s is stuck; deciding it anyway", items[0].event.id, key)
                going.append(items[0])
            elif line and status != b"queued":
                pipe.lrem(key, 1, line[0])
        await pipe.execute()
    return going


async def decide_all(ctx: dict[str, Any], ready: list[Taken]) -> list[Decided]:
    """Decide every event whose turn it is, and store the decisions in one transaction."""
    redis, settings, ruleset = ctx["redis"], ctx["settings"], ctx["rules"].ruleset
    groups = by_entity(ready)
    snapshots, echoes = await _entity_state(redis, [items[0].event for items in groups.values()])
    now = time.time()
    decided, writes = [], []
    for (key, items), snapshot, echo_mark in zip(groups.items(), snapshots, echoes):
        previous = snapshot
        for item in items:
            event = item.event
            current = merge(previous, event.entity.data)
            echo = echo_mark is not None and is_echo(echo_mark, current, diff(previous, current))
            if echo:
                echo_mark = None  # its echo has come: the next event of this entity is news again
                log.info("event %s: the echo of hookrules' own write to %s", event.id, store.entity_key(event))
            fetched = await fetch_for_event(ctx["sender"], ruleset, event, previous, now)
            decision = decide(event, previous, ruleset, now, fetched, echo=echo)
            decided.append(Decided(event, decision))
            writes.append((event, previous, current, echo))
            previous = current
    decided = await _stop_loops(redis, settings, decided)
    await _record(redis, decided, writes, time.time())
    return decided


async def _entity_state(redis: Any, firsts: list[Event]) -> tuple[list[Any], list[Any]]:
    """Per entity: its snapshot's data (None if never seen) and our recent write to it."""
    async with redis.pipeline(transaction=True) as pipe:
        for event in firsts:
            pipe.get(store.snapshot_key(event))
            pipe.get(store.ECHO_PREFIX + store.entity_key(event))
        replies = await pipe.execute()
    snapshots = [loads(raw)["data"] if raw else None for raw in replies[0::2]]
    echoes = [loads(raw)["fields"] if raw else None for raw in replies[1::2]]
    return snapshots, echoes


async def _stop_loops(redis: Any, settings: Settings, decided: list[Decided]) -> list[Decided]:
    """A rule acting on one entity more than HOOKRULES_LOOP_LIMIT times in the window is
    stopped for this event, recorded as a loop, and shown in /ready."""
    fires = [(d, rule_id) for d in decided for rule_id in sorted({a.rule_id for a in d.decision.actions})]
    if not fires:
        return decided
    async with redis.pipeline(transaction=False) as pipe:
        for d, rule_id in fires:
            key = f"{store.FIRES_PREFIX}{rule_id}:{store.entity_key(d.event)}"
            pipe.incr(key)
            pipe.expire(key, settings.loop_window_s, nx=True)
        counts = (await pipe.execute())[0::2]
    stopped: dict[str, dict[str, str]] = defaultdict(dict)
    for (d, rule_id), count in zip(fires, counts):
        if count > settings.loop_limit:
            stopped[d.event.id][rule_id] = (
                f"stopped as a loop: it acted on {d.event.entity.kind} {d.event.entity.id} {count} times "
                f"within {settings.loop_window_s} s (HOOKRULES_LOOP_LIMIT={settings.loop_limit})")
            await store.record_loop(redis, rule_id, d.event)
            log.warning("rule %s: %s", rule_id, stopped[d.event.id][rule_id], extra={"event_id": d.event.id, "rule_id": rule_id})
    return [_without(d, stopped[d.event.id]) if d.event.id in stopped else d for d in decided]


def _without(d: Decided, stopped: dict[str, str]) -> Decided:
    results = [replace(r, error=stopped[r.rule_id]) if r.rule_id in stopped else r for r in d.decision.results]
    actions = [a for a in d.decision.actions if a.rule_id not in stopped]
    return Decided(d.event, replace(d.decision, results=results, actions=actions))


async def _record(redis: Any, decided: list[Decided], writes: list[tuple[Event, Any, Any, bool]], now: float) -> None:
    """Every decision, the entities' new snapshots, the line cleared, and the counts, at once."""
    latest: dict[str, tuple[Event, Any, bool]] = {}
    async with redis.pipeline(transaction=True) as pipe:
        for d, (event, previous, current, echo) in zip(decided, writes):
            pipe.hset(store.EVENT_PREFIX + event.id, mapping={
                "previous": dumps(previous), "decision": dumps(d.decision.to_dict()),
                "status": "decided", "decided_at": str(now)})
            pipe.lrem(store.order_key(event), 1, event.id)
            for action in d.decision.shadowed:
                store.add_outcome(pipe, event.id, action.key, unsent(action, "shadow"))
            for action in d.decision.actions:
                if action.request is None:
                    store.add_outcome(pipe, event.id, action.key, unsent(action, "failed"))
                else:
                    # Its first try follows at once (first_try.py): marked in flight here, with
                    # the decision, rather than in a round trip of its own. A worker that dies
                    # before sending leaves a mark for a try never made: the retry job then asks
                    # the target first (an SDP update) and sends, as after an interrupted try.
                    store.add_sending(pipe, event.id, action.key, now)
            echoed = echo or latest.get(store.entity_key(event), (None, None, False))[2]
            latest[store.entity_key(event)] = (event, current, echoed)
        for event, current, echoed in latest.values():
            pipe.set(store.snapshot_key(event), dumps({"data": current, "event_id": event.id, "at": now}),
                     ex=store.SNAPSHOT_TTL_S)
            if echoed:
                pipe.delete(store.ECHO_PREFIX + store.entity_key(event))
        stats.add_decision_counts(pipe, [(d.decision, d.event.received_at) for d in decided], now)
        # Actions that could not be built failed too: hookrules_actions_total counts them, or an
        # alert on failed actions would miss every template error.
        unbuilt = [(connector_of(a.action), "failed", None) for d in decided for a in d.decision.actions if a.request is None]
        if unbuilt:
            stats.add_action_counts(pipe, unbuilt)
        pipe.set(store.CONSUMED_KEY, str(now))
        await pipe.execute()


def connector_of(action_name: str) -> str | None:
    """`sdp.milestones.update` -> sdp; `http.request` -> None (counted as http)."""
    prefix = action_name.split(".", 1)[0]
    return prefix if prefix in ("sdp", "zoho") else None


def unsent(action: PlannedAction, outcome: str) -> dict[str, Any]:
    """The record of an action that is not sent: a shadow rule's, or one that could not be built."""
    return {"action": action.action, "outcome": outcome, "request": action.request.to_dict() if action.request else None,
            "error": action.error, "attempts": 0, "at": time.time()}


async def resume(redis: Any, settings: Settings, taken: list[Taken]) -> None:
    """Events decided by a worker that died before it finished their actions: each action not
    settled yet goes to its run_action job (job id event:rule:n, so never twice), which checks
    an interrupted send before sending again."""
    for item in taken:
        for raw in (item.decision or {}).get("actions", []):
            if raw.get("request") is None:
                continue
            action = PlannedAction(raw["rule_id"], raw["index"], raw["action"], Request.from_dict(raw["request"]))
            outcome = await store.action_outcome(redis, item.event.id, action.key)
            if outcome is None or outcome.get("outcome") == "retrying":
                await store.enqueue_action(redis, item.event.id, action, settings.event_ttl_s)
