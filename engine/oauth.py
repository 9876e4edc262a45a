"""One Zoho OAuth access token per connector, shared by every worker through Redis.

Zoho issues at most 10 access tokens per refresh token per 10 minutes, so a refresh must be
rare and single-flight across processes: the token lives in Redis until it expires, one
worker refreshes it under a lock while the others wait for the result, and a failed refresh
is held for a while so a broken credential does not burn the budget.

Keys, `<c>` being the connector ("sdp", "zoho"):
- `hookrules:oauth:<c>:token`: JSON `{access_token, expires_at, obtained_at}`, expiring with
  the token itself, so its PTTL is the time left on Redis' clock, not on a worker's.
- `hookrules:oauth:<c>:lock`: the refresh lock, a random owner id, `SET NX PX lock_ttl`.
- `hookrules:oauth:<c>:error`: JSON `{error, at}`, the last failed refresh; cleared on success.
- `hookrules:oauth:<c>:hold`: present for error_hold_s after a failure: no refresh meanwhile.
- `hookrules:oauth:<c>:refreshes`: how many refreshes succeeded.

Secrets (client secret, refresh token, access tokens) never go into a log line, an exception
or the status: they are sent in the POST body, not the URL, because HTTP clients repeat URLs
in their exceptions (aiohttp's connection timeout does) and proxies write them to their logs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from engine.http_client import HttpClient, HttpError

log = logging.getLogger("hookrules.oauth")

KEY_PREFIX = "hookrules:oauth:"
TOKEN_KEY = KEY_PREFIX + "{connector}:token"
LOCK_KEY = KEY_PREFIX + "{connector}:lock"
ERROR_KEY = KEY_PREFIX + "{connector}:error"
HOLD_KEY = KEY_PREFIX + "{connector}:hold"
REFRESHES_KEY = KEY_PREFIX + "{connector}:refreshes"

POLL_S = 0.05  # how often a waiting worker looks for the token another one is fetching
DEFAULT_LIFETIME_S = 3600.0  # Zoho's access token lifetime, when a reply does not say
MESSAGE_CHARS = 300

# Drop the cached token only if it is still the one that got the 401: eight workers that got
# a 401 together then remove it once, and a late one cannot remove the token fetched since.
INVALIDATE_LUA = """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local ok, cached = pcall(cjson.decode, raw)
if ok and type(cached) == 'table' and cached['access_token'] ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""

# Only the lock's owner may release it: a refresh that outlived lock_ttl must not remove the
# lock another worker has taken since.
RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# The token and its time left, read together so they belong to the same token.
READ_LUA = """
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
return {raw, redis.call('PTTL', KEYS[1])}
"""

_CONNECTOR = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class OAuthClient:
    connector: str  # "sdp" or "zoho": names the Redis keys
    token_url: str  # e.g. https://accounts.zoho.com/oauth/v2/token
    client_id: str
    client_secret: str = field(repr=False)
    refresh_token: str = field(repr=False)


class TokenError(Exception):
    """No access token to be had. The message is safe to show users and write to logs."""


@dataclass(frozen=True)
class _Cached:
    access_token: str
    left_s: float  # by Redis' clock
    lifetime_s: float  # as Zoho granted it


def _keys(connector: str) -> dict[str, str]:
    if not _CONNECTOR.match(connector):
        raise ValueError(f"bad connector name {connector!r}: letters, digits, '.', '-', '_'")
    names = {"token": TOKEN_KEY, "lock": LOCK_KEY, "error": ERROR_KEY, "hold": HOLD_KEY, "refreshes": REFRESHES_KEY}
    return {name: key.format(connector=connector) for name, key in names.items()}


def _lifetime_s(body: dict[str, Any]) -> float:
    # Older Zoho replies give expires_in in milliseconds next to expires_in_sec in seconds.
    for name in ("expires_in_sec", "expires_in"):
        try:
            value = float(body[name])
        except (KeyError, TypeError, ValueError):
            continue
        if value > 0:
            return value
    return DEFAULT_LIFETIME_S


