"""Jobs that meet a Redis blip are tried again, never failed.

arq treats an exception from a job as the end of it. When the exception is Redis being
unreachable for a moment (a restart, a failover), the job did nothing wrong: it is deferred and
run again, and the idempotent steps inside (the decision kept with the event, the job ids of
actions, the in-flight mark) make the second run safe.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from arq import Retry
from redis.exceptions import RedisError

from engine.store import CONSUMED_KEY

log = logging.getLogger("hookrules.worker")
T = TypeVar("T")
REDIS_RETRY_S = 2.0


def retry_on_redis_errors(job: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    @functools.wraps(job)
    async def wrapper(ctx: dict[str, Any], *args: Any) -> T:
        try:
            # "When did a worker last take a job": /ready reads it beside the queue's age.
            await ctx["redis"].set(CONSUMED_KEY, str(time.time()))
            return await job(ctx, *args)
        except (RedisError, ConnectionError) as exc:
            log.warning("%s: Redis was unreachable (%s); trying again in %g s", job.__name__, exc, REDIS_RETRY_S)
            raise Retry(defer=REDIS_RETRY_S) from exc

    return wrapper
