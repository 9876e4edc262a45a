"""The shared Zoho OAuth token, against the real server and a real token endpoint on 127.0.0.1:
one refresh however many workers ask at once, and Zoho's refusals held and reported."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest
import redis
import redis.asyncio as aioredis

from conftest import free_port, with_db
from engine.http_client import HttpClient
from engine.oauth import OAuthClient, TokenError, TokenProvider, oauth_status

CLIENT_ID = "1000.TESTCLIENTID"
CLIENT_SECRET = "cs-test-9f2b61d0"  # test values, not real credentials
REFRESH_TOKEN = "1000.rt-test-77a1c3e5"
TOKEN_KEY = "hookrules:oauth:sdp:token"
ZOHO_TOO_MANY = {
    "error": "Access Denied",
    "error_description": "You have made too many requests continuously. Please try again after some time.",
}


class TokenEndpoint:
    """Zoho's token endpoint, as far as a refresh goes: counts calls, can be slowed, can fail."""

    def __init__(self) -> None:
        self.calls = 0
        self.requests: list[tuple[str, dict[str, list[str]]]] = []  # path, form
        self.expires_in = 3600
        self.delay_s = 0.0
        self.failure: tuple[int, bytes] | None = None  # (status, body) answered while set
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                form = parse_qs(self.rfile.read(int(self.headers.get("content-length") or 0)).decode())
                with endpoint._lock:
                    endpoint.calls += 1
                    endpoint.requests.append((self.path, form))
                    number, failure, delay = endpoint.calls, endpoint.failure, endpoint.delay_s
                time.sleep(delay)  # outside the lock: widens the race between workers
                status, body = failure or (200, json.dumps(endpoint.grant(number)).encode())
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/oauth/v2/token"
        self.client = OAuthClient("sdp", self.url, CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN)

    def grant(self, number: int) -> dict[str, object]:
        return {"access_token": f"1000.at-{number}", "api_domain": "https://www.zohoapis.com",
                "token_type": "Bearer", "expires_in": self.expires_in}


