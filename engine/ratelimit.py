"""Per-connector request limits, shared by every worker through Redis.

Three things hold a request back, all checked in one Lua script so that every worker sees the
same state and the same clock (Redis' `TIME`, not each worker's):
- a pause, after the target answered 429 with Retry-After;
- the concurrency: a sorted set of leases, member a random id, score the lease's expiry; a
  worker that dies inside a slot loses it when its lease expires (lease_s);
- the rate, by GCRA: one key holds the theoretical arrival time (TAT) of the next request.

When only the rate is in the way, the script grants the slot at once and reserves the next
free instant for it: the caller sleeps until then, holding its lease. Waiters therefore wake
one at a time, in order, instead of all polling for the same instant.

Keys, `<c>` being the connector:
- `hookrules:ratelimit:<c>:leases`: sorted set, lease id -> expiry (microseconds, Redis time)
- `hookrules:ratelimit:<c>:tat`: the GCRA theoretical arrival time (microseconds, Redis time)
- `hookrules:ratelimit:<c>:pause`: present while every worker holds off this connector
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from engine.coalesce import Coalescer

KEY_PREFIX = "hookrules:ratelimit:"
LEASES_KEY = KEY_PREFIX + "{connector}:leases"
TAT_KEY = KEY_PREFIX + "{connector}:tat"
PAUSE_KEY = KEY_PREFIX + "{connector}:pause"

# While all slots are taken, how often to look again: the first look is soon (requests are
# short), later ones back off so hundreds of waiting jobs do not flood Redis.
POLL_FIRST_S = 0.01
POLL_MAX_S = 0.25
# How long until a concurrency slot is likely free cannot be known (it frees when some request
# ends); a caller told to retry is told this, or sooner when the earliest lease expires sooner.
BUSY_RETRY_S = 1.0

GRANTED, PAUSED, BUSY, TOO_FAST = 0, 1, 2, 3
MAX_BATCH = 200  # leases asked for in one script call

# KEYS: leases, tat, pause. ARGV: lease µs, max concurrent, emission interval µs, burst
# tolerance µs, then a lease id and the longest acceptable wait µs per request: the concurrent
# requests of one process ask together, in one call, and are judged in order.
# Returns per request {GRANTED, µs to sleep before sending} or {PAUSED | BUSY | TOO_FAST, µs to wait}.
ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local results = {}
local pause_ms = redis.call('PTTL', KEYS[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local granted = false
for i = 5, #ARGV, 2 do
  if pause_ms > 0 then
    results[#results + 1] = {1, pause_ms * 1000}
  elseif redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
    local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    results[#results + 1] = {2, math.max(0, tonumber(first[2]) - now)}
  else
    local tat = tonumber(redis.call('GET', KEYS[2]) or 0)
    if tat < now then tat = now end
    local wait = math.max(0, tat - tonumber(ARGV[4]) - now)
    if wait > tonumber(ARGV[i + 1]) then
      results[#results + 1] = {3, wait}
    else
      tat = tat + tonumber(ARGV[3])
      redis.call('SET', KEYS[2], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
      redis.call('ZADD', KEYS[1], string.format('%.0f', now + wait + tonumber(ARGV[1])), ARGV[i])
      granted = true
      results[#results + 1] = {0, wait}
    end
  end
end
if granted then
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  redis.call('PEXPIRE', KEYS[1], math.ceil((tonumber(last[2]) - now) / 1000) + 1000)
end
return results
"""

# Never shortens a pause: a second 429 with a shorter Retry-After must not end the first.
PAUSE_LUA = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return redis.call('PTTL', KEYS[1])
"""

# KEYS: leases, pause. Returns {leases not yet expired, pause ms left}.
STATUS_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
return {redis.call('ZCOUNT', KEYS[1], '(' .. string.format('%.0f', now), '+inf'), redis.call('PTTL', KEYS[2])}
"""


@dataclass(frozen=True)
class Limits:
    max_concurrent: int  # requests in flight at once to this connector, across all workers
    per_second: float  # sustained request rate
    burst: int = 1  # requests allowed back to back before the rate applies

    def __post_init__(self) -> None:
        if self.max_concurrent < 1 or self.burst < 1 or not self.per_second > 0:
            raise ValueError(f"limits must be positive, max_concurrent and burst at least 1: {self}")


