"""A worker's reader of the event queue: takes batches, has them decided and acted on, and
acknowledges them. Runs beside arq's own loop in the worker process (arq runs the retries of
actions, scheduled scans and dead-letter replays).

- Up to HOOKRULES_WORKER_BATCHES batches of HOOKRULES_WORKER_BATCH events are worked on at
  once: while one batch waits on HTTP replies, the next is read and decided.
- Every few seconds it takes over the events another worker has held unacknowledged for longer
  than HOOKRULES_JOB_TIMEOUT + 10 s: that worker died.
- On start it first finishes the events it held before a Redis outage restarted it.
- On SIGTERM it stops reading, lets running batches finish for HOOKRULES_SHUTDOWN_WAIT, and puts
  what is left back on the queue for the other workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from engine import event_queue, store
from workers.batch import Taken, decide_all, load, order_wait_s, resume, take_turns
from workers.first_try import send_first_tries

log = logging.getLogger("hookrules.worker")
CLAIM_EVERY_S = 5.0
BLOCK_MS = 200  # how long one read waits for new events; also how soon a stop is noticed
REDIS_PAUSE_S = 2.0


class EventConsumer:
    def __init__(self, ctx: dict[str, Any]) -> None:
        self.ctx = ctx
        self.name: str = ctx["worker_id"]
        self.settings = ctx["settings"]
        self.tasks: dict[asyncio.Task[None], list[tuple[str, str]]] = {}
        # Batches in which nothing can go now: each of their events waits for an earlier event
        # of its entity that is elsewhere (handed back to the stream's end by a stopping
        # worker, or held by one that died). They do not count against
        # HOOKRULES_WORKER_BATCHES, or a worker whose every slot waits would never read as far
        # as the events they wait for.
        self.waiting: set[asyncio.Task[None]] = set()
        self._slot_changed = asyncio.Event()
        self.stopping = False
        self.stopped_at = 0.0

    @property
    def claim_idle_ms(self) -> int:
        return (self.settings.job_timeout_s + 10) * 1000

    async def run(self) -> None:
        redis = self.ctx["redis"]
        last_claim = 0.0
        started = False
        while not self.stopping:
            try:
                if not started:
                    await event_queue.ensure_group(redis)
                    await self._resume_own()
                    started = True
                if time.monotonic() - last_claim > CLAIM_EVERY_S:
                    last_claim = time.monotonic()
                    # Looked for even when every batch slot is busy, and started beyond
                    # HOOKRULES_WORKER_BATCHES: the busy slots may all be batches waiting for
                    # these very events (earlier events of their entities, held by a worker
                    # that died), which nothing else would ever take over.
                    if claimed := await event_queue.claim_stale(redis, self.name, self.claim_idle_ms, self.settings.worker_batch):
                        log.info("took over %d event(s) a stopped worker had left", len(claimed))
                        self._start(claimed)
                        continue
                if len(self.tasks) - len(self.waiting) >= self.settings.worker_batches:
                    self._slot_changed.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._slot_changed.wait(), timeout=CLAIM_EVERY_S)
                    continue
                if entries := await event_queue.read_new(redis, self.name, self.settings.worker_batch, BLOCK_MS):
                    self._start(entries)
            except (RedisError, OSError) as exc:
                log.warning("event queue: Redis is unreachable (%s); reading again in %g s", exc, REDIS_PAUSE_S)
                await asyncio.sleep(REDIS_PAUSE_S)

    async def _resume_own(self) -> None:
        """What this process held when Redis went away and its worker was started again."""
        own = await event_queue.read_own_pending(self.ctx["redis"], self.name, 10_000)
        for start in range(0, len(own), self.settings.worker_batch):
            self._start(own[start:start + self.settings.worker_batch])

    def _start(self, entries: list[tuple[str, str]]) -> None:
        task = asyncio.get_running_loop().create_task(self._work(entries))
        self.tasks[task] = entries
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.pop(task, None)
        self.waiting.discard(task)
        self._slot_changed.set()

    def _waits(self, waiting: bool) -> None:
        """Called by the running batch: whether all it holds is waiting for earlier events."""
        task = asyncio.current_task()
        if task is None or task not in self.tasks:
            return
        if waiting and task not in self.waiting:
            self.waiting.add(task)
            self._slot_changed.set()
        elif not waiting:
            self.waiting.discard(task)

    async def _work(self, entries: list[tuple[str, str]]) -> None:
        """One batch, tried again while Redis is away; a batch that fails otherwise (a defect)
        is split up, so one bad event cannot hold the others back."""
        while True:
            try:
                await work_on(self.ctx, self.name, entries, self._waits)
                return
            except (RedisError, OSError) as exc:
                if self.stopping:
                    return  # left pending: handed back on close, or taken over later
                log.warning("batch of %d: Redis is unreachable (%s); trying again in %g s", len(entries), exc, REDIS_PAUSE_S)
                await asyncio.sleep(REDIS_PAUSE_S)
            except Exception:
                if len(entries) == 1:
                    await give_up(self.ctx["redis"], entries[0])
                    return
                log.exception("a batch of %d events failed; working on them one by one", len(entries))
                for entry in entries:
                    await self._work([entry])
                return

    def stop(self) -> None:
        """Stop reading new events (SIGTERM); batches already taken go on."""
        if not self.stopping:
            self.stopping, self.stopped_at = True, time.monotonic()

    async def drain(self, wait_s: float) -> None:
        """Stop reading; let running batches finish until `wait_s` after the stop began, so
        the whole stop takes HOOKRULES_SHUTDOWN_WAIT once, not once per step."""
        self.stop()
        left = wait_s - (time.monotonic() - self.stopped_at)
        if self.tasks and left > 0:
            await asyncio.wait(set(self.tasks), timeout=left)

    async def close(self) -> None:
        """Cancel what is still running and put its events back on the queue."""
        self.stopping = True
        left = [entry for entries in self.tasks.values() for entry in entries]
        tasks = running = set(self.tasks)
        # Cancelled again until they end: Python 3.11's asyncio.timeout can swallow a cancel
        # that meets its own deadline, and a batch that goes on after it would keep the worker
        # from stopping (and act on events handed back to others).
        for _ in range(100):
            if not running:
                break
            for task in running:
                task.cancel()
            _, running = await asyncio.wait(running, timeout=0.1)
        if running:
            log.warning("%d batch(es) did not stop when cancelled; their events are handed back all the same", len(running))
        await asyncio.gather(*(tasks - running), return_exceptions=True)
        if left:
            try:
                await event_queue.hand_back(self.ctx["redis"], left)
                log.info("handed back %d unfinished event(s) to the queue", len(left))
            except (RedisError, OSError) as exc:
                log.warning("could not hand back %d event(s) (%s); another worker takes them over later", len(left), exc)


async def work_on(ctx: dict[str, Any], consumer: str, entries: list[tuple[str, str]],
                  waits: Callable[[bool], None] = lambda _: None) -> None:
    """Decide and act on a batch of entries, each entity's events in arrival order. An event
    whose entity has an earlier event elsewhere waits for it, looking again a few times a
    second, less often the longer nothing can go; `waits(True)` says the whole batch waits."""
    redis, settings = ctx["redis"], ctx["settings"]
    taken, gone = await load(redis, entries)
    already = [t for t in taken if t.status == "decided"]
    await resume(redis, settings, already)
    await event_queue.acknowledge(redis, gone + [t.entry_id for t in taken if t.status != "queued"])
    queued = [t for t in taken if t.status == "queued"]
    order_wait, idle_rounds = order_wait_s(settings), 0
    while queued:
        ready, queued = await take_turns(redis, queued, time.time(), order_wait)
        if ready:
            waits(False)
            idle_rounds = 0
            await act_on(ctx, ready)
        if queued:
            await event_queue.keep_claimed(redis, consumer, [t.entry_id for t in queued])
            if not ready:
                waits(True)
                idle_rounds += 1
            # 0.05-0.2 s, up to 8x that while nothing goes: waiting batches may be many.
            await asyncio.sleep(random.uniform(0.05, 0.2) * min(2 ** (idle_rounds // 5), 8))


async def act_on(ctx: dict[str, Any], ready: list[Taken]) -> None:
    decided = await decide_all(ctx, ready)
    tries = await send_first_tries(ctx, decided)
    await event_queue.acknowledge(ctx["redis"], [t.entry_id for t in ready])
    for d in decided:
        # One line per event, its actions' first tries included: a line per action as well
        # cost as much as deciding.
        matched = [r.rule_id for r in d.decision.results if r.matched]
        sendable = [a for a in d.decision.actions if a.request is not None]
        actions = tries.get(d.event.id) or ([f"{len(sendable)} not sent"] if sendable else [])
        # What an admin must fix shows as a warning: a condition that could not be evaluated,
        # an action that could not be built (a template reading a field that is not there).
        problems = [f"rule {r.rule_id} failed: {r.error}" for r in d.decision.results if r.error]
        problems += [f"{a.key} could not be built: {a.error}" for a in d.decision.actions + d.decision.shadowed if a.request is None]
        log.log(logging.WARNING if problems else logging.INFO, "event %s (%s %s): matched %s%s",
                d.event.id, d.event.source, d.event.type, matched,
                "".join("; " + part for part in ([", ".join(actions)] if actions else []) + problems),
                extra={"event_id": d.event.id, "source": d.event.source, "rule_id": ",".join(matched) or None,
                       "action": ",".join(sorted({a.action for a in d.decision.actions})) or None})


async def give_up(redis: Any, entry: tuple[str, str]) -> None:
    """An event that fails to be decided for a reason other than Redis (a defect): recorded as
    failed on its record, with the error, and taken off the queue."""
    entry_id, event_id = entry
    log.exception("event %s could not be decided; it is marked failed", event_id, extra={"event_id": event_id})
    error = "could not be decided (an internal error; see the worker's log)"
    await redis.hset(store.EVENT_PREFIX + event_id, mapping={"status": "failed", "error": json.dumps(error)})
    await event_queue.acknowledge(redis, [entry_id])
