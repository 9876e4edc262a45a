"""The HTTP API: webhook intake, health, and what happened to an event.

Thin on purpose: intake.py decides what a request means, store.py keeps it. This module only
reads the request, maps exceptions to status codes, and answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine import stats, store
from engine.admin_api import admin_refusal, dead_letters
from engine.audit import EventFilter, find_events
from engine.config import Settings
from engine.event_queue import NewEvent
from engine.event_writer import EventWriter
from engine.guards import RateGate, address_allowed, client_address
from engine.health import api_readiness, health_report
from engine.intake import Rejected, to_event
from engine.metrics import exposition
from engine.openapi import OPENAPI
from engine.reload import RulesReloader
from engine.responses import error, redis_down, routing_error
from engine.rules import Ruleset
from engine.ui import ui_routes

log = logging.getLogger("hookrules.api")


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


# Headers that carry a secret are left out of the audit record.
SECRET_HEADERS = {"authorization", "cookie", "x-hook-token", "x-hook-signature", "x-hub-signature-256", "webhook-signature"}


def received_record(headers: Mapping[str, str], address: str | None) -> dict[str, Any]:
    kept = {name: value[:500] for name, value in headers.items() if name not in SECRET_HEADERS}
    return {"address": address, "headers": kept}


async def receive_hook(request: Request) -> JSONResponse:
    """Intake, counted by source and answer (for /metrics and the dashboard)."""
    response = await intake(request)
    source = request.path_params["source"]
    # 202s are counted by the write that stored them (event_queue.store_events).
    if source in request.app.state.settings.sources and response.status_code not in (202, 503):
        with contextlib.suppress(RedisError, OSError):  # counting must never cost a webhook its answer
            await stats.count_intake(request.app.state.redis, source, response.status_code)
    return response


async def intake(request: Request) -> JSONResponse:
    settings: Settings = request.app.state.settings
    name = request.path_params["source"]
    source = settings.sources.get(name)
    if source is None:
        return error(404, f"unknown source {name!r}; this server accepts: {', '.join(sorted(settings.sources))}")
    headers = {key.lower(): value for key, value in request.headers.items()}
    address = client_address(request.client.host if request.client else None, headers.get("x-forwarded-for"), settings.trusted_proxies)
    if not address_allowed(source, address):
        return error(403, f"address {address} may not send to source {name!r} (its allow_ips)")
    wait = request.app.state.gate.admit(source)
    if wait:
        return error(429, f"source {name!r} sends more than {source.rate:g} webhooks a second (its rate)",
                     {"Retry-After": str(max(1, math.ceil(wait)))})
    try:
        async with asyncio.timeout(settings.body_timeout_s):
            body = await read_body(request, settings.max_body)
    except TimeoutError:
        return error(408, f"the body did not arrive within {settings.body_timeout_s:g} s (HOOKRULES_BODY_TIMEOUT)")
    except Rejected as exc:
        return error(exc.status, exc.reason)
    try:
        # Only a `json` source's mapping and the `param` scheme read the query string: parsing
        # it for every webhook of the others cost more than its use.
        query = request.query_params if source.shape == "json" or "param" in source.schemes else None
        event = to_event(source, headers, body, received_at=time.time(), query=query)
    except Rejected as exc:
        return error(exc.status, exc.reason)
    try:
        created = await request.app.state.writer.store(NewEvent(event, received_record(headers, address)))
    except (RedisError, OSError) as exc:
        return redis_down(exc)
    # Encoded by orjson: the answer to every webhook, and JSONResponse's encoder is slower.
    return Response(orjson.dumps({"event_id": event.id, "duplicate": not created}), status_code=202,
                    media_type="application/json")


async def liveness(request: Request) -> JSONResponse:
    """The process answers: for a supervisor deciding whether to restart it. Whether it can
    do its work is /ready."""
    return JSONResponse({"status": "alive"})


async def metrics(request: Request) -> Response:
    if (refused := admin_refusal(request)) is not None:
        return refused
    state = request.app.state
    try:
        _, report = await health_report(state.redis, state.rules, state.settings, time.time())
        numbers = await stats.read_stats(state.redis, minutes=1)
    except (RedisError, OSError) as exc:
        return redis_down(exc)
    return Response(exposition(numbers, report), media_type=CONTENT_TYPE_LATEST)


async def health(request: Request) -> JSONResponse:
    """Readiness: the status for anyone (a load balancer, a monitor); the whole report with the
    admin token. `?scope=api`: only whether this API process can take webhooks."""
    state = request.app.state
    scope = request.query_params.get("scope")
    if scope == "api":
        status, report = await api_readiness(state.redis)
        return JSONResponse(report, status_code=status)
    if scope is not None:
        return error(400, f"unknown scope {scope!r}: leave it out for the whole system, or scope=api for this API process")
    status, report = await health_report(state.redis, state.rules, state.settings, time.time())
    if admin_refusal(request) is not None:
        return JSONResponse({"status": report["status"]}, status_code=status)
    return JSONResponse(report, status_code=status)


async def show_event(request: Request) -> JSONResponse:
    if (refused := admin_refusal(request)) is not None:
        return refused
    try:
        record = await store.event_record(request.app.state.redis, request.path_params["event_id"])
    except (RedisError, OSError) as exc:
        return redis_down(exc)
    if record is None:
        return error(404, "no such event (unknown id, or older than HOOKRULES_EVENT_TTL)")
    return JSONResponse(record)


def event_filter(query: Mapping[str, str]) -> EventFilter:
    """GET /events?source=&rule=&entity=&status=&outcome=&since=&until=&limit= (times in epoch seconds)."""
    unknown = set(query) - {"source", "rule", "entity", "status", "outcome", "since", "until", "limit"}
    if unknown:
        raise Rejected(400, f"unknown filter(s) {sorted(unknown)}; filters: source, rule, entity, status, outcome, since, until, limit")
    try:
        since, until = float(query.get("since", 0)), float(query.get("until", "inf"))
        limit = int(query.get("limit", 50))
    except ValueError:
        raise Rejected(400, "since and until are epoch seconds, limit a whole number") from None
    if not 1 <= limit <= 500:
        raise Rejected(400, "limit must be from 1 to 500")
    return EventFilter(source=query.get("source"), rule=query.get("rule"), entity=query.get("entity"),
                       status=query.get("status"), outcome=query.get("outcome"), since=since, until=until, limit=limit)


async def list_events(request: Request) -> JSONResponse:
    if (refused := admin_refusal(request)) is not None:
        return refused
    try:
        wanted = event_filter(request.query_params)
    except Rejected as exc:
        return error(exc.status, exc.reason)
    try:
        return JSONResponse({"events": await find_events(request.app.state.redis, wanted)})
    except (RedisError, OSError) as exc:
        return redis_down(exc)


async def openapi(request: Request) -> JSONResponse:
    if (refused := admin_refusal(request)) is not None:
        return refused
    return JSONResponse(OPENAPI)


def create_app(settings: Settings, ruleset: Ruleset) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.redis = store.connect(settings.redis_url or "")
        app.state.writer = EventWriter(app.state.redis, settings.event_ttl_s)
        watcher = asyncio.create_task(app.state.rules.watch(settings.reload_s))
        try:
            yield
        finally:
            watcher.cancel()
            await app.state.redis.aclose()

    app = Starlette(
        routes=[
            Route("/hooks/{source}", receive_hook, methods=["POST"]),
            Route("/health", liveness, methods=["GET"]),
            Route("/ready", health, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/events", list_events, methods=["GET"]),
            Route("/events/{event_id}", show_event, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
            Route("/admin/dead-letters", dead_letters, methods=["GET"]),
            Route("/admin/dead-letters/{letter_id}", dead_letters, methods=["GET", "DELETE"]),
            Route("/admin/dead-letters/{letter_id}/replay", dead_letters, methods=["POST"]),
            *ui_routes(),
        ],
        lifespan=lifespan,
        exception_handlers={HTTPException: routing_error},
    )
    app.state.settings = settings
    app.state.rules = RulesReloader(settings.rules_dir, settings.targets, ruleset)
    app.state.gate = RateGate()
    return app
