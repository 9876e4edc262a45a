"""One Redis call for many callers: what concurrent tasks ask for while a call is on its way
goes together in the next one.

An idle process makes each call at once (a batch of one); a busy one gathers hundreds per
call. Each caller waits for the call that holds its item, and gets its own result or the
call's error: nothing is answered before the call returns. Used for the API's event writes
(event_writer.py) and the rate limiter's leases (ratelimit.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Coalescer(Generic[Item, Result]):
    def __init__(self, call: Callable[[list[Item]], Awaitable[list[Result]]], max_batch: int) -> None:
        self._call = call  # one result per item, in order
        self._max_batch = max_batch
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._flushing = False

    async def submit(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._pending.append((item, future))
        if not self._flushing:
            self._flushing = True
            loop.create_task(self._flush())
        # A caller that is cancelled stops waiting; its item is sent all the same.
        return await future

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
                await self._send(batch)
        finally:
            self._flushing = False

    async def _send(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._call([item for item, _ in batch])
        except Exception as exc:  # every waiting caller learns of it; none is left hanging
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results):
            if not future.done():
                future.set_result(result)
