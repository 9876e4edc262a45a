"""The actions a rule can name, and the wire format of each target API.

An action's arguments are checked when the rule loads; after rendering, `build` turns them into
a `Request` without credentials, and `credentials` adds those just before sending.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.config import Targets
from engine.models import Request

SDP_ACCEPT = "application/vnd.manageengine.sdp.v3+json"
_SDP_ID = re.compile(r"^\d{1,20}$")
_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"}


class ActionError(Exception):
    """The rendered arguments cannot make a request; the message says which argument and why."""


@dataclass(frozen=True)
class ActionSpec:
    name: str
    required: frozenset[str]
    optional: frozenset[str]
    build: Callable[[dict[str, Any], Targets], Request]
    summary: str

    def argument_problems(self, args: dict[str, Any]) -> list[str]:
        problems = [f"missing argument '{name}'" for name in sorted(self.required - set(args))]
        allowed = self.required | self.optional
        problems += [
            f"unknown argument '{name}' (allowed: {', '.join(sorted(allowed))})"
            for name in sorted(set(args) - allowed)
        ]
        return problems


def _sdp_id(args: dict[str, Any], name: str) -> str:
    # Ids go into the URL path: only digits, so a value from an event cannot steer the path.
    value = str(args[name]).strip()
    if not _SDP_ID.match(value):
        raise ActionError(f"{name} must be the digits of an SDP id, got {value!r}")
    return value


def _sdp_base(targets: Targets) -> str:
    if not targets.sdp_url:
        raise ActionError(
            "HOOKRULES_SDP_URL is not set: set it to your portal, e.g. "
            "https://sdpondemand.manageengine.com/app/<portal>"
        )
    return targets.sdp_url


def _build_sdp_milestone_update(args: dict[str, Any], targets: Targets) -> Request:
    fields = args["fields"]
    if not isinstance(fields, dict) or not fields:
        raise ActionError("fields must be a mapping of the milestone fields to set, e.g. {status: {name: Closed}}")
    project_id, milestone_id = _sdp_id(args, "project_id"), _sdp_id(args, "milestone_id")
    return Request(
        method="PUT",
        url=f"{_sdp_base(targets)}/api/v3/projects/{project_id}/milestones/{milestone_id}",
        headers={"Accept": SDP_ACCEPT, "Content-Type": "application/x-www-form-urlencoded"},
        form={"input_data": json.dumps({"milestone": fields}, separators=(",", ":"))},
        auth="sdp",
    )


def _string_map(args: dict[str, Any], name: str) -> dict[str, str]:
    value = args.get(name) or {}
    if not isinstance(value, dict):
        raise ActionError(f"{name} must be a mapping of names to values")
    return {str(key): str(item) for key, item in value.items()}


def _build_http_request(args: dict[str, Any], targets: Targets) -> Request:
    method = str(args["method"]).upper()
    if method not in _METHODS:
        raise ActionError(f"method must be one of {', '.join(sorted(_METHODS))}, got {method!r}")
    url = str(args["url"])
    if not url.startswith(("http://", "https://")):
        raise ActionError(f"url must start with http:// or https://, got {url!r}")
    if "json" in args and "form" in args:
        raise ActionError("give either json or form as the body, not both")
    return Request(
        method=method,
        url=url,
        headers=_string_map(args, "headers"),
        query=_string_map(args, "query"),
        form=_string_map(args, "form") if "form" in args else None,
        json=args.get("json"),
    )


CATALOG: dict[str, ActionSpec] = {
    spec.name: spec
    for spec in (
        ActionSpec(
            name="sdp.milestones.update",
            required=frozenset({"project_id", "milestone_id", "fields"}),
            optional=frozenset(),
            build=_build_sdp_milestone_update,
            summary="Edit a ServiceDesk Plus milestone: PUT projects/{project_id}/milestones/{milestone_id}",
        ),
        ActionSpec(
            name="http.request",
            required=frozenset({"method", "url"}),
            optional=frozenset({"headers", "query", "json", "form"}),
            build=_build_http_request,
            summary="Any HTTP request: method, url, headers, query, and a json or form body",
        ),
    )
}


def credentials(request: Request, targets: Targets) -> dict[str, str]:
    """The headers that authenticate `request` with its connector. Kept apart from the request
    so that stored and displayed requests never carry a token."""
    if request.auth == "sdp":
        if not targets.sdp_token:
            raise ActionError("HOOKRULES_SDP_TOKEN is not set: the SDP connector has no access token")
        return {"Authorization": f"Zoho-oauthtoken {targets.sdp_token}"}
    return {}
