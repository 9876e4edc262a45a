"""The HTTP API: webhook intake, health, and what happened to an event.

Thin on purpose: intake.py decides what a request means, store.py keeps it. This module only
reads the request, maps exceptions to status codes, and answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from engine import deadletters, store
from engine.config import Settings, Targets
from engine.intake import Rejected, to_event
from engine.oauth import oauth_status
from engine.ratelimit import limiter_status
from engine.reload import RulesReloader
from engine.rules import Ruleset

log = logging.getLogger("hookrules.api")
RETRY_AFTER_S = 5


def _error(status: int, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status, headers=headers)


def _redis_down(exc: Exception) -> JSONResponse:
    log.warning("Redis unreachable: %s", exc)
    return _error(
        503, "the event store (Redis) is unreachable; nothing was accepted, send again later",
        {"Retry-After": str(RETRY_AFTER_S)},
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing with 413 as soon as it passes `limit`, without reading the rest."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Rejected(413, f"the body is {declared} bytes; the limit is {limit} (HOOKRULES_MAX_BODY)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Rejected(413, f"the body is over the limit of {limit} bytes (HOOKRULES_MAX_BODY)")
        chunks.append(chunk)
    return b"".join(chunks)


async def receive_hook(request: Request) -> JSONResponse:
    settings: Settings = request.app.state.settings
    name = request.path_params["source"]
    source = settings.sources.get(name)
    if source is None:
        return _error(404, f"unknown source {name!r}; this server accepts: {', '.join(sorted(settings.sources))}")
    try:
        body = await read_body(request, settings.max_body)
        headers = {key.lower(): value for key, value in request.headers.items()}
        event = to_event(source, headers, body, received_at=time.time())
    except Rejected as exc:
        return _error(exc.status, exc.reason)
    try:
        created = await store.store_event(request.app.state.redis, event, settings.event_ttl_s)
    except (RedisError, OSError) as exc:
        return _redis_down(exc)
    log.info("event %s from %s: %s %s %s%s", event.id, source.name, event.type, event.entity.kind,
             event.entity.id, "" if created else " (resend, not queued again)")
    return JSONResponse({"event_id": event.id, "duplicate": not created}, status_code=202)


async def health_report(redis: Any, rules: RulesReloader, settings: Settings, now: float) -> tuple[int, dict[str, Any]]:
    problems: list[str] = []
    ruleset = rules.ruleset
    report: dict[str, Any] = {
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
        ),
    }
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
        report["connectors"] = await connectors_status(redis, settings.targets)
        report["dead_letters"] = await store.dead_count(redis)
        report["loops"] = await store.recent_loops(redis, now - 24 * 3600)
        report["warnings"] += [f"rule {loop['rule']} was stopped as a loop on {loop['entity']}" for loop in report["loops"]]
        scheduled = [rule for rule in ruleset.rules if rule.schedule]
        scans = await store.last_scans(redis, [rule.id for rule in scheduled])
        report["schedules"] = {rule.id: {"schedule": rule.schedule, "last_scan": scans[rule.id]} for rule in scheduled}
        report["warnings"] += [
            f"{name}: the last OAuth token refresh failed: {status['oauth']['last_error']['error']}"
            for name, status in report["connectors"].items()
            if (status.get("oauth") or {}).get("last_error")
        ]
        age = round(now - beat["at"], 3) if beat else None
        report["worker"] = {
            "heartbeat_age_s": age,
            "worker": beat and beat["worker"],
            "ruleset_version": beat and beat.get("ruleset"),
            "arq": arq_line,
        }
        if age is None or age > 3 * settings.heartbeat_s:
            problems.append(f"no worker has reported in the last {3 * settings.heartbeat_s:g} s")
    report["status"] = "ok" if not problems else "unavailable"
    report["problems"] = problems
    return (200 if not problems else 503), report


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


async def health(request: Request) -> JSONResponse:
    state = request.app.state
    status, report = await health_report(state.redis, state.rules, state.settings, time.time())
    return JSONResponse(report, status_code=status)


async def show_event(request: Request) -> JSONResponse:
    try:
        record = await store.event_record(request.app.state.redis, request.path_params["event_id"])
    except (RedisError, OSError) as exc:
        return _redis_down(exc)
    if record is None:
        return _error(404, "no such event (unknown id, or older than HOOKRULES_EVENT_TTL)")
    return JSONResponse(record)


def admin_refusal(request: Request) -> JSONResponse | None:
    """The admin API wants `Authorization: Bearer <HOOKRULES_ADMIN_TOKEN>`; None when given."""
    token = request.app.state.settings.admin_token
    if token is None:
        return _error(403, "the admin API is off: set HOOKRULES_ADMIN_TOKEN to use it")
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return _error(401, "send Authorization: Bearer <HOOKRULES_ADMIN_TOKEN>")
    return None


async def dead_letters(request: Request) -> JSONResponse:
    if (refused := admin_refusal(request)) is not None:
        return refused
    redis = request.app.state.redis
    letter_id = request.path_params.get("letter_id")
    try:
        if letter_id is None:
            return JSONResponse({"dead_letters": await deadletters.list_letters(redis)})
        if request.method == "GET":
            return JSONResponse(await deadletters.show(redis, letter_id))
        if request.method == "DELETE":
            await deadletters.purge(redis, letter_id)
            return JSONResponse({"purged": letter_id})
        job_id = await deadletters.replay(redis, letter_id)
        return JSONResponse({"replaying": letter_id, "job_id": job_id}, status_code=202)
    except deadletters.NotDead as exc:
        return _error(404, str(exc))
    except (RedisError, OSError) as exc:
        return _redis_down(exc)


def create_app(settings: Settings, ruleset: Ruleset) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.redis = store.connect(settings.redis_url or "")
        watcher = asyncio.create_task(app.state.rules.watch(settings.reload_s))
        try:
            yield
        finally:
            watcher.cancel()
            await app.state.redis.aclose()

    app = Starlette(
        routes=[
            Route("/hooks/{source}", receive_hook, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/events/{event_id}", show_event, methods=["GET"]),
            Route("/admin/dead-letters", dead_letters, methods=["GET"]),
            Route("/admin/dead-letters/{letter_id}", dead_letters, methods=["GET", "DELETE"]),
            Route("/admin/dead-letters/{letter_id}/replay", dead_letters, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.rules = RulesReloader(settings.rules_dir, settings.targets, ruleset)
    return app
