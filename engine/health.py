"""What GET /health reports: Redis, the queue, the workers, the rules, the connectors,
schedules, dead letters and loops. One function, so the report is the same wherever it is read.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import RedisError

from engine import stats, store
from engine.config import Settings, Targets
from engine.oauth import oauth_status
from engine.ratelimit import limiter_status
from engine.reload import RulesReloader
from engine.rules import Ruleset


async def health_report(redis: Any, rules: RulesReloader, settings: Settings, now: float) -> tuple[int, dict[str, Any]]:
    problems: list[str] = []
    report = ruleset_report(rules, settings)
    try:
        beat, arq_line = await store.read_heartbeat(redis)
        depth = await store.queue_depth(redis)
    except (RedisError, OSError) as exc:
        report["redis"] = {"reachable": False, "error": str(exc)}
        problems.append("Redis is unreachable")
        report["connectors"] = connectors_report(settings.targets, {}, {})
    else:
        report["redis"] = {"reachable": True}
        report["queue"] = {"depth": depth}
        await add_stored_state(redis, rules.ruleset, settings, now, report)
        problems += await worker_problems(redis, settings, now, beat, arq_line, report)
    report["status"] = "ok" if not problems else "unavailable"
    report["problems"] = problems
    return (200 if not problems else 503), report


def ruleset_report(rules: RulesReloader, settings: Settings) -> dict[str, Any]:
    """What this process knows without Redis: its rules, sources and settings' warnings."""
    ruleset = rules.ruleset
    return {
        "ruleset": {
            "rules": len(ruleset.rules),
            "version": ruleset.version,
            "files": list(ruleset.files),
            # A refused edit: the version above keeps running until the files are fixed.
            "errors": list(rules.errors),
        },
        "sources": sorted(settings.sources),
        "warnings": list(settings.warnings) + (
            [f"the last rule edit was refused ({len(rules.errors)} problem(s)); still running version {ruleset.version}"]
            if rules.errors else []
        ) + rules.warnings(frozenset(settings.sources), settings.targets.http_allow_hosts),
    }


async def add_stored_state(redis: Any, ruleset: Ruleset, settings: Settings, now: float, report: dict[str, Any]) -> None:
    """Connectors, dead letters, stopped loops and scheduled scans, as Redis holds them."""
    report["connectors"] = await connectors_status(redis, settings.targets)
    report["dead_letters"] = await store.dead_count(redis)
    report["loops"] = await store.recent_loops(redis, now - 24 * 3600)
    report["warnings"] += [f"rule {loop['rule']} was stopped as a loop on {loop['entity']}" for loop in report["loops"]]
    scheduled = [rule for rule in ruleset.rules if rule.schedule]
    scans = await store.last_scans(redis, [rule.id for rule in scheduled])
    report["schedules"] = {rule.id: {"schedule": rule.schedule, "last_scan": scans[rule.id]} for rule in scheduled}
    report["warnings"] += [
        f"rule {rule_id} failed on events in the last hour ({errors} time(s) in all; the last {now - at:.0f} s ago): {message}"
        for rule_id, errors, at, message in await stats.failing_rules(redis, [rule.id for rule in ruleset.rules], now - 3600)
    ]
    report["warnings"] += [
        f"{name}: the last OAuth token refresh failed: {status['oauth']['last_error']['error']}"
        for name, status in report["connectors"].items()
        if (status.get("oauth") or {}).get("last_error")
    ]


async def worker_problems(redis: Any, settings: Settings, now: float, beat: dict[str, Any] | None,
                          arq_line: str | None, report: dict[str, Any]) -> list[str]:
    """The workers' part of the report, and what is wrong with them, if anything."""
    problems = []
    age = round(now - beat["at"], 3) if beat else None
    report["worker"] = {
        "heartbeat_age_s": age,
        "worker": beat and beat["worker"],
        "ruleset_version": beat and beat.get("ruleset"),
        "last_job_age_s": round(now - consumed, 3) if (consumed := await store.last_consumed(redis)) else None,
        "arq": arq_line,
    }
    if age is None or age > 3 * settings.heartbeat_s:
        problems.append(f"no worker has reported in the last {3 * settings.heartbeat_s:g} s")
    # Heartbeats alone miss workers that live but no longer take jobs (after a Redis blip,
    # say): judge by how long the oldest due job has waited.
    waited = await store.oldest_queued_age(redis, int(now * 1000))
    report["queue"]["oldest_wait_s"] = waited
    if waited is not None and waited > settings.stuck_queue_s:
        problems.append(f"a job has waited {waited:.0f} s: the workers are not taking jobs")
    return problems


async def api_readiness(redis: Any) -> tuple[int, dict[str, Any]]:
    """Whether this API process can take webhooks: only Redis must answer. For a load
    balancer's or Kubernetes' readiness probe of one API replica (`/ready?scope=api`): the
    whole report above also fails while the workers are away or behind, for every replica at
    once, when the APIs should go on storing webhooks for the workers to catch up on."""
    try:
        await redis.ping()
    except (RedisError, OSError) as exc:
        return 503, {"status": "unavailable", "scope": "api", "problems": [f"Redis is unreachable: {exc}"]}
    return 200, {"status": "ok", "scope": "api", "problems": []}


def connectors_report(targets: Targets, oauth: dict[str, Any], limits: dict[str, Any]) -> dict[str, Any]:
    """Each connector: whether it can be used, how it authenticates, and what Redis knows of
    its token and limits. A failed token refresh is reported, not fatal: webhooks are still
    accepted and the actions wait for a token."""
    report = {}
    for connector in (targets.sdp, targets.zoho):
        auth = "oauth" if connector.oauth else "static token" if connector.token else None
        report[connector.name] = {
            "base_url": connector.base_url,
            "auth": auth,
            "configured": connector.configured,
            "limits": {
                "max_concurrent": connector.limits.max_concurrent,
                "per_second": connector.limits.per_second,
                "burst": connector.limits.burst,
            },
            "oauth": oauth.get(connector.name),
            "in_use": limits.get(connector.name),
        }
    return report


async def connectors_status(redis: Any, targets: Targets) -> dict[str, Any]:
    oauth = {c.name: await oauth_status(redis, c.name) for c in (targets.sdp, targets.zoho) if c.oauth}
    limits = {c.name: await limiter_status(redis, c.name) for c in (targets.sdp, targets.zoho)}
    return connectors_report(targets, oauth, limits)
