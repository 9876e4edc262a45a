"""How a worker is built: arq's Worker with hookrules' jobs, tuned settings and start-up.

`build_worker(settings, ruleset)` is what `hookrules worker` runs. There is no module-level
WorkerSettings class for arq's own CLI on purpose: it would read the environment and the rule
files at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from dataclasses import replace
from typing import Any

from arq import Worker
from arq.worker import func
from arq.constants import in_progress_key_prefix
from redis.exceptions import RedisError

from engine import event_queue, store
from engine.config import Settings
from engine.http_client import HttpClient
from engine.reload import RulesReloader
from engine.schedule import due_tick, scan_job_id
from engine.rules import Ruleset
from engine.sending import Sender
from workers.action_job import run_action
from workers.consumer import EventConsumer
from workers.jobs import process_event, replay_action, scan_rule

log = logging.getLogger("hookrules.worker")
SCHEDULE_POLL_S = 5.0
CONSUMER_IDLE_MS = 24 * 3600 * 1000  # a stopped worker's name leaves the event stream's group after a day


async def _beat(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    while True:
        try:
            await store.write_heartbeat(ctx["redis"], ctx["worker_id"], settings.heartbeat_s, ctx["rules"].ruleset.version)
            await store.trim_events(ctx["redis"])
            await event_queue.forget_idle_consumers(ctx["redis"], CONSUMER_IDLE_MS)
        except Exception as exc:  # Redis away for a moment: the next beat tries again
            log.warning("heartbeat not written: %s", exc)
        await asyncio.sleep(settings.heartbeat_s)


async def _schedule(ctx: dict[str, Any]) -> None:
    """Enqueue each scheduled rule's due tick. Every worker does this; the job id (rule and
    tick) makes arq queue each tick once, whichever worker gets there first."""
    settings: Settings = ctx["settings"]
    while True:
        for rule in ctx["rules"].ruleset.rules:
            if rule.schedule is None or rule.mode == "off":
                continue
            tick = due_tick(rule.schedule, time.time(), settings.schedule_catchup_s)
            if tick is None:
                continue
            try:
                await ctx["redis"].enqueue_job("scan_rule", rule.id, tick, _job_id=scan_job_id(rule.id, tick))
            except Exception as exc:  # Redis away for a moment: the next round tries again
                log.warning("scheduling %s: %s", rule.id, exc)
        await asyncio.sleep(SCHEDULE_POLL_S)


async def _hand_back(ctx: dict[str, Any]) -> None:
    """Jobs this process was running when Redis went away: let any worker take them now."""
    abandoned = ctx.get("abandoned") or []
    if abandoned:
        await ctx["redis"].delete(*(in_progress_key_prefix + job_id for job_id in abandoned))
        log.info("handed back %d job(s) interrupted by the Redis outage", len(abandoned))


async def on_startup(ctx: dict[str, Any]) -> None:
    await _hand_back(ctx)
    settings: Settings = ctx["settings"]
    # As many kept-alive connections as jobs at once: a new TLS handshake per action is slow.
    # It is also the most open at once; a request beyond it waits for one within its timeout.
    ctx["http"] = HttpClient(max_connections=settings.worker_max_jobs)
    ctx["sender"] = replace(Sender.create(ctx["redis"], ctx["http"], settings.targets), deadline_s=send_deadline(settings))
    ctx["heartbeat"] = asyncio.create_task(_beat(ctx))
    ctx["rule_watcher"] = asyncio.create_task(ctx["rules"].watch(settings.reload_s))
    ctx["scheduler"] = asyncio.create_task(_schedule(ctx))
    # First tries of all batches together send at most HOOKRULES_WORKER_CONCURRENCY at once.
    ctx["send_gate"] = asyncio.Semaphore(settings.worker_max_jobs)
    ctx["consumer"] = EventConsumer(ctx)
    ctx["consuming"] = asyncio.create_task(ctx["consumer"].run())


async def on_shutdown(ctx: dict[str, Any]) -> None:
    consumer: EventConsumer | None = ctx.get("consumer")
    if consumer is None:
        # on_startup never ran: Redis failed arq's first call (still loading its data after a
        # restart, say). Nothing was started; run_worker starts a new worker after a pause.
        return
    await consumer.drain(ctx["settings"].shutdown_wait_s)
    await consumer.close()
    for task in (ctx["consuming"], ctx["heartbeat"], ctx["rule_watcher"], ctx["scheduler"]):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await ctx["http"].aclose()


def worker_options(settings: Settings, ruleset: Ruleset) -> dict[str, Any]:
    if not settings.redis_url:
        raise ValueError("REDIS_URL is not set")
    return {
        # process_event's result would hold the whole event again for as long as results are
        # kept; the event record already guards against resends, so an hour is plenty.
        # scan_rule's result marks its tick as done: kept well past the catch-up window.
        "functions": [func(process_event, keep_result=3600), run_action, func(scan_rule, keep_result=2 * 24 * 3600),
                      replay_action],
        # The client the API makes from the same REDIS_URL (engine/store.py), not arq's own
        # parsing of it, which neither decodes %-escapes in a password nor reads a rediss://
        # URL's TLS options: one REDIS_URL means the same server, the same way, everywhere.
        "redis_pool": store.connect(settings.redis_url),
        "job_serializer": store.job_serializer,
        "job_deserializer": store.job_deserializer,
        "queue_name": store.QUEUE,
        # arq's defaults (10 jobs at once, a poll every 0.5 s) gave 30 actions/s end to end in
        # bench/run.py, these 7x that: jobs here mostly wait on HTTP, so many at once and a
        # short poll cost little.
        "max_jobs": settings.worker_max_jobs,
        "poll_delay": settings.worker_poll_s,
        # run_action enforces HOOKRULES_MAX_TRIES (requests sent) and
        # HOOKRULES_ACTION_MAX_WAIT (time spent waiting); arq's own count includes every
        # deferral, so it must never be what stops a job.
        "max_tries": 1_000_000,
        # Longer than a send may take (see send_deadline), so a job is never cut off by arq
        # with nothing recorded. It also bounds how soon a job whose worker was killed is
        # picked up again: arq hands it back after job_timeout + 10 s.
        "job_timeout": settings.job_timeout_s,
        # On SIGTERM: stop taking jobs, let running ones finish this long, then cancel them;
        # a cancelled job stays queued and another worker (or this one, restarted) runs it.
        "job_completion_wait": settings.shutdown_wait_s,
        # Results double as the "already done" mark for action jobs (job id event:rule:n):
        # keep them as long as the event record.
        "keep_result": settings.event_ttl_s,
        "health_check_interval": settings.heartbeat_s,
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "ctx": {
            "settings": settings,
            "rules": RulesReloader(settings.rules_dir, settings.targets, ruleset),
            "worker_id": f"{socket.gethostname()}:{os.getpid()}",
        },
    }


def send_deadline(settings: Settings) -> float:
    """A send (waits, pages, requests) ends well before arq's job timeout."""
    return max(5.0, settings.job_timeout_s * 0.8)


