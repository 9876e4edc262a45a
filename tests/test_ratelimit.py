"""Per-connector limits shared through the real server: several Limiters with their own
connections stand for several workers. Timings are checked from below only (at least ~70% of
the ideal), never against a wall-clock ceiling that a slow machine could break."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio as aioredis

from conftest import with_db
from engine.ratelimit import Limiter, Limits, RateLimited, limiter_status


@pytest.fixture
def url(redis_url: str) -> Iterator[str]:
    url = with_db(redis_url, 5)
    plain = redis.Redis.from_url(url)
    plain.flushdb()
    yield url
    plain.flushdb()
    plain.close()


@contextlib.asynccontextmanager
async def limiters(url: str, limits: Limits, n: int = 1, *, lease_s: float = 60) -> AsyncIterator[list[Limiter]]:
    """n limiters for connector "sdp", each with its own Redis connection, as n workers have."""
    clients = [aioredis.Redis.from_url(url) for _ in range(n)]
    try:
        yield [Limiter(client, "sdp", limits, lease_s=lease_s) for client in clients]
    finally:
        for client in clients:
            await client.aclose()


async def status(url: str) -> dict:
    client = aioredis.Redis.from_url(url)
    try:
        return await limiter_status(client, "sdp")
    finally:
        await client.aclose()


FAST = dict(per_second=1000.0, burst=100)  # the rate out of the way, to test concurrency alone


def test_no_more_requests_in_flight_than_max_concurrent(url: str) -> None:
    in_flight = peak = 0
    seen: list[int] = []

    async def request(limiter: Limiter) -> None:
        nonlocal in_flight, peak
        async with limiter.slot(max_wait_s=10):
            in_flight += 1
            peak = max(peak, in_flight)
            seen.append((await status(url))["in_flight"])
            await asyncio.sleep(0.1)
            in_flight -= 1

    async def scenario() -> tuple[float, dict]:
        async with limiters(url, Limits(max_concurrent=2, **FAST), 6) as workers:
            started = time.monotonic()
            await asyncio.gather(*(request(worker) for worker in workers))
            return time.monotonic() - started, await status(url)

    elapsed, after = asyncio.run(scenario())
    assert peak == 2 and len(seen) == 6 and max(seen) <= 2
    assert elapsed >= 0.7 * 0.3  # six requests of 0.1 s, two at a time
    assert after == {"in_flight": 0, "paused_for_s": 0.0}


def test_one_process_asks_for_its_concurrent_slots_together(url: str) -> None:
    in_flight = peak = 0

    async def request(limiter: Limiter) -> None:
        nonlocal in_flight, peak
        async with limiter.slot(max_wait_s=10):
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.02)
            in_flight -= 1

    async def burst(max_concurrent: int) -> tuple[int, int, dict]:
        nonlocal peak
        peak = 0
        async with limiters(url, Limits(max_concurrent=max_concurrent, **FAST)) as (worker,):
            calls = 0
            ask = worker._acquire_script

            async def counted(*args: object, **kwargs: object) -> object:
                nonlocal calls
                calls += 1
                return await ask(*args, **kwargs)

            worker._acquire_script = counted  # type: ignore[assignment]
            await asyncio.gather(*(request(worker) for _ in range(50)))
            return calls, peak, await status(url)

    # 50 requests at once within the limit: one call asks for all of them.
    calls, top, after = asyncio.run(burst(50))
    assert calls == 1 and top == 50 and after == {"in_flight": 0, "paused_for_s": 0.0}
    # Over the limit, the asks judged together in one call still grant no more than it.
    calls, top, after = asyncio.run(burst(40))
    assert top == 40 and after == {"in_flight": 0, "paused_for_s": 0.0}


def test_requests_follow_the_rate(url: str) -> None:
    entered: list[float] = []

    async def request(limiter: Limiter) -> None:
        async with limiter.slot(max_wait_s=10):
            entered.append(time.monotonic())

    async def scenario() -> float:
        async with limiters(url, Limits(max_concurrent=100, per_second=20), 3) as workers:
            started = time.monotonic()
            await asyncio.gather(*(request(workers[i % 3]) for i in range(30)))
            return started

    started = asyncio.run(scenario())
    ideal_s = 29 / 20  # the first goes at once, each next one 1/20 s later
    assert len(entered) == 30
    assert max(entered) - started >= 0.7 * ideal_s
    # Spread out, not bunched at the end: the middle request did not go before its time either.
    assert sorted(entered)[15] - started >= 0.7 * 15 / 20


def test_burst_goes_at_once_then_the_rate_applies(url: str) -> None:
    async def scenario() -> RateLimited:
        async with limiters(url, Limits(max_concurrent=10, per_second=1, burst=5)) as (limiter,):
            for _ in range(5):
                async with limiter.slot(max_wait_s=0):
                    pass
            with pytest.raises(RateLimited) as caught:
                async with limiter.slot(max_wait_s=0):
                    pass
            return caught.value

    limited = asyncio.run(scenario())
    assert 0.2 < limited.retry_after_s <= 1.0  # the sixth's turn is 1 s after the first
    assert "sdp" in str(limited)


def test_rate_limited_when_max_wait_is_too_short(url: str) -> None:
    async def scenario() -> tuple[float, float]:
        async with limiters(url, Limits(max_concurrent=10, per_second=2)) as (limiter,):
            async with limiter.slot(max_wait_s=0):
                pass
            started = time.monotonic()
            with pytest.raises(RateLimited) as caught:
                async with limiter.slot(max_wait_s=0.1):
                    pass
            async with limiter.slot(max_wait_s=2):  # the refusal did not use up the next turn
                waited = time.monotonic() - started
            return caught.value.retry_after_s, waited

    retry_after_s, waited = asyncio.run(scenario())
    assert 0.1 < retry_after_s <= 0.5  # the next turn is 0.5 s after the first request
    assert waited >= 0.7 * 0.5


def test_rate_limited_when_all_slots_stay_busy(url: str) -> None:
    async def scenario() -> tuple[RateLimited, float]:
        async with limiters(url, Limits(max_concurrent=1, **FAST), 2) as (holder, other):
            async with holder.slot(max_wait_s=0):
                started = time.monotonic()
                with pytest.raises(RateLimited) as caught:
                    async with other.slot(max_wait_s=0.2):
                        pass
                return caught.value, time.monotonic() - started

    limited, waited = asyncio.run(scenario())
    assert waited >= 0.2 * 0.9  # it did wait for a slot to free
    assert 0 < limited.retry_after_s <= 1.0


def test_pause_holds_every_worker_off(url: str) -> None:
    async def scenario() -> tuple[dict, RateLimited, float]:
        async with limiters(url, Limits(max_concurrent=10, **FAST), 2) as (paused_by, other):
            started = time.monotonic()
            await paused_by.pause(0.5)
            during = await status(url)
            with pytest.raises(RateLimited) as caught:
                async with other.slot(max_wait_s=0.1):
                    pass
            async with other.slot(max_wait_s=2):
                return during, caught.value, time.monotonic() - started

    during, limited, waited = asyncio.run(scenario())
    assert 0 < during["paused_for_s"] <= 0.5
    assert 0.1 < limited.retry_after_s <= 0.5 and "429" in str(limited)
    assert waited >= 0.5 * 0.9


def test_pause_is_never_shortened(url: str) -> None:
    async def scenario() -> list[float]:
        async with limiters(url, Limits(max_concurrent=10, **FAST)) as (limiter,):
            await limiter.pause(2)
            await limiter.pause(0.1)  # a later 429 with a shorter Retry-After
            shorter = (await status(url))["paused_for_s"]
            await limiter.pause(3)
            return [shorter, (await status(url))["paused_for_s"]]

    shorter, longer = asyncio.run(scenario())
    assert shorter > 1.0 and longer > 2.0


def test_pause_during_a_wait_for_the_rate_still_holds(url: str) -> None:
    # The second request's turn (0.5 s on) was reserved before the 429: it waits for the pause.
    async def scenario() -> float:
        async with limiters(url, Limits(max_concurrent=10, per_second=2), 2) as (limiter, other):
            async with limiter.slot(max_wait_s=0):
                pass

            async def second() -> float:
                async with limiter.slot(max_wait_s=5):
                    return time.monotonic()

            waiting = asyncio.create_task(second())
            await asyncio.sleep(0.1)
            paused_at = time.monotonic()
            await other.pause(1.0)
            return await waiting - paused_at

    assert asyncio.run(scenario()) >= 1.0 * 0.9


def test_a_crashed_holders_slot_frees_after_its_lease(url: str) -> None:
    limits = Limits(max_concurrent=2, **FAST)

    async def scenario() -> tuple[int, float, int]:
        async with limiters(url, limits, lease_s=0.3) as (crashed,), limiters(url, limits, 2) as (alive, other):
            # Entered and never left: the worker died. (Kept referenced: a context manager
            # collected as garbage would still leave, through asyncio's async generator hooks.)
            dead = crashed.slot(max_wait_s=0)
            await dead.__aenter__()
            started = time.monotonic()  # its lease runs from here
            async with alive.slot(max_wait_s=0):  # a live holder keeps the other slot meanwhile
                held = (await status(url))["in_flight"]
                async with other.slot(max_wait_s=3):
                    waited = time.monotonic() - started
                    inside = (await status(url))["in_flight"]
            del dead
            return held, waited, inside

    held, waited, inside = asyncio.run(scenario())
    assert held == 2 and waited >= 0.3 * 0.7 and inside == 2


def test_cancelled_inside_the_slot_releases_it(url: str) -> None:
    async def scenario() -> tuple[int, int]:
        async with limiters(url, Limits(max_concurrent=1, **FAST), 2) as (limiter, other):
            inside = asyncio.Event()

            async def stuck() -> None:
                async with limiter.slot(max_wait_s=0):
                    inside.set()
                    await asyncio.sleep(60)

            task = asyncio.create_task(stuck())
            await inside.wait()
            held = (await status(url))["in_flight"]
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            async with other.slot(max_wait_s=0):  # free at once, not after the 60 s lease
                pass
            return held, (await status(url))["in_flight"]

    assert asyncio.run(scenario()) == (1, 0)


def test_cancelled_while_waiting_for_its_turn_releases_the_slot(url: str) -> None:
    async def scenario() -> tuple[int, int]:
        async with limiters(url, Limits(max_concurrent=1, per_second=1)) as (limiter,):
            async with limiter.slot(max_wait_s=0):
                pass
            # Granted, but its turn is 1 s away: it holds the slot while it waits.
            task = asyncio.create_task(limiter.slot(max_wait_s=5).__aenter__())
            await asyncio.sleep(0.2)
            waiting = (await status(url))["in_flight"]
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return waiting, (await status(url))["in_flight"]

    assert asyncio.run(scenario()) == (1, 0)


def test_an_exception_inside_the_slot_releases_it(url: str) -> None:
    async def scenario() -> int:
        async with limiters(url, Limits(max_concurrent=1, **FAST)) as (limiter,):
            with pytest.raises(ValueError):
                async with limiter.slot(max_wait_s=0):
                    raise ValueError("the request failed")
            return (await status(url))["in_flight"]

    assert asyncio.run(scenario()) == 0


@pytest.mark.parametrize("limits", [dict(max_concurrent=0, per_second=1), dict(max_concurrent=1, per_second=0),
                                    dict(max_concurrent=1, per_second=1, burst=0)])
def test_limits_must_be_positive(limits: dict) -> None:
    with pytest.raises(ValueError):
        Limits(**limits)
