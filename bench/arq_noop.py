"""arq's own ceiling in the bench's Redis: N no-op jobs pre-enqueued on a queue of their own,
then one arq Worker (burst mode) with the engine's worker max_jobs and poll delay and its JSON
job serializer drains them. Run as a process of its own by bench/processing.py:

    python bench/arq_noop.py REDIS_URL JOBS MAX_JOBS POLL_S OUT_FILE

Writes {"jobs", "seconds", "cpu_s"} to OUT_FILE: seconds from the first job's start to the last
job's end, and the CPU this process used over the drain (enqueueing excluded).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from arq import Worker  # noqa: E402
from arq.connections import RedisSettings, create_pool  # noqa: E402
from arq.constants import job_key_prefix  # noqa: E402
from arq.jobs import serialize_job  # noqa: E402
from arq.worker import func  # noqa: E402

from engine import store  # noqa: E402

QUEUE = "bench:arq-noop"
CHUNK = 1000
MAX_S = 600.0

stamps: list[float] = []


async def noop(ctx: dict[str, Any], n: int) -> None:
    stamps.append(time.time())


async def enqueue(url: str, jobs: int) -> None:
    """The jobs as arq's enqueue_job writes them (job key + queue entry), pipelined."""
    redis = await create_pool(RedisSettings.from_dsn(url))
    try:
        now_ms = int(time.time() * 1000)
        for start in range(0, jobs, CHUNK):
            async with redis.pipeline(transaction=False) as pipe:
                for n in range(start, min(start + CHUNK, jobs)):
                    job_id = f"noop-{n}"
                    pipe.psetex(job_key_prefix + job_id, 86_400_000,
                                serialize_job("noop", (n,), {}, None, now_ms, serializer=store.job_serializer))
                    pipe.zadd(QUEUE, {job_id: now_ms})
                await pipe.execute()
    finally:
        await redis.aclose()


async def drain(url: str, max_jobs: int, poll_s: float) -> None:
    worker = Worker(functions=[func(noop, name="noop", keep_result=3600)], redis_settings=RedisSettings.from_dsn(url),
                    queue_name=QUEUE, max_jobs=max_jobs, poll_delay=poll_s, burst=True, handle_signals=False,
                    job_serializer=store.job_serializer, job_deserializer=store.job_deserializer)
    try:
        await asyncio.wait_for(worker.main(), MAX_S)
    finally:
        await worker.close()


def main() -> None:
    url, jobs, max_jobs, poll_s, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
    asyncio.run(enqueue(url, jobs))
    cpu_before = time.process_time()
    asyncio.run(drain(url, max_jobs, poll_s))
    seconds = max(stamps) - min(stamps) if len(stamps) > 1 else 0.0
    Path(out).write_text(json.dumps({"jobs": len(stamps), "seconds": seconds, "cpu_s": time.process_time() - cpu_before}))


if __name__ == "__main__":
    main()
