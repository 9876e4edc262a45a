"""A strict local emulator of the APIs hookrules acts on, in one Starlette app on one port:
Zoho's OAuth token endpoint, ServiceDesk Plus Cloud milestones (API v3) and Zoho Projects
projects. `hookrules up --demo` and the tests point the connectors at it, so nothing real is
touched, and it refuses what the real systems refuse (see engine/sandbox_sdp.py and
engine/sandbox_zoho.py for the rules of each API).

    POST /oauth/v2/token                            grant_type=refresh_token, client_id, client_secret,
                                                    refresh_token; as query parameters or form fields
    /app/{portal}/api/v3/projects/{id}/milestones   ServiceDesk Plus milestones (any portal name)
    /restapi/portal/{portal_id}/projects/           Zoho Projects (any portal id)

Both APIs want `Authorization: Zoho-oauthtoken <token>`: a token this sandbox issued that has not
expired, or one of `SandboxSettings.static_tokens`. Like Zoho, at most 10 access tokens are
issued per refresh token in 10 minutes.

Test and admin hooks, under /_sandbox/, without authentication (the sandbox is for loopback):

    GET  /_sandbox/stats           {"token_requests": n, "tokens_issued": n,
                                    "requests": {"METHOD path-template": n}}
    POST /_sandbox/expire-tokens   every access token issued so far expires now (static ones stay)
    POST /_sandbox/faults          {"status": 429, "retry_after": 2, "count": 1, "path_contains": "/api/v3/"}:
                                   the next `count` requests whose path contains `path_contains`
                                   (token requests included) get that status, in the system's shape,
                                   with Retry-After when given. Faults queue up; the first that
                                   matches is used.
    GET  /_sandbox/milestones/{project_id}/{milestone_id}   the stored milestone, as GET shows it
    GET  /_sandbox/projects/{project_id}                    the stored Zoho project, as GET shows it
    POST /_sandbox/reset           the seed data again; no tokens, faults or counts

Seed data (fresh for every `create_sandbox` and reset) is described in engine/sandbox_data.py.
Changes are logged at INFO on "hookrules.sandbox"; tokens and secrets never are.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine import sandbox_sdp, sandbox_zoho
from engine.sandbox_data import BodyError, parse_urlencoded, seed_sdp, seed_zoho

log = logging.getLogger("hookrules.sandbox")

TOKEN_PATH = "/oauth/v2/token"
TOKENS_PER_WINDOW = 10
TOKEN_WINDOW_S = 600.0
TOO_MANY_TOKENS = {"error": "Access Denied",
                   "error_description": "You have made too many requests continuously. Please try again after some time."}

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class SandboxSettings:
    client_id: str = "sandbox-client"
    client_secret: str = field(default="sandbox-secret", repr=False)
    refresh_token: str = field(default="sandbox-refresh", repr=False)
    static_tokens: frozenset[str] = field(default=frozenset(), repr=False)  # always-valid access tokens
    token_lifetime_s: int = 3600

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SandboxSettings:
        """Settings from HOOKRULES_SANDBOX_*; unset or empty variables keep the defaults.
        Raises ValueError, naming the variable, for a lifetime that is not a positive number."""
        default = cls()
        lifetime = env.get("HOOKRULES_SANDBOX_TOKEN_LIFETIME", "").strip()
        if lifetime and (not lifetime.isdigit() or int(lifetime) == 0):
            raise ValueError(f"HOOKRULES_SANDBOX_TOKEN_LIFETIME must be a whole number of seconds above 0, got {lifetime!r}")
        token = env.get("HOOKRULES_SANDBOX_TOKEN", "").strip()
        return cls(
            client_id=env.get("HOOKRULES_SANDBOX_CLIENT_ID") or default.client_id,
            client_secret=env.get("HOOKRULES_SANDBOX_CLIENT_SECRET") or default.client_secret,
            refresh_token=env.get("HOOKRULES_SANDBOX_REFRESH_TOKEN") or default.refresh_token,
            static_tokens=frozenset({token}) if token else frozenset(),
            token_lifetime_s=int(lifetime) if lifetime else default.token_lifetime_s,
        )


class TokenBook:
    """The access tokens issued, when each expires, and when they were issued. The sandbox has
    one refresh token, so Zoho's per-refresh-token limit is one window here."""

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.expiry: dict[str, float] = {}
        self.issued_at: deque[float] = deque()

    def issue(self) -> str | None:
        """A new access token, or None when the window's allowance is used up."""
        now = time.monotonic()
        while self.issued_at and now - self.issued_at[0] >= TOKEN_WINDOW_S:
            self.issued_at.popleft()
        if len(self.issued_at) >= TOKENS_PER_WINDOW:
            return None
        self.issued_at.append(now)
        self.expiry = {token: at for token, at in self.expiry.items() if at > now}  # keep the book small
        token = f"1000.{secrets.token_hex(32)}"
        self.expiry[token] = now + self.settings.token_lifetime_s
        return token

    def valid(self, authorization: str | None) -> bool:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme != "Zoho-oauthtoken" or not token:
            return False
        return token in self.settings.static_tokens or self.expiry.get(token, 0.0) > time.monotonic()

    def expire_all(self) -> None:
        self.expiry.clear()


