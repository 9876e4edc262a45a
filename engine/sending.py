"""Send a rendered Request to its target and say what came of it.

For a connector's request (SDP, Zoho) this adds the access token (static, or the shared OAuth
token, refreshed once after a 401), keeps to the connector's shared rate limits (and pauses every
worker after a 429), follows SDP list pages, and reads the reply the system's way. The outcome is
what the retry policy in workers/ acts on: `done`; `retry` (429, 5xx, network, a token or rate
limit to wait for); `failed` (any other reply, with the system's own message).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from engine import sdp, zoho
from engine.config import Connector, Targets
from engine.connectors import failure_message
from engine.http_client import HttpClient, HttpError, Reply
from engine.models import Request
from engine.oauth import TokenError, TokenProvider
from engine.ratelimit import Limiter, RateLimited
from engine.reach import Unreachable, check_addresses, check_host

EXCERPT_CHARS = 2000  # a whole SDP milestone (~1.5 KB) fits
RATE_WAIT_S = 10.0  # wait this long for a rate-limit slot inside a job; longer, defer the job
TOKEN_RETRY_S = 60.0  # after a failed token refresh, try the action again no sooner
SEND_DEADLINE_S = 240.0  # one send, all pages and waits included; the worker's job timeout is longer
# A 401 renews the token at most once per connector in this window. A 401 that is not about
# expiry (a missing scope, no access to the portal) would otherwise renew on every action and
# spend Zoho's 10 tokens per 10 minutes, which SDP and Zoho share when they share a client.
RENEW_AFTER_401_S = 300
RENEW_KEY = "hookrules:oauth:{}:renewed-after-401"


@dataclass(frozen=True)
class SendResult:
    outcome: str  # "done" | "retry" | "failed"
    http_status: int | None
    response: str  # the first EXCERPT_CHARS characters of the reply body
    error: str | None = None
    retry_after_s: float | None = None
    details: dict[str, Any] = field(default_factory=dict)  # e.g. pages and rows of a list
    sent: bool = True  # False: nothing reached the system (waiting for a rate-limit turn or a token)

    def to_dict(self) -> dict[str, Any]:
        # By hand, not dataclasses.asdict (a deep copy): one per action sent.
        return {"outcome": self.outcome, "http_status": self.http_status, "response": self.response, "error": self.error,
                "retry_after_s": self.retry_after_s, "details": self.details, "sent": self.sent}


def classify(status: int) -> str:
    if 200 <= status < 300:
        return "done"
    if status == 429 or status >= 500:
        return "retry"
    return "failed"


def retry_after(value: str | None) -> float | None:
    # Seconds only; the HTTP-date form is rare from these APIs.
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def judge(request: Request, reply: Reply) -> SendResult:
    body = parse_json(reply.text)
    outcome = classify(reply.status_code)
    message = failure_message(request.connector, reply.status_code, body)
    if outcome == "done" and message:
        outcome = "failed"  # SDP: HTTP 200 with status_code 4000 inside
    return SendResult(
        outcome,
        reply.status_code,
        reply.text[:EXCERPT_CHARS],
        error=None if outcome == "done" else message or f"HTTP {reply.status_code}",
        retry_after_s=retry_after(reply.headers.get("retry-after")),
    )


def next_page(request: Request, page: Any) -> Request | None:
    """The request for the page after `page` of a paged list, or None when there is none."""
    rows = rows_in(page)
    if request.paging == "sdp" and sdp.has_more_rows(page) and rows:
        return sdp.next_page(request, rows)
    if request.paging == "zoho" and rows:
        return zoho.next_page(request, rows)
    return None


def rows_in(body: Any) -> int:
    """Rows in one SDP list page: the list beside response_status and list_info."""
    if not isinstance(body, dict):
        return 0
    return sum(len(v) for k, v in body.items() if isinstance(v, list) and k != "response_status")


def join_pages(body: Any, page: Any) -> Any:
    """Two pages of a list as one: the lists beside response_status and list_info joined."""
    if not isinstance(body, dict) or not isinstance(page, dict):
        return page
    joined = dict(page)
    for key, value in page.items():
        if isinstance(value, list) and key != "response_status" and isinstance(body.get(key), list):
            joined[key] = body[key] + value
    return joined


class ReadError(Exception):
    """A read could not be done; the message says why, in the system's words where it gave any."""


