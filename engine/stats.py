"""Counters every process adds to in Redis, for /metrics, the dashboard and `status`.

The API counts webhooks, the workers count rule outcomes and actions; one Redis hash per
subject keeps them together across all processes and restarts. Per-minute counts of the last
day feed the dashboard's chart; latency is kept as Prometheus-style cumulative buckets.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from arq.connections import ArqRedis

from engine.models import Decision

RULES = "hookrules:stats:rules"  # "<rule>|candidates", "<rule>|matched", "<rule>|errors", "<rule>|last_match", "<rule>|last_error(_at)"
INTAKE = "hookrules:stats:intake"  # "<source>|<status>"
ACTIONS = "hookrules:stats:actions"  # "<connector>|<outcome>"
LATENCY = "hookrules:stats:latency"  # "<name>|<le>", "<name>|sum", "<name>|count"
MINUTE = "hookrules:stats:minute:"  # + epoch minute: "events", "actions"
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
DAY_S = 24 * 3600


def minute_key(now: float) -> str:
    return f"{MINUTE}{int(now // 60) * 60}"


async def count_intake(redis: ArqRedis, source: str, status: int, duplicate: bool = False) -> None:
    outcome = "duplicate" if duplicate else str(status)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hincrby(INTAKE, f"{source}|{outcome}", 1)
        if status == 202 and not duplicate:
            pipe.hincrby(minute_key(time.time()), "events", 1)
            pipe.expire(minute_key(time.time()), DAY_S)
        await pipe.execute()


def _observe(pipe: Any, name: str, seconds: float) -> None:
    _observe_many(pipe, name, [seconds])


def _observe_many(pipe: Any, name: str, seconds: list[float]) -> None:
    """Histogram counts for many observations, one HINCRBY per bucket."""
    if not seconds:
        return
    for le in BUCKETS:
        if (within := sum(1 for s in seconds if s <= le)):
            pipe.hincrby(LATENCY, f"{name}|{le}", within)
    pipe.hincrby(LATENCY, f"{name}|+Inf", len(seconds))
    pipe.hincrbyfloat(LATENCY, f"{name}|sum", sum(seconds))
    pipe.hincrby(LATENCY, f"{name}|count", len(seconds))


async def failing_rules(redis: ArqRedis, rule_ids: list[str], since: float) -> list[tuple[str, int, float, str]]:
    """(rule, errors counted, when the last was, what it was) for each rule whose condition
    or fetch failed since `since`."""
    if not rule_ids:
        return []
    fields = [f"{rule_id}|{name}" for rule_id in rule_ids for name in ("errors", "last_error_at", "last_error")]
    values = await redis.hmget(RULES, fields)
    found = []
    for n, rule_id in enumerate(rule_ids):
        errors, at, message = values[3 * n: 3 * n + 3]
        if at is not None and float(at) >= since:
            found.append((rule_id, int(errors or 0), float(at), (message or b"").decode()))
    return found


def add_decision_counts(pipe: Any, decisions: list[tuple[Decision, float]], now: float) -> None:
    """The rule counters and decision latency for many decisions (each with when its event arrived), summed
    first so a batch costs one command per rule and counter, added to a pipeline."""
    counts: Counter[str] = Counter()
    last: dict[str, str] = {}
    for decision, _ in decisions:
        for result in decision.results:
            counts[f"{result.rule_id}|candidates"] += 1
            if result.matched:
                counts[f"{result.rule_id}|matched"] += 1
                last[f"{result.rule_id}|last_match"] = str(now)
            if result.error:
                counts[f"{result.rule_id}|errors"] += 1
                last[f"{result.rule_id}|last_error"] = result.error[:300]
                last[f"{result.rule_id}|last_error_at"] = str(now)
    for field, count in counts.items():
        pipe.hincrby(RULES, field, count)
    if last:
        pipe.hset(RULES, mapping=last)
    _observe_many(pipe, "decided", [max(0.0, now - received_at) for _, received_at in decisions])


def add_action_counts(pipe: Any, outcomes: list[tuple[str | None, str, float | None]]) -> None:
    """The counts of settled or retried actions ((connector, outcome, seconds since the first
    try) each), summed first, added to a transaction that also records their outcomes."""
    now = time.time()
    counts = Counter(f"{connector or 'http'}|{outcome}" for connector, outcome, _ in outcomes)
    for field, count in counts.items():
        pipe.hincrby(ACTIONS, field, count)
    if (settled := sum(1 for _, outcome, _ in outcomes if outcome in ("done", "failed"))):
        pipe.hincrby(minute_key(now), "actions", settled)
        pipe.expire(minute_key(now), DAY_S)
    _observe_many(pipe, "action_done", [s for _, outcome, s in outcomes if outcome == "done" and s is not None])


def _split(raw: dict[bytes, bytes]) -> dict[str, dict[str, str]]:
    grouped: dict[str, dict[str, str]] = {}
    for key, value in raw.items():
        subject, _, field = key.decode().rpartition("|")
        grouped.setdefault(subject, {})[field] = value.decode()
    return grouped


async def read_stats(redis: ArqRedis, minutes: int = 60) -> dict[str, Any]:
    rules_raw, intake_raw, actions_raw, latency_raw = [
        _split(await redis.hgetall(key)) for key in (RULES, INTAKE, ACTIONS, LATENCY)
    ]
    now_minute = int(time.time() // 60) * 60
    starts = [now_minute - 60 * n for n in range(minutes - 1, -1, -1)]
    async with redis.pipeline(transaction=False) as pipe:
        for start in starts:
            pipe.hgetall(f"{MINUTE}{start}")
        per_minute = await pipe.execute()
    return {
        "rules": {
            rule: {
                "candidates": int(fields.get("candidates", 0)),
                "matched": int(fields.get("matched", 0)),
                "errors": int(fields.get("errors", 0)),
                "last_match": float(fields["last_match"]) if "last_match" in fields else None,
                "last_error": fields.get("last_error"),
            }
            for rule, fields in rules_raw.items()
        },
        "intake": {source: {k: int(v) for k, v in fields.items()} for source, fields in intake_raw.items()},
        "actions": {connector: {k: int(v) for k, v in fields.items()} for connector, fields in actions_raw.items()},
        "latency": {name: {k: float(v) for k, v in fields.items()} for name, fields in latency_raw.items()},
        "timeline": [
            {"minute": start, "events": int(counts.get(b"events", 0)), "actions": int(counts.get(b"actions", 0))}
            for start, counts in zip(starts, per_minute)
        ],
    }