class TokenProvider:
    def __init__(
        self,
        redis: Redis,
        http: HttpClient,
        client: OAuthClient,
        *,
        refresh_margin_s: float = 300,
        lock_ttl_s: float = 30,
        wait_s: float = 20,
        error_hold_s: float = 60,
        timeout_s: float = 10,
    ) -> None:
        self._redis = redis
        self._http = http
        self._client = client
        self._keys = _keys(client.connector)
        self._margin_s = refresh_margin_s
        self._lock_ms = max(1, int(lock_ttl_s * 1000))
        self._wait_s = wait_s
        self._hold_ms = int(error_hold_s * 1000)
        self._timeout_s = timeout_s
        self._read_script = redis.register_script(READ_LUA)
        self._invalidate_script = redis.register_script(INVALIDATE_LUA)
        self._release_script = redis.register_script(RELEASE_LUA)

    async def token(self) -> str:
        """The cached access token; refreshed first when missing or close to expiry."""
        cached = await self._read()
        if cached and self._fresh(cached):
            return cached.access_token
        try:
            return await self._refresh(cached.access_token if cached else None)
        except TokenError:
            # A token near its expiry still works: better than none while Zoho refuses.
            current = await self._read()
            if current and current.left_s > 0:
                return current.access_token
            raise

    async def invalidate(self, token: str) -> None:
        """After a 401 with `token`: drop it, unless it has already been replaced."""
        await self._invalidate_script(keys=[self._keys["token"]], args=[token])

    def _fresh(self, cached: _Cached) -> bool:
        # A margin larger than half the token's life would refresh every time: with a short-
        # lived token that empties the 10-per-10-minutes budget within a minute.
        return cached.left_s > min(self._margin_s, cached.lifetime_s / 2)

    async def _read(self) -> _Cached | None:
        found = await self._read_script(keys=[self._keys["token"]])
        if not found:
            return None
        try:
            data = json.loads(found[0])
            lifetime = float(data["expires_at"]) - float(data["obtained_at"])
            return _Cached(str(data["access_token"]), int(found[1]) / 1000, lifetime)
        except (ValueError, KeyError, TypeError):
            return None  # not ours or damaged: as good as missing, the refresh overwrites it

    def _is_new(self, cached: _Cached | None, stale: str | None) -> bool:
        return cached is not None and cached.left_s > 0 and (cached.access_token != stale or self._fresh(cached))

    async def _refresh(self, stale: str | None) -> str:
        """Single flight: whoever takes the lock fetches; the others wait for its token."""
        deadline = time.monotonic() + self._wait_s
        while True:
            await self._raise_if_held()
            owner = uuid.uuid4().hex
            if await self._redis.set(self._keys["lock"], owner, nx=True, px=self._lock_ms):
                try:
                    return await self._refresh_locked(stale)
                finally:
                    await self._release_script(keys=[self._keys["lock"]], args=[owner])
            token = await self._wait(stale, deadline)
            if token is not None:
                return token
            # The lock went without a new token: its holder died. Take the lock ourselves.

    async def _refresh_locked(self, stale: str | None) -> str:
        # Someone may have refreshed (or failed) between our read and our lock.
        current = await self._read()
        if self._is_new(current, stale):
            return current.access_token  # type: ignore[union-attr]
        await self._raise_if_held()
        access_token, lifetime_s = await self._fetch()
        await self._store(access_token, lifetime_s)
        return access_token

    async def _wait(self, stale: str | None, deadline: float) -> str | None:
        """The token another worker is fetching; None when its lock is gone without one."""
        while time.monotonic() < deadline:
            await asyncio.sleep(POLL_S)
            current = await self._read()
            if self._is_new(current, stale):
                return current.access_token  # type: ignore[union-attr]
            await self._raise_if_held()
            if not await self._redis.exists(self._keys["lock"]):
                return None
        raise TokenError(
            f"OAuth for '{self._client.connector}': no new access token after waiting "
            f"{self._wait_s:g} s for another worker's refresh"
        )

    async def _raise_if_held(self) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.pttl(self._keys["hold"])
            pipe.get(self._keys["error"])
            hold_ms, error = await pipe.execute()
        if hold_ms is None or hold_ms <= 0:
            return
        try:
            message = json.loads(error)["error"]
        except (TypeError, ValueError, KeyError):
            message = "the last refresh failed"
        raise TokenError(f"{message}; next refresh allowed in {math.ceil(hold_ms / 1000)} s")

    async def _fetch(self) -> tuple[str, float]:
        client = self._client
        form = {
            "grant_type": "refresh_token",
            "client_id": client.client_id,
            "client_secret": client.client_secret,
            "refresh_token": client.refresh_token,
        }
        try:
            reply = await self._http.request("POST", client.token_url, data=form, timeout=self._timeout_s)
        except HttpError as exc:
            raise await self._fail(f"token endpoint not reached ({exc})") from None
        try:
            body = json.loads(reply.text)
        except ValueError:
            body = None
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise await self._fail(self._refusal(reply.status_code, body))
        return token, _lifetime_s(body)  # type: ignore[arg-type]

    def _refusal(self, status: int, body: Any) -> str:
        if not isinstance(body, dict):
            return f"HTTP {status} from the token endpoint, not a JSON object"
        error = str(body.get("error") or "no access_token in the reply")
        description = body.get("error_description")
        return f"{error}: {description} (HTTP {status})" if description else f"{error} (HTTP {status})"

    async def _fail(self, reason: str) -> TokenError:
        """Record the failure and hold further refreshes; the error to raise."""
        message = self._scrub(f"OAuth token refresh for '{self._client.connector}' failed: {reason}")
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._keys["error"], json.dumps({"error": message, "at": time.time()}))
            if self._hold_ms > 0:
                pipe.set(self._keys["hold"], "1", px=self._hold_ms)
            await pipe.execute()
        log.warning("%s", message)
        return TokenError(message)

    def _scrub(self, text: str) -> str:
        # Zoho does not echo credentials today; this makes sure a future reply cannot either.
        for secret in (self._client.client_secret, self._client.refresh_token):
            if secret:
                text = text.replace(secret, "***")
        return text[:MESSAGE_CHARS]

    async def _store(self, access_token: str, lifetime_s: float) -> None:
        now = time.time()
        data = {"access_token": access_token, "expires_at": now + lifetime_s, "obtained_at": now}
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._keys["token"], json.dumps(data), px=max(1, int(lifetime_s * 1000)))
            pipe.delete(self._keys["error"], self._keys["hold"])
            pipe.incr(self._keys["refreshes"])
            refreshes = (await pipe.execute())[-1]
        connector = self._client.connector
        log.info("OAuth '%s': new access token, valid %.0f s (refresh %d)", connector, lifetime_s, refreshes)


async def oauth_status(redis: Redis, connector: str) -> dict[str, Any]:
    """For /health: is a token cached, for how long, how many refreshes, the last error."""
    keys = _keys(connector)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.pttl(keys["token"])
        pipe.get(keys["refreshes"])
        pipe.get(keys["error"])
        token_ms, refreshes, error = await pipe.execute()
    last_error = None
    if error:
        try:
            data = json.loads(error)
            last_error = {"error": str(data["error"]), "at": float(data["at"])}
        except (ValueError, KeyError, TypeError):
            last_error = {"error": "unreadable error record", "at": None}
    cached = token_ms is not None and token_ms > 0
    return {
        "token_cached": cached,
        "expires_in_s": token_ms / 1000 if cached else None,
        "refreshes": int(refreshes or 0),
        "last_error": last_error,
    }
