"""A stand-in for ServiceDesk Plus milestones, for a first look without a real portal.

`hookrules up --demo` starts it on loopback and points HOOKRULES_SDP_URL at it. It keeps
milestones in memory, checks the headers the real API wants, applies edits, and prints each
call, so you can watch a rule close a milestone. It is not used by the tests: they check the
wire format against a recorder of their own.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from engine.connectors import SDP_ACCEPT

log = logging.getLogger("hookrules.sandbox")


def _status(code: int, message: str, status: int) -> JSONResponse:
    body = {"response_status": {"status_code": code, "status": "failed", "messages": [{"message": message}]}}
    return JSONResponse(body, status_code=status)


def create_sandbox(token: str) -> Starlette:
    milestones: dict[tuple[str, str], dict[str, Any]] = {}

    async def milestone(request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Zoho-oauthtoken {token}":
            return _status(4001, "invalid OAuth token", 401)
        if request.headers.get("accept") != SDP_ACCEPT:
            return _status(4000, f"Accept must be {SDP_ACCEPT}", 400)
        key = (request.path_params["project_id"], request.path_params["milestone_id"])
        current = milestones.setdefault(key, {"id": key[1], "project": {"id": key[0]}})
        if request.method == "PUT":
            form = parse_qs((await request.body()).decode())
            try:
                changes = json.loads(form["input_data"][0])["milestone"]
            except (KeyError, ValueError, TypeError):
                return _status(4000, "expected input_data={\"milestone\": {...}}", 400)
            current.update(changes)
            log.info("sandbox: milestone %s of project %s now %s", key[1], key[0], json.dumps(changes))
        return JSONResponse({"milestone": current, "response_status": {"status_code": 2000, "status": "success"}})

    return Starlette(
        routes=[
            Route(
                "/app/{portal}/api/v3/projects/{project_id}/milestones/{milestone_id}",
                milestone,
                methods=["GET", "PUT"],
            )
        ]
    )
