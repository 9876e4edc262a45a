"""The error answers every route gives: a JSON body that says what was wrong."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

log = logging.getLogger("hookrules.api")
RETRY_AFTER_S = 5


def error(status: int, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status, headers=headers)


def redis_down(exc: Exception) -> JSONResponse:
    log.warning("Redis unreachable: %s", exc)
    return error(
        503, "the event store (Redis) is unreachable; nothing was accepted, send again later",
        {"Retry-After": str(RETRY_AFTER_S)},
    )


async def routing_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 and 405 (a path or method no route takes), in the same JSON shape as
    every other refusal. The dashboard's pages keep their plain answers."""
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/ui") or exc.status_code not in (404, 405):
        return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        reason = f"{request.method} is not accepted at {request.url.path}; it takes {allowed}"
    else:
        reason = f"nothing at {request.url.path}: webhooks go to POST /hooks/<source> (see GET /openapi.json)"
    return error(exc.status_code, reason, exc.headers)