@dataclass
class Sender:
    http: HttpClient
    targets: Targets
    tokens: dict[str, TokenProvider]  # connectors with OAuth
    limiters: dict[str, Limiter]
    redis: Redis | None = None
    rate_wait_s: float = RATE_WAIT_S
    deadline_s: float = SEND_DEADLINE_S

    @classmethod
    def create(cls, redis: Redis, http: HttpClient, targets: Targets) -> Sender:
        connectors = (targets.sdp, targets.zoho)
        return cls(
            http,
            targets,
            tokens={c.name: TokenProvider(redis, http, c.oauth, timeout_s=targets.timeout_s) for c in connectors if c.oauth},
            # A lease outlives the longest request, or a slow request would let one more in.
            limiters={c.name: Limiter(redis, c.name, c.limits, lease_s=max(60.0, targets.timeout_s * 2)) for c in connectors},
            redis=redis,
        )

    async def send(self, request: Request) -> SendResult:
        try:
            async with asyncio.timeout(self.deadline_s):
                if request.paging == "sdp":
                    return await self._all_pages(request)
                return judge(request, await self._exchange(request))
        except TimeoutError:
            # Something may have been sent: this counts as an attempt.
            return SendResult("retry", None, "", error=f"not finished within {self.deadline_s:g} s (waits, pages and requests)")
        except RateLimited as exc:
            return SendResult("retry", None, "", error=f"{request.connector} rate limit: a slot frees in {exc.retry_after_s:.1f} s",
                              retry_after_s=exc.retry_after_s, sent=False)
        except TokenError as exc:
            return SendResult("retry", None, "", error=f"{request.connector} access token: {exc}", retry_after_s=TOKEN_RETRY_S, sent=False)
        except (MissingCredentials, Unreachable) as exc:
            return SendResult("failed", None, "", error=str(exc), sent=False)
        except HttpError as exc:
            return SendResult("retry", None, "", error=str(exc))  # "TypeName: detail" already

    async def read(self, request: Request) -> Any:
        """The reply of a read (a rule's fetch, a scheduled scan) as parsed JSON; every page of
        an SDP list, their items put together. Raises ReadError saying why not."""
        try:
            async with asyncio.timeout(self.deadline_s):
                body = None
                for _ in range(sdp.MAX_PAGES):
                    reply = await self._exchange(request)
                    result = judge(request, reply)
                    if result.outcome != "done":
                        raise ReadError(result.error or f"HTTP {reply.status_code}")
                    if request.paging == "zoho" and reply.status_code == 204:  # Zoho's "no more rows"
                        return body if body is not None else {"projects": []}
                    page = parse_json(reply.text)
                    body = page if body is None else join_pages(body, page)
                    following = next_page(request, page)
                    if following is None:
                        return body
                    request = following
                return body
        except TimeoutError:
            raise ReadError(f"not finished within {self.deadline_s:g} s") from None
        except HttpError as exc:
            raise ReadError(str(exc)) from None
        except (RateLimited, TokenError, MissingCredentials, Unreachable) as exc:
            raise ReadError(f"{type(exc).__name__}: {exc}") from None

    async def already_applied(self, request: Request) -> bool:
        """After an interrupted try: is the change already there? Only an SDP milestone update
        can be read back and compared; for anything else, or if the read fails, False."""
        if request.connector != "sdp" or request.method != "PUT" or "/milestones/" not in request.url:
            return False
        probe = Request("GET", request.url, {"Accept": sdp.ACCEPT}, connector="sdp")
        try:
            return sdp.already_applied(request, await self.read(probe))
        except ReadError:
            return False

    async def _all_pages(self, request: Request) -> SendResult:
        rows = 0
        for page in range(1, sdp.MAX_PAGES + 1):
            reply = await self._exchange(request)
            result = judge(request, reply)
            if result.outcome != "done":
                return result
            body = parse_json(reply.text)
            page_rows = rows_in(body)
            rows += page_rows
            if not sdp.has_more_rows(body) or page_rows == 0:
                return SendResult(**{**result.to_dict(), "details": {"pages": page, "rows": rows}})
            request = sdp.next_page(request, page_rows)
        return SendResult(**{**result.to_dict(), "details": {"pages": sdp.MAX_PAGES, "rows": rows, "truncated": True}})

    async def _exchange(self, request: Request) -> Reply:
        if request.connector is None:
            # Checked again at send time: the allowlist may have changed since the rule
            # planned it, and only now do we know what the host resolves to.
            check_host(request.url, self.targets.http_allow_hosts)
            await check_addresses(request.url, self.targets.http_allow_hosts)
            return await self._http(request, {})
        connector = self.targets.connector(request.connector)
        token = await self._token(connector)
        reply = await self._limited(connector, request, token)
        provider = self.tokens.get(connector.name)
        if reply.status_code == 401 and provider is not None:
            # The token was revoked or expired early: drop it (once, whoever saw the 401
            # first, and at most once per RENEW_AFTER_401_S) and try once more with the new
            # one. Workers that saw the same 401 pick up that new token without renewing.
            if await self._may_renew(connector.name):
                await provider.invalidate(token)
            fresh = await self._renewed(provider, token)
            if fresh != token:
                reply = await self._limited(connector, request, fresh)
        if reply.status_code == 429:
            await self.limiters[connector.name].pause(retry_after(reply.headers.get("retry-after")) or 1.0)
        return reply

    async def _renewed(self, provider: TokenProvider, stale: str) -> str:
        """The token after a 401: a fresh one, once whoever renews it has; the stale one if no
        renewal comes within a couple of seconds (the 401 was not about the token's age)."""
        for _ in range(20):
            fresh = await provider.token()
            if fresh != stale:
                return fresh
            await asyncio.sleep(0.1)
        return stale

    async def _may_renew(self, connector: str) -> bool:
        if self.redis is None:
            return True
        return bool(await self.redis.set(RENEW_KEY.format(connector), "1", nx=True, ex=RENEW_AFTER_401_S))

    async def _token(self, connector: Connector) -> str:
        provider = self.tokens.get(connector.name)
        if provider is not None:
            return await provider.token()
        if connector.token:
            return connector.token
        prefix = f"HOOKRULES_{connector.name.upper()}"
        raise MissingCredentials(
            f"{connector.name} has no credentials: set {prefix}_CLIENT_ID, {prefix}_CLIENT_SECRET and "
            f"{prefix}_REFRESH_TOKEN (or a static {prefix}_TOKEN)"
        )

    async def _limited(self, connector: Connector, request: Request, token: str) -> Reply:
        async with self.limiters[connector.name].slot(max_wait_s=self.rate_wait_s):
            return await self._http(request, {"Authorization": f"Zoho-oauthtoken {token}"})

    async def _http(self, request: Request, auth: dict[str, str]) -> Reply:
        # Stored as lists (JSON); the client takes (file name, content, content type). It
        # replaces any Content-Type with the multipart one and its boundary.
        files = {name: (part[0], part[1], part[2]) for name, part in request.files.items()} if request.files else None
        return await self.http.request(
            request.method,
            request.url,
            headers={**request.headers, **auth},
            params=request.query or None,
            data=request.form,
            files=files,
            json=request.json,
            timeout=self.targets.timeout_s,
        )


class MissingCredentials(Exception):
    """The connector has neither OAuth settings nor a static token."""