class HookrulesWorker(Worker):
    """arq's Worker, whose wait for running jobs on SIGTERM also stops the event consumer
    reading and waits for its batches (arq 0.28's hook for that wait is this method), and
    which remembers that it was told to stop."""

    stop_asked = False

    def handle_sig_wait_for_completion(self, signum: signal.Signals) -> None:
        self.stop_asked = True
        super().handle_sig_wait_for_completion(signum)

    def handle_sig(self, signum: signal.Signals) -> None:
        self.stop_asked = True
        super().handle_sig(signum)

    async def _sleep_until_tasks_complete(self) -> None:
        consumer: EventConsumer | None = self.ctx.get("consumer")
        if consumer is not None:
            consumer.stop()
        while self.tasks or (consumer is not None and consumer.tasks):
            await asyncio.sleep(0.1)


def build_worker(settings: Settings, ruleset: Ruleset) -> Worker:
    return HookrulesWorker(**worker_options(settings, ruleset))


def _stop_background(worker: Worker) -> None:
    """After Redis went away, on_shutdown did not run: stop the old worker's own tasks, so the
    next worker in this process is the only one reading. The events its consumer held stay
    pending under this process's name, and the next consumer finishes them first."""
    consumer: EventConsumer | None = worker.ctx.get("consumer")
    names = ("consuming", "heartbeat", "rule_watcher", "scheduler")
    tasks = [worker.ctx[n] for n in names if n in worker.ctx] + (list(consumer.tasks) if consumer else [])
    for task in tasks:
        task.cancel()
    if tasks:
        worker.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    if "http" in worker.ctx:  # the next worker opens its own
        worker.loop.run_until_complete(worker.ctx["http"].aclose())


def run_worker(settings: Settings, ruleset: Ruleset) -> None:
    """Run until a signal stops the worker. When Redis goes away arq's loop ends with an error:
    start a fresh worker after a pause, until Redis is back. Queued jobs wait in Redis; the
    jobs that were running are handed back at once (their in-progress marks removed) instead
    of waiting out arq's job timeout."""
    pause, abandoned = 1.0, []
    told: list[int] = []  # stop signals caught between two workers (see stopped_while_pausing)
    while True:
        worker = build_worker(settings, ruleset)
        if told:  # came after the pause, before this worker put arq's handlers in place
            log.info("told to stop while waiting for Redis; stopping")
            return
        worker.ctx["abandoned"] = abandoned
        try:
            worker.run()
            return
        except (RedisError, OSError) as exc:
            abandoned = list(worker.tasks)
            _stop_background(worker)
            if worker.stop_asked:
                # Told to stop, and Redis went away meanwhile (a host shutting down, `up` killed):
                # stop anyway. What it held stays pending in the stream, for the next worker.
                log.warning("Redis is unreachable (%s) while the worker stops; its unfinished events "
                            "stay pending and the next worker takes them over", exc)
                return
            log.warning("Redis is unreachable (%s); the worker starts again in %.0f s", exc, pause)
            if stopped_while_pausing(worker, pause, told):
                log.info("told to stop while waiting for Redis; stopping")
                return
            pause = min(pause * 2, 30.0)


def stopped_while_pausing(worker: Worker, seconds: float, told: list[int]) -> bool:
    """Wait between two workers; True if SIGTERM or SIGINT came meanwhile. arq's handlers
    run only inside its loop, which is idle now: a signal would wait in the loop unseen,
    so ours take the pause, and stay until the next worker puts arq's back: `told` keeps
    what they catch for run_worker to see."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        worker.loop.remove_signal_handler(sig)
        signal.signal(sig, lambda signum, frame: told.append(signum))
    deadline = time.monotonic() + seconds
    while not told and time.monotonic() < deadline:
        time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
    return bool(told)