class RateLimited(Exception):
    """No slot within the caller's max_wait_s. The message names the connector and the cause."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(f"{message}; try again in {retry_after_s:.2f} s")
        self.retry_after_s = retry_after_s  # how long until a slot is likely free


def _keys(connector: str) -> list[str]:
    return [key.format(connector=connector) for key in (LEASES_KEY, TAT_KEY, PAUSE_KEY)]


class Limiter:
    def __init__(self, redis: Redis, connector: str, limits: Limits, *, lease_s: float = 60) -> None:
        self._redis = redis
        self._connector = connector
        self._limits = limits
        # Longer than any request may take (the HTTP timeout): a lease that runs out while its
        # request is still in flight lets one more in than max_concurrent.
        self._lease_us = int(lease_s * 1_000_000)
        self._leases, self._tat, self._pause = _keys(connector)
        self._acquire_script = redis.register_script(ACQUIRE_LUA)
        self._pause_script = redis.register_script(PAUSE_LUA)
        # Concurrent requests of this process ask for and give back their leases together.
        self._asks: Coalescer[tuple[str, int], tuple[int, float]] = Coalescer(self._ask_all, MAX_BATCH)
        self._returns: Coalescer[str, None] = Coalescer(self._return_all, MAX_BATCH)

    @contextlib.asynccontextmanager
    async def slot(self, max_wait_s: float) -> AsyncIterator[None]:
        """Wait for a concurrency slot and the rate; RateLimited if that takes over max_wait_s.
        The slot is released on leaving, whatever the way out."""
        lease = await self._acquire(max_wait_s)
        try:
            yield
        finally:
            await self._release(lease)

    async def pause(self, seconds: float) -> None:
        """Every worker holds off this connector for `seconds` (a 429's Retry-After)."""
        if seconds > 0:
            await self._pause_script(keys=[self._pause], args=[math.ceil(seconds * 1000)])

    async def _acquire(self, max_wait_s: float) -> str:
        deadline = time.monotonic() + max_wait_s
        poll_s = POLL_FIRST_S
        while True:
            budget_s = max(0.0, deadline - time.monotonic())
            lease = uuid.uuid4().hex
            try:
                kind, wait_s = await self._try(lease, budget_s)
            except BaseException:
                await self._release(lease)  # cancelled after the script may have granted it
                raise
            if kind == GRANTED:
                if wait_s <= 0 or await self._sleep_holding(lease, wait_s):
                    return lease
            elif kind == BUSY:
                if budget_s <= 0:
                    raise RateLimited(f"'{self._connector}': all slots in use", min(wait_s, BUSY_RETRY_S))
                await asyncio.sleep(min(poll_s * random.uniform(0.5, 1.0), wait_s, budget_s))
                poll_s = min(POLL_MAX_S, poll_s * 2)
            elif wait_s > budget_s:
                cause = "paused after a 429" if kind == PAUSED else "at its request rate"
                raise RateLimited(f"'{self._connector}': {cause}", wait_s)
            else:
                await asyncio.sleep(wait_s)

    async def _try(self, lease: str, budget_s: float) -> tuple[int, float]:
        return await self._asks.submit((lease, int(budget_s * 1_000_000)))

    async def _ask_all(self, asks: list[tuple[str, int]]) -> list[tuple[int, float]]:
        limits = self._limits
        interval_us = 1_000_000 / limits.per_second
        tolerance_us = (limits.burst - 1) * interval_us
        args: list[Any] = [self._lease_us, limits.max_concurrent, interval_us, tolerance_us]
        for lease, budget_us in asks:
            args += [lease, budget_us]
        replies = await self._acquire_script(keys=[self._leases, self._tat, self._pause], args=args)
        return [(int(kind), int(wait_us) / 1_000_000) for kind, wait_us in replies]

    async def _return_all(self, leases: list[str]) -> list[None]:
        await self._redis.zrem(self._leases, *leases)
        return [None] * len(leases)

    async def _sleep_holding(self, lease: str, wait_s: float) -> bool:
        """Sleep until our reserved instant, holding the lease. False (lease released) when a
        pause began meanwhile: the reservation predates the 429, so queue again."""
        try:
            await asyncio.sleep(wait_s)
            if await self._redis.pttl(self._pause) <= 0:
                return True
        except BaseException:
            await self._release(lease)
            raise
        await self._release(lease)
        return False

    async def _release(self, lease: str) -> None:
        # Shielded: a second cancellation while releasing must not leave the lease to expire.
        await asyncio.shield(self._returns.submit(lease))


async def limiter_status(redis: Redis, connector: str) -> dict[str, Any]:
    """For /health: requests in flight to this connector, and how long it is still paused."""
    leases, _, pause = _keys(connector)
    in_flight, pause_ms = await redis.register_script(STATUS_LUA)(keys=[leases, pause])
    return {"in_flight": int(in_flight), "paused_for_s": max(0, int(pause_ms)) / 1000}