@dataclass
class Fault:
    status: int
    count: int = 1
    path_contains: str = ""
    retry_after: int | None = None

    @classmethod
    def from_json(cls, data: Any) -> Fault:
        if not isinstance(data, dict) or not isinstance(data.get("status"), int):
            raise ValueError('send a JSON object like {"status": 429, "retry_after": 2, "count": 1, "path_contains": "/api/v3/"}')
        if extra := sorted(set(data) - {"status", "count", "path_contains", "retry_after"}):
            raise ValueError(f"unknown key {extra[0]!r}")
        fault = cls(**data)
        if not 400 <= fault.status <= 599 or not isinstance(fault.count, int) or fault.count < 1:
            raise ValueError("status must be 400-599 and count a whole number from 1")
        if not isinstance(fault.path_contains, str):
            raise ValueError("path_contains must be text")
        if fault.retry_after is not None and (not isinstance(fault.retry_after, int) or fault.retry_after < 0):
            raise ValueError("retry_after must be a whole number of seconds")
        return fault


class Sandbox:
    """All the sandbox's state, and the endpoints over it."""

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.sdp = sandbox_sdp.SdpApi(seed_sdp())
        self.zoho = sandbox_zoho.ZohoApi(seed_zoho())
        self._clear()

    def _clear(self) -> None:
        self.tokens = TokenBook(self.settings)
        self.faults: list[Fault] = []
        self.token_requests = 0
        self.tokens_issued = 0
        self.requests: Counter[str] = Counter()

    def routes(self) -> list[Route]:
        routes = [
            Route(TOKEN_PATH, self.token, methods=["POST"]),
            Route("/_sandbox/stats", self.stats, methods=["GET"]),
            Route("/_sandbox/expire-tokens", self.expire_tokens, methods=["POST"]),
            Route("/_sandbox/faults", self.add_fault, methods=["POST"]),
            Route("/_sandbox/milestones/{project_id}/{milestone_id}", self.stored_milestone, methods=["GET"]),
            Route("/_sandbox/projects/{project_id}", self.stored_project, methods=["GET"]),
            Route("/_sandbox/reset", self.reset, methods=["POST"]),
        ]
        for path, methods, endpoint in self.sdp.endpoints():
            routes.append(Route(path, self._api(path, endpoint, sandbox_sdp), methods=methods))
        for path, methods, endpoint in self.zoho.endpoints():
            guarded = self._api(path, endpoint, sandbox_zoho)
            # Zoho's document writes the trailing slash; clients often leave it off.
            routes += [Route(path, guarded, methods=methods), Route(path.rstrip("/"), guarded, methods=methods)]
        return routes

    def _api(self, template: str, endpoint: Endpoint, system: Any) -> Endpoint:
        """Count the request, serve a pending fault, check the token, then run the endpoint."""

        async def api(request: Request) -> Response:
            self.requests[f"{request.method} {template}"] += 1
            if fault := self._take_fault(request):
                return _with_retry_after(system.fault_response(fault.status), fault)
            if not self.tokens.valid(request.headers.get("authorization")):
                return system.unauthorized()
            return await endpoint(request)

        return api

    def _take_fault(self, request: Request) -> Fault | None:
        for fault in self.faults:
            if fault.path_contains in request.url.path:
                fault.count -= 1
                if fault.count == 0:
                    self.faults.remove(fault)
                return fault
        return None

    async def token(self, request: Request) -> Response:
        self.token_requests += 1
        if fault := self._take_fault(request):
            body = TOO_MANY_TOKENS if fault.status == 429 else {"error": f"sandbox fault: HTTP {fault.status}"}
            return _with_retry_after(JSONResponse(body, status_code=fault.status), fault)
        try:
            given = await _token_parameters(request)
        except BodyError as problem:
            return JSONResponse({"error": "invalid_request", "error_description": str(problem)}, status_code=400)
        if problem := self._token_problem(given):
            return JSONResponse({"error": problem}, status_code=400)
        token = self.tokens.issue()
        if token is None:
            log.info("sandbox: access token refused: %d issued in the last 10 minutes", TOKENS_PER_WINDOW)
            return JSONResponse(TOO_MANY_TOKENS, status_code=400)
        self.tokens_issued += 1
        log.info("sandbox: access token issued to client %s, valid %ds", given["client_id"], self.settings.token_lifetime_s)
        return JSONResponse({"access_token": token, "expires_in": self.settings.token_lifetime_s,
                             "api_domain": f"{request.url.scheme}://{request.url.netloc}", "token_type": "Bearer"})

    def _token_problem(self, given: dict[str, str]) -> str | None:
        if given.get("grant_type") != "refresh_token":
            return "unsupported_grant_type"
        client_ok = _same(given.get("client_id"), self.settings.client_id) & _same(
            given.get("client_secret"), self.settings.client_secret)
        if not client_ok:
            return "invalid_client"
        return None if _same(given.get("refresh_token"), self.settings.refresh_token) else "invalid_code"

    async def stats(self, request: Request) -> Response:
        return JSONResponse({"token_requests": self.token_requests, "tokens_issued": self.tokens_issued,
                             "requests": dict(sorted(self.requests.items()))})

    async def expire_tokens(self, request: Request) -> Response:
        count = len(self.tokens.expiry)
        self.tokens.expire_all()
        log.info("sandbox: %d issued access token(s) expired", count)
        return JSONResponse({"expired": count})

    async def add_fault(self, request: Request) -> Response:
        try:
            fault = Fault.from_json(json.loads(await request.body()))
        except (ValueError, TypeError) as problem:
            return JSONResponse({"error": f"bad fault: {problem}"}, status_code=400)
        self.faults.append(fault)
        log.info("sandbox: the next %d request(s) to paths containing %r answer %d", fault.count,
                 fault.path_contains, fault.status)
        return JSONResponse({"pending": [asdict(f) for f in self.faults]})

    async def stored_milestone(self, request: Request) -> Response:
        project_id, milestone_id = request.path_params["project_id"], request.path_params["milestone_id"]
        milestone = self.sdp.store.milestones.get(project_id, {}).get(milestone_id)
        if milestone is None:
            return JSONResponse({"error": f"no milestone {milestone_id} in project {project_id}"}, status_code=404)
        return JSONResponse(sandbox_sdp.render(milestone))

    async def stored_project(self, request: Request) -> Response:
        project = self.zoho.store.projects.get(request.path_params["project_id"])
        if project is None:
            return JSONResponse({"error": f"no project {request.path_params['project_id']}"}, status_code=404)
        base = f"{request.url.scheme}://{request.url.netloc}"
        return JSONResponse(sandbox_zoho.render(project, base, "sandbox"))

    async def reset(self, request: Request) -> Response:
        self.sdp.store, self.zoho.store = seed_sdp(), seed_zoho()
        self._clear()
        log.info("sandbox: reset to the seed data")
        return JSONResponse({"reset": True})


