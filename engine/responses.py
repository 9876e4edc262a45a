"""The error answers every route gives: a JSON body that says what was wrong."""

from __future__ import annotations

import logging

from starlette.responses import JSONResponse

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
