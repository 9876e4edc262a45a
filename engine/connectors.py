"""The action catalog: every action a rule can name, from every connector.

Each target system's actions and wire format live in its own module (sdp.py, zoho.py); this
module puts them together with the plain `http.request`, and says how to read a reply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine import sdp, zoho
from engine.actions import ActionError, ActionSpec, literal_check, mapping, string_map
from engine.models import Request

if TYPE_CHECKING:
    from engine.config import Targets

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")


def build_http_request(args: dict[str, Any], targets: Targets) -> Request:
    method = str(args["method"]).strip().upper()
    if method not in METHODS:
        raise ActionError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    url = str(args["url"]).strip()
    scheme, separator, rest = url.partition("://")
    if not separator or scheme.lower() not in ("http", "https"):
        raise ActionError(f"url must start with http:// or https://, got {url!r}")
    url = f"{scheme.lower()}://{rest}"  # schemes are case-insensitive (RFC 3986); the client wants them lower
    if "json" in args and "form" in args:
        raise ActionError("give either json or form as the body, not both")
    mapping(args, "headers")  # a clear error when it is not a mapping
    return Request(
        method=method,
        url=url,
        headers=string_map(args, "headers"),
        query=string_map(args, "query"),
        form=string_map(args, "form") if "form" in args else None,
        json=args.get("json"),
    )


HTTP_REQUEST = ActionSpec(
    "http.request",
    "Any HTTP request: method, url, headers, query, and a json or form body",
    build_http_request,
    frozenset({"method", "url"}),
    frozenset({"headers", "query", "json", "form"}),
    check=literal_check(build_http_request),
    reads=True,  # in a `fetch`, only with method GET (checked when the rule loads)
)

CATALOG: dict[str, ActionSpec] = {spec.name: spec for spec in (*sdp.ACTIONS, *zoho.ACTIONS, HTTP_REQUEST)}


def failure_message(connector: str | None, status: int, body: Any) -> str | None:
    """What went wrong according to the system that answered, or None for success. SDP can
    answer HTTP 200 with a failure inside `response_status`, so the status alone is not enough."""
    if status == 401 and connector in ("sdp", "zoho"):
        # With OAuth, reached only when a renewed token was refused too.
        return (f"{connector} refused the access token (HTTP 401): check that it is valid, "
                "its scopes, and its access to this portal")
    if connector == "sdp":
        return sdp.read_reply(status, body)
    if connector == "zoho":
        return zoho.read_reply(status, body)
    return None if 200 <= status < 300 else f"HTTP {status}"