@pytest.fixture
def endpoint() -> Iterator[TokenEndpoint]:
    served = TokenEndpoint()
    thread = threading.Thread(target=served.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield served
    served.server.shutdown()
    served.server.server_close()


@pytest.fixture
def plain(redis_url: str) -> Iterator[redis.Redis]:
    """Database 4, flushed before and after; the tests' own view of what is stored."""
    client = redis.Redis.from_url(with_db(redis_url, 4))
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def url(redis_url: str, plain: redis.Redis) -> str:
    return with_db(redis_url, 4)


@contextlib.asynccontextmanager
async def providers(url: str, client: OAuthClient, n: int = 1, **options: float) -> AsyncIterator[list[TokenProvider]]:
    """n providers, each with its own Redis connection and HTTP client, as n workers have."""
    redises = [aioredis.Redis.from_url(url) for _ in range(n)]
    https = [HttpClient() for _ in range(n)]
    try:
        yield [TokenProvider(r, h, client, **options) for r, h in zip(redises, https)]
    finally:
        for r, h in zip(redises, https):
            await r.aclose()
            await h.aclose()


async def status(url: str) -> dict:
    client = aioredis.Redis.from_url(url)
    try:
        return await oauth_status(client, "sdp")
    finally:
        await client.aclose()


def seed_stale_token(plain: redis.Redis, left_s: float = 100) -> None:
    """A token Zoho granted for an hour that has only `left_s` left: inside the 300 s margin."""
    now = time.time()
    data = {"access_token": "1000.stale", "expires_at": now + left_s, "obtained_at": now + left_s - 3600}
    plain.set(TOKEN_KEY, json.dumps(data), px=int(left_s * 1000))


def assert_no_secret(text: str) -> None:
    for secret in (CLIENT_SECRET, REFRESH_TOKEN):
        assert secret not in text


def test_first_call_fetches_and_caches_the_second_does_not(
    url: str, plain: redis.Redis, endpoint: TokenEndpoint
) -> None:
    async def scenario() -> tuple[list[str], dict]:
        async with providers(url, endpoint.client, 2) as (first, other):
            return [await first.token(), await first.token(), await other.token()], await status(url)

    tokens, health = asyncio.run(scenario())
    assert tokens == ["1000.at-1"] * 3 and endpoint.calls == 1
    path, form = endpoint.requests[0]
    # The credentials go in the body: a URL ends up in HTTP clients' exceptions and proxies' logs.
    assert path == "/oauth/v2/token"
    assert form == {"grant_type": ["refresh_token"], "client_id": [CLIENT_ID],
                    "client_secret": [CLIENT_SECRET], "refresh_token": [REFRESH_TOKEN]}
    cached = json.loads(plain.get(TOKEN_KEY))
    assert cached["access_token"] == "1000.at-1" and abs(cached["expires_at"] - (time.time() + 3600)) < 60
    assert 3500_000 < plain.pttl(TOKEN_KEY) <= 3600_000
    assert health["token_cached"] and 3500 < health["expires_in_s"] <= 3600
    assert health["refreshes"] == 1 and health["last_error"] is None


def test_token_within_the_margin_is_refreshed_once(url: str, plain: redis.Redis, endpoint: TokenEndpoint) -> None:
    seed_stale_token(plain, left_s=100)

    async def scenario() -> list[str]:
        async with providers(url, endpoint.client) as (provider,):
            return [await provider.token() for _ in range(4)]

    assert asyncio.run(scenario()) == ["1000.at-1"] * 4
    assert endpoint.calls == 1


def test_expired_token_is_refreshed_exactly_once(url: str, endpoint: TokenEndpoint) -> None:
    endpoint.expires_in = 1

    async def scenario() -> tuple[str, list[str]]:
        async with providers(url, endpoint.client, refresh_margin_s=0) as (provider,):
            first = await provider.token()
            await asyncio.sleep(1.1)  # gone from Redis with the token's expiry
            return first, await asyncio.gather(*(provider.token() for _ in range(5)))

    first, later = asyncio.run(scenario())
    assert first == "1000.at-1" and later == ["1000.at-2"] * 5
    assert endpoint.calls == 2


def test_margin_over_half_a_short_lifetime_does_not_refresh_every_call(url: str, endpoint: TokenEndpoint) -> None:
    endpoint.expires_in = 2  # with the default 300 s margin every token would be stale at once

    async def scenario() -> list[str]:
        async with providers(url, endpoint.client) as (provider,):
            tokens = [await provider.token(), await provider.token()]
            await asyncio.sleep(1.1)  # past half its life
            return tokens + [await provider.token(), await provider.token()]

    assert asyncio.run(scenario()) == ["1000.at-1", "1000.at-1", "1000.at-2", "1000.at-2"]
    assert endpoint.calls == 2


def test_eight_workers_missing_the_token_cause_one_refresh(url: str, endpoint: TokenEndpoint) -> None:
    endpoint.delay_s = 0.3

    async def scenario() -> list[str]:
        async with providers(url, endpoint.client, 8) as workers:
            return await asyncio.gather(*(worker.token() for worker in workers))

    assert asyncio.run(scenario()) == ["1000.at-1"] * 8
    assert endpoint.calls == 1
    assert asyncio.run(status(url))["refreshes"] == 1


def test_eight_threads_with_their_own_event_loops_cause_one_refresh(
    url: str, plain: redis.Redis, endpoint: TokenEndpoint
) -> None:
    seed_stale_token(plain)
    endpoint.delay_s = 0.3
    start = threading.Barrier(8)
    tokens: list[str] = []

    async def one_worker() -> str:
        async with providers(url, endpoint.client) as (provider,):
            await provider._redis.ping()  # connected before the race starts
            start.wait(timeout=10)
            return await provider.token()

    threads = [threading.Thread(target=lambda: tokens.append(asyncio.run(one_worker()))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=15)
    assert tokens == ["1000.at-1"] * 8
    assert endpoint.calls == 1


def test_eight_workers_invalidating_the_same_token_cause_one_refresh(url: str, endpoint: TokenEndpoint) -> None:
    async def scenario() -> tuple[str, list[str]]:
        async with providers(url, endpoint.client, 8) as workers:
            stale = await workers[0].token()
            endpoint.delay_s = 0.3

            async def got_401(worker: TokenProvider) -> str:
                await worker.invalidate(stale)
                return await worker.token()

            return stale, await asyncio.gather(*(got_401(worker) for worker in workers))

    stale, renewed = asyncio.run(scenario())
    assert stale == "1000.at-1" and renewed == ["1000.at-2"] * 8
    assert endpoint.calls == 2


def test_invalidate_with_an_already_replaced_token_does_nothing(
    url: str, plain: redis.Redis, endpoint: TokenEndpoint
) -> None:
    async def scenario() -> list[str]:
        async with providers(url, endpoint.client, 2) as (quick, late):
            old = await quick.token()
            await quick.invalidate(old)
            new = await quick.token()
            await late.invalidate(old)  # its 401 came late: the token it had is already replaced
            await late.invalidate("1000.never-issued")
            return [old, new, await late.token()]

    assert asyncio.run(scenario()) == ["1000.at-1", "1000.at-2", "1000.at-2"]
    assert endpoint.calls == 2
    assert json.loads(plain.get(TOKEN_KEY))["access_token"] == "1000.at-2"


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ((200, json.dumps(ZOHO_TOO_MANY).encode()), ["Access Denied", "too many requests continuously"]),
        ((400, b'{"error": "invalid_code"}'), ["invalid_code", "HTTP 400"]),
        ((502, b"<html>Bad Gateway</html>"), ["HTTP 502"]),
        ((200, b'{"api_domain": "https://www.zohoapis.com"}'), ["no access_token"]),
    ],
)
def test_failed_refresh_is_reported_and_held(
    url: str, endpoint: TokenEndpoint, reply: tuple[int, bytes], expected: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    endpoint.failure = reply

    async def scenario() -> tuple[list[str], dict, str, dict]:
        async with providers(url, endpoint.client, 2, error_hold_s=1.0) as (first, other):
            errors = []
            for worker in (first, other, first):  # the second and third are held: no call
                with pytest.raises(TokenError) as caught:
                    await worker.token()
                errors.append(str(caught.value))
            failed = await status(url)
            endpoint.failure = None
            await asyncio.sleep(1.05)
            return errors, failed, await other.token(), await status(url)

    errors, failed, token, recovered = asyncio.run(scenario())
    assert all(part in message for message in errors for part in expected)
    assert endpoint.calls == 2  # one failure, then one refresh once the hold was over
    assert all(part in failed["last_error"]["error"] for part in expected)
    assert abs(failed["last_error"]["at"] - time.time()) < 10
    assert not failed["token_cached"] and failed["refreshes"] == 0
    assert token == "1000.at-2"
    assert recovered["last_error"] is None and recovered["refreshes"] == 1
    assert_no_secret(" ".join(errors) + json.dumps(failed) + json.dumps(recovered))
    assert_no_secret(caplog.text)
    assert "1000.at-2" not in caplog.text


def test_workers_waiting_on_a_failing_refresh_share_its_error(url: str, endpoint: TokenEndpoint) -> None:
    endpoint.delay_s = 0.3
    endpoint.failure = (200, json.dumps(ZOHO_TOO_MANY).encode())

    async def scenario() -> list[object]:
        async with providers(url, endpoint.client, 6) as workers:
            return await asyncio.gather(*(worker.token() for worker in workers), return_exceptions=True)

    results = asyncio.run(scenario())
    assert all(isinstance(r, TokenError) and "Access Denied" in str(r) for r in results)
    assert endpoint.calls == 1


def test_unreachable_endpoint_is_a_token_error(url: str) -> None:
    client = OAuthClient("sdp", f"http://127.0.0.1:{free_port()}/oauth/v2/token", CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN)

    async def scenario() -> tuple[str, dict]:
        async with providers(url, client, timeout_s=2) as (provider,):
            with pytest.raises(TokenError) as caught:
                await provider.token()
            return str(caught.value), await status(url)

    message, health = asyncio.run(scenario())
    assert "ClientConnectorError" in message and "ClientConnectorError" in health["last_error"]["error"]
    assert_no_secret(message + json.dumps(health) + repr(client))


def test_a_token_near_expiry_is_still_used_while_zoho_refuses(
    url: str, plain: redis.Redis, endpoint: TokenEndpoint
) -> None:
    seed_stale_token(plain, left_s=100)
    endpoint.failure = (200, json.dumps(ZOHO_TOO_MANY).encode())

    async def scenario() -> tuple[list[str], dict]:
        async with providers(url, endpoint.client) as (provider,):
            return [await provider.token(), await provider.token()], await status(url)

    tokens, health = asyncio.run(scenario())
    assert tokens == ["1000.stale", "1000.stale"] and endpoint.calls == 1
    assert "Access Denied" in health["last_error"]["error"]


def test_a_worker_whose_read_predates_another_refresh_uses_that_refresh(
    url: str, plain: redis.Redis, endpoint: TokenEndpoint
) -> None:
    # The race single flight must close: a worker saw no token, then another worker refreshed
    # and let go of the lock before this one took it. It must not refresh a second time.
    async def scenario() -> list[str]:
        async with providers(url, endpoint.client, 2) as (first, late):
            read = late._read
            outdated = [None]

            async def read_from_before_the_refresh():  # noqa: ANN202
                return outdated.pop() if outdated else await read()

            late._read = read_from_before_the_refresh  # type: ignore[method-assign]
            return [await first.token(), await late.token()]

    assert asyncio.run(scenario()) == ["1000.at-1", "1000.at-1"]
    assert endpoint.calls == 1


def test_a_dead_lock_holder_does_not_block_the_refresh(
    url: str, plain: redis.Redis, endpoint: TokenEndpoint
) -> None:
    # A worker died while refreshing: its lock stays until lock_ttl, then another refreshes.
    plain.set("hookrules:oauth:sdp:lock", "dead-worker", px=300)

    async def scenario() -> str:
        async with providers(url, endpoint.client, wait_s=5) as (provider,):
            return await provider.token()

    assert asyncio.run(scenario()) == "1000.at-1"
    assert endpoint.calls == 1


def test_waiting_for_another_workers_refresh_is_bounded(url: str, plain: redis.Redis, endpoint: TokenEndpoint) -> None:
    plain.set("hookrules:oauth:sdp:lock", "stuck-worker", px=10_000)

    async def scenario() -> None:
        async with providers(url, endpoint.client, wait_s=0.3) as (provider,):
            with pytest.raises(TokenError, match="after waiting"):
                await provider.token()

    asyncio.run(scenario())
    assert endpoint.calls == 0
