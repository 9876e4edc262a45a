"""Send a rendered Request with httpx and say what came of it.

The classification is what the retry policy in workers/ acts on: 2xx is done; 429, 5xx and
network errors are worth another try; any other reply is final.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import httpx

from engine.config import Targets
from engine.connectors import ActionError, credentials
from engine.models import Request

EXCERPT_CHARS = 500


@dataclass(frozen=True)
class SendResult:
    outcome: str  # "done" | "retry" | "failed"
    http_status: int | None
    response: str  # the first EXCERPT_CHARS characters of the reply body
    error: str | None = None
    retry_after_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def classify(status: int) -> str:
    if 200 <= status < 300:
        return "done"
    if status == 429 or status >= 500:
        return "retry"
    return "failed"


def _retry_after(value: str | None) -> float | None:
    # Seconds only; the HTTP-date form is rare from these APIs and issue 5 handles backoff.
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


async def send(client: httpx.AsyncClient, request: Request, targets: Targets) -> SendResult:
    try:
        headers = {**request.headers, **credentials(request, targets)}
    except ActionError as exc:
        return SendResult("failed", None, "", error=str(exc))
    try:
        reply = await client.request(
            request.method,
            request.url,
            headers=headers,
            params=request.query or None,
            data=request.form,
            json=request.json,
            timeout=targets.timeout_s,
        )
    except httpx.HTTPError as exc:
        return SendResult("retry", None, "", error=f"{type(exc).__name__}: {exc}")
    outcome = classify(reply.status_code)
    return SendResult(
        outcome,
        reply.status_code,
        reply.text[:EXCERPT_CHARS],
        error=None if outcome == "done" else f"HTTP {reply.status_code}",
        retry_after_s=_retry_after(reply.headers.get("retry-after")),
    )
