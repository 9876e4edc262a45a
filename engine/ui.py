"""The dashboard: server-rendered pages under /ui, behind the admin token.

Mounted by the API (`ui_routes()`); everything it needs comes from `request.app.state`
(redis, rules, settings), as for the JSON routes. No JavaScript: plain HTML forms, inline CSS
and a server-drawn SVG chart.

Sign-in. POST /ui/login takes the admin token once and answers with the cookie
`hookrules_admin` = "<issued>.<HMAC-SHA256 keyed by the token over 'session|<issued>'>": never
the token itself, valid for SESSION_S and only while the token stays the same (rotating
HOOKRULES_ADMIN_TOKEN signs everyone out). Stateless on purpose: any number of API processes
accept it, and nothing is kept in Redis. `Authorization: Bearer <token>` works too, for scripts.

CSRF. Forms that change something (replay, purge, logout) carry `csrf` = HMAC keyed by the token
over the session cookie; a POST without the right one is refused with 403. The cookie is also
SameSite=Strict, so another site cannot make a browser send it at all: two locks, not one.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import jinja2
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from engine import deadletters, store, ui_views
from engine.audit import EventFilter, find_events
from engine.health import health_report
from engine.stats import read_stats

COOKIE = "hookrules_admin"
SESSION_S = 12 * 3600  # a sign-in lasts a working day
FORM_LIMIT = 16 * 1024  # the largest form body read: a token and a few fields
TEMPLATES = Path(__file__).parent / "ui_templates"
FLASH = {
    "replayed": "Replay queued for {id}: the event is decided again with the current rules and the action sent once.",
    "purged": "Purged {id}.",
    "missing": "No dead letter {id}: it was already replayed or purged, or its event expired.",
}
# The pages hold no script; the CSP says so, which also blunts any injection autoescape missed.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

Handler = Callable[[Request, str], Awaitable[Response]]


@functools.cache
def environment() -> jinja2.Environment:
    # Autoescape on: every value on these pages is data from webhooks and rule files.
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["utc"] = ui_views.utc
    env.filters["path"] = lambda value: quote(str(value), safe="")
    return env


def render(request: Request, name: str, status: int = 200, credential: str | None = None, **context: Any) -> Response:
    token = request.app.state.settings.admin_token
    csrf = csrf_token(token, credential) if token and credential else ""
    html = environment().get_template(name).render(request_path=request.url.path, csrf=csrf, signed_in=bool(credential),
                                                   **context)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


# --- sign-in and CSRF ------------------------------------------------------------------------


def _mac(token: str, message: str) -> str:
    return hmac.new(token.encode(), message.encode(), hashlib.sha256).hexdigest()


def session_cookie(token: str, issued: int) -> str:
    return f"{issued}.{_mac(token, f'session|{issued}')}"


def session_valid(token: str, cookie: str, now: float) -> bool:
    issued, _, _ = cookie.partition(".")
    # A minute of leeway before `issued`: another API process's clock may be a little behind.
    if not issued.isdigit() or not -60 <= now - int(issued) <= SESSION_S:
        return False
    return hmac.compare_digest(cookie.encode(), session_cookie(token, int(issued)).encode())


def csrf_token(token: str, credential: str) -> str:
    # Tied to the credential in use: a new sign-in makes new form tokens.
    return _mac(token, f"csrf|{credential}")


def credential_of(request: Request, token: str) -> str | None:
    """The session cookie, or "bearer" for a right Authorization header; None when neither."""
    given = request.headers.get("authorization", "")
    if given and hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return "bearer"
    cookie = request.cookies.get(COOKIE, "")
    return cookie if cookie and session_valid(token, cookie, time.time()) else None


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a dashboard page only, never another site."""
    if target and target.startswith("/ui") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui"


def forbidden(request: Request) -> Response:
    return render(request, "forbidden.html", status=403)