def _same(given: str | None, expected: str) -> bool:
    # Constant time, so the sandbox does not teach a client to guess secrets by timing.
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _with_retry_after(response: Response, fault: Fault) -> Response:
    if fault.retry_after is not None:
        response.headers["Retry-After"] = str(fault.retry_after)
    return response


async def _token_parameters(request: Request) -> dict[str, str]:
    """Zoho reads the token parameters from the query string or a form body."""
    body = await request.body()
    form = parse_urlencoded(body) if body else {}
    for name, value in request.query_params.multi_items():
        if name in form:
            raise BodyError(f"{name} is given more than once")
        form[name] = value
    return form


async def _no_route(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods, in the shape of the API the path belongs to."""
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    message = f"no such endpoint: {request.method} {request.url.path}"
    if request.url.path.startswith("/app/"):
        return sandbox_sdp.failure(status, 4007, message)
    if request.url.path.startswith("/restapi/"):
        return sandbox_zoho.error(status, 6404, message)
    return JSONResponse({"error": message}, status_code=status)


def create_sandbox(settings: SandboxSettings) -> Starlette:
    sandbox = Sandbox(settings)
    app = Starlette(routes=sandbox.routes(), exception_handlers={404: _no_route, 405: _no_route})
    app.router.redirect_slashes = False  # a redirect would hide a wrong path; the real APIs do not redirect
    app.state.sandbox = sandbox  # for in-process callers; HTTP clients use /_sandbox/
    return app
