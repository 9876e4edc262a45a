"""engine/coalesce.py: concurrent callers' items go to Redis in shared calls, each caller gets its
own answer only once the call holding its item has returned, and one call is on its way at a
time."""

from __future__ import annotations

import asyncio

from engine.coalesce import Coalescer


class SlowCall:
    """Stands in for a Redis call: records each batch and how many calls overlapped."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.running = 0
        self.most_at_once = 0
        self.release = asyncio.Event()

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        await self.release.wait()
        self.running -= 1
        return [item * 10 for item in items]


def test_callers_share_calls_and_get_their_own_answers() -> None:
    async def scenario() -> None:
        call = SlowCall()
        coalescer: Coalescer[int, int] = Coalescer(call, max_batch=50)
        callers = [asyncio.create_task(coalescer.submit(n)) for n in range(100)]
        await asyncio.sleep(0.01)
        assert not any(c.done() for c in callers)  # nothing answered before its call returns
        call.release.set()
        assert await asyncio.gather(*callers) == [n * 10 for n in range(100)]
        assert call.most_at_once == 1
        assert sorted(n for batch in call.batches for n in batch) == list(range(100))
        assert len(call.batches) < 100  # shared calls, not one per caller

    asyncio.run(scenario())


def test_a_failed_call_fails_each_of_its_callers_and_not_the_next_call() -> None:
    async def scenario() -> None:
        failing = True

        async def call(items: list[int]) -> list[int]:
            await asyncio.sleep(0)
            if failing:
                raise ConnectionError("Redis went away")
            return items

        coalescer: Coalescer[int, int] = Coalescer(call, max_batch=10)
        results = await asyncio.gather(*(coalescer.submit(n) for n in range(5)), return_exceptions=True)
        assert all(isinstance(r, ConnectionError) for r in results)
        failing = False
        assert await coalescer.submit(7) == 7

    asyncio.run(scenario())