def page(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Sign-in required: off (403) without an admin token, to the login page without a valid
    credential, and a 503 page when Redis does not answer."""

    @functools.wraps(handler)
    async def guarded(request: Request) -> Response:
        token = request.app.state.settings.admin_token
        if token is None:
            return forbidden(request)
        credential = credential_of(request, token)
        if credential is None:
            wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse("/ui/login?" + urlencode({"next": wanted}), status_code=303)
        try:
            return await handler(request, credential)
        except (RedisError, OSError) as exc:
            return render(request, "error.html", status=503, credential=credential,
                          title="Redis unreachable", message=f"Redis does not answer: {exc}")

    return guarded


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form, read by hand: Starlette's form parser needs python-multipart, and
    these forms are a few short fields. Oversized or other bodies read as empty."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_LIMIT:
            return {}
    return {name: values[0] for name, values in parse_qs(body.decode(errors="replace")).items()}


def posted(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A signed-in POST that changes something: the form's CSRF token must match."""

    async def checked(request: Request, credential: str) -> Response:
        form = await read_form(request)
        expected = csrf_token(request.app.state.settings.admin_token, credential)
        if not hmac.compare_digest(form.get("csrf", "").encode(), expected.encode()):
            return render(request, "error.html", status=403, credential=credential, title="Refused",
                          message="This form is missing its CSRF token or it is stale. Reload the page and try again.")
        return await handler(request, credential)

    return page(functools.wraps(handler)(checked))


async def login_form(request: Request) -> Response:
    if request.app.state.settings.admin_token is None:
        return forbidden(request)
    return render(request, "login.html", next=safe_next(request.query_params.get("next")), error=None)


async def login(request: Request) -> Response:
    token = request.app.state.settings.admin_token
    if token is None:
        return forbidden(request)
    form = await read_form(request)
    target = safe_next(form.get("next"))
    if not hmac.compare_digest(form.get("token", "").encode(), token.encode()):
        return render(request, "login.html", status=401, next=target, error="That is not the admin token.")
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, session_cookie(token, int(time.time())), max_age=SESSION_S, path="/ui",
                        httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response


@posted
async def logout(request: Request, credential: str) -> Response:
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict")
    return response


# --- pages -----------------------------------------------------------------------------------


@page
async def overview(request: Request, credential: str) -> Response:
    state = request.app.state
    status, report = await health_report(state.redis, state.rules, state.settings, time.time())
    try:
        timeline = (await read_stats(state.redis))["timeline"]
    except (RedisError, OSError):
        timeline = []  # the health report already says Redis is down
    return render(request, "overview.html", credential=credential, report=report, http_status=status, now=time.time(),
                  chart=ui_views.chart(timeline) if timeline else None)


@page
async def rules_page(request: Request, credential: str) -> Response:
    rules = request.app.state.rules
    counts = (await read_stats(request.app.state.redis, minutes=1))["rules"]
    return render(request, "rules.html", credential=credential, ruleset=rules.ruleset, errors=rules.errors,
                  rows=ui_views.rule_rows(rules.ruleset.rules, counts))


EVENT_FILTERS = ("source", "rule", "entity", "status")


@page
async def events_page(request: Request, credential: str) -> Response:
    query = {name: request.query_params.get(name, "").strip() for name in EVENT_FILTERS}
    limit = request.query_params.get("limit", "50")
    limit_n = int(limit) if limit.isdigit() and 1 <= int(limit) <= 500 else 50
    wanted = EventFilter(**{name: value or None for name, value in query.items()}, limit=limit_n)
    found = await find_events(request.app.state.redis, wanted)
    rules = [rule.id for rule in request.app.state.rules.ruleset.rules]
    return render(request, "events.html", credential=credential, query=query, limit=limit_n, events=found,
                  rules=rules, sources=sorted(request.app.state.settings.sources))


@page
async def event_page(request: Request, credential: str) -> Response:
    event_id = request.path_params["event_id"]
    record = await store.event_record(request.app.state.redis, event_id)
    if record is None:
        return render(request, "error.html", status=404, credential=credential, title="No such event",
                      message=f"No event {event_id}: unknown id, or older than HOOKRULES_EVENT_TTL.")
    return render(request, "event.html", credential=credential, event=ui_views.event_view(record))


@page
async def dead_page(request: Request, credential: str) -> Response:
    letters = await deadletters.list_letters(request.app.state.redis)
    kind, letter = request.query_params.get("flash"), request.query_params.get("id", "")
    # The flash is a known kind plus an id, never free text from the URL.
    flash = FLASH[kind].format(id=letter) if kind in FLASH else None
    return render(request, "dead.html", credential=credential, letters=letters, flash=flash,
                  flash_kind="error" if kind == "missing" else "ok")


def _back_to_dead(kind: str, letter_id: str) -> Response:
    return RedirectResponse("/ui/dead?" + urlencode({"flash": kind, "id": letter_id}), status_code=303)


@posted
async def replay_letter(request: Request, credential: str) -> Response:
    letter_id = request.path_params["letter_id"]
    try:
        await deadletters.replay(request.app.state.redis, letter_id)
    except deadletters.NotDead:
        return _back_to_dead("missing", letter_id)
    return _back_to_dead("replayed", letter_id)


@posted
async def purge_letter(request: Request, credential: str) -> Response:
    letter_id = request.path_params["letter_id"]
    try:
        await deadletters.purge(request.app.state.redis, letter_id)
    except deadletters.NotDead:
        return _back_to_dead("missing", letter_id)
    return _back_to_dead("purged", letter_id)


def ui_routes() -> list[BaseRoute]:
    return [
        Route("/ui", overview, methods=["GET"]),
        Route("/ui/login", login_form, methods=["GET"]),
        Route("/ui/login", login, methods=["POST"]),
        Route("/ui/logout", logout, methods=["POST"]),
        Route("/ui/rules", rules_page, methods=["GET"]),
        Route("/ui/events", events_page, methods=["GET"]),
        Route("/ui/events/{event_id}", event_page, methods=["GET"]),
        Route("/ui/dead", dead_page, methods=["GET"]),
        Route("/ui/dead/{letter_id}/replay", replay_letter, methods=["POST"]),
        Route("/ui/dead/{letter_id}/purge", purge_letter, methods=["POST"]),
    ]
