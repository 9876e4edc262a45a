"""One end-to-end run and what it is read from: webhooks posted through the api, the worker(s)
deciding them and sending the matching rule's PUT to the sandbox, and the figures read back from
the event records in Redis (`hookrules:event:<id>`: the event's received_at, `decided_at`, and
the action's outcome and `at`, the moment the sandbox's answer was recorded)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import load
import procs
from engine import stats, store
from payloads import MATCHING_RULE
from report import percentiles
from stack import SECRET, Stack

ACTION_FIELD = f"action:{MATCHING_RULE}:0"
CHUNK = 2000


@dataclass
class Record:
    received: float
    decided: float | None
    acted: float | None  # when the action's outcome was recorded
    outcome: str | None


@dataclass
class Run:
    """A run's figures. `start` is where its clock starts (first receipt, or for a backlog the
    first decision), `end` the last action answered."""

    label: str
    events: int
    records: list[Record] = field(default_factory=list)
    start: float = 0.0
    end: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    posted: load.Load | None = None
    puts: int = 0
    post_api_cpu: float = 0.0  # backlog runs: the api's CPU while the webhooks were posted
    notes: list[str] = field(default_factory=list)

    @property
    def done(self) -> int:
        return sum(r.outcome == "done" for r in self.records)

    @property
    def per_s(self) -> float:
        return self.done / (self.end - self.start) if self.end > self.start else 0.0

    def latency_ms(self) -> tuple[float, float]:
        return percentiles([(r.acted - r.received) * 1000 for r in self.records if r.outcome == "done" and r.acted])


class Pe:
    """Projected ends are never reused across runs: every event changes its milestone."""

    def __init__(self, base: int) -> None:
        self.next = base

    def take(self, count: int) -> int:
        first, self.next = self.next, self.next + count + 1000
        return first


def outcomes(stack: Stack) -> dict[str, int]:
    raw = stack.db.hgetall(stats.ACTIONS)
    return {k.decode().split("|", 1)[1]: int(v) for k, v in raw.items() if k.decode().startswith("sdp|")}


def wait_actions(stack: Stack, expected: int, run: Run) -> None:
    """Until `expected` actions are done or failed, a process died, or the time bound passed."""
    timeout_s = min(3600.0, 120.0 + expected / 25)  # the engine is what is measured: wait for >= 25/s
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        counts = outcomes(stack)
        if counts.get("done", 0) + counts.get("failed", 0) >= expected:
            break
        for name in list(stack.procs):
            stack.check_alive(name)
        time.sleep(0.1)
    else:
        run.notes.append(f"stopped waiting after {timeout_s:.0f} s")
    counts = outcomes(stack)
    if counts.get("failed") or counts.get("retrying"):
        run.notes.append(f"actions failed {counts.get('failed', 0)}, retried {counts.get('retrying', 0)}")


def read_records(stack: Stack) -> list[Record]:
    ids = stack.db.zrange(store.INDEX_KEY, 0, -1, withscores=True)
    found = []
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        with stack.db.pipeline(transaction=False) as pipe:
            for event_id, _ in chunk:
                pipe.hmget(store.EVENT_PREFIX + event_id.decode(), "decided_at", ACTION_FIELD)
            replies = pipe.execute()
        for (_, received), (decided, action) in zip(chunk, replies):
            outcome = json.loads(action) if action else {}
            found.append(Record(received, float(decided) if decided else None, outcome.get("at"), outcome.get("outcome")))
    return found


def finish(stack: Stack, run: Run, cpu_before: dict[str, float], self_before: float, began: float, backlog: bool) -> Run:
    """Read the records and the CPU used; set the clock's start and end."""
    cpu_after = stack.cpu()
    run.wall_s = time.monotonic() - began
    run.cpu = {name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after}
    run.cpu["bench"] = procs.self_cpu_s() - self_before
    if run.posted is not None and not backlog:
        run.cpu[run.posted.generator] = run.posted.cpu_s
    run.records = read_records(stack)
    acted = [r.acted for r in run.records if r.acted]
    firsts = [r.decided for r in run.records if r.decided] if backlog else [r.received for r in run.records]
    if acted and firsts:
        run.start, run.end = min(firsts), max(acted)
    if len(run.records) != run.events:
        run.notes.append(f"{len(run.records)} event records for {run.events} webhooks")
    sandbox = run.cpu.get("sandbox", 0.0)
    if run.wall_s and sandbox / run.wall_s > 0.8:
        run.notes.append(f"the sandbox used {sandbox:.1f} CPU s in {run.wall_s:.1f} s: it may be the bottleneck")
    return run


def post(stack: Stack, run: Run, pe: Pe, connections: int, rate: float | None = None) -> load.Load:
    target = load.Target(stack.url("api", "/hooks/sdp"), SECRET, stack.ids, stack.tmp)
    result = load.counted(target, connections, run.events, pe.take(run.events), rate)
    if result.problem:
        raise RuntimeError(result.problem)
    if result.not_2xx or result.errors:
        run.notes.append(f"webhook answers {result.statuses}, {result.errors} connection errors")
    run.posted = result
    return result


def backlog_run(stack: Stack, label: str, events: int, workers: int, pe: Pe, connections: int) -> Run:
    """Post every webhook first with no worker running, then start the worker(s) and time the
    drain from the first decision to the last action answered."""
    stack.stop_workers()
    stack.db.flushdb()
    run = Run(label, events)
    api_before = procs.cpu_s(stack.procs["api"].pid)
    post(stack, run, pe, connections)
    run.post_api_cpu = procs.cpu_s(stack.procs["api"].pid) - api_before
    puts_before, cpu_before, self_before, began = stack.sandbox_puts(), stack.cpu(), procs.self_cpu_s(), time.monotonic()
    stack.start_workers(workers)
    wait_actions(stack, events, run)
    run.puts = stack.sandbox_puts() - puts_before
    return finish(stack, run, cpu_before, self_before, began, backlog=True)


def live_run(stack: Stack, label: str, events: int, pe: Pe, connections: int, rate: float | None) -> Run:
    """Post while the running worker(s) work: paced at `rate`, or as fast as the api takes them;
    the clock runs from the first webhook received to the last action answered."""
    stack.db.flushdb()
    run = Run(label, events)
    puts_before, cpu_before, self_before, began = stack.sandbox_puts(), stack.cpu(), procs.self_cpu_s(), time.monotonic()
    post(stack, run, pe, connections, rate)
    wait_actions(stack, events, run)
    run.puts = stack.sandbox_puts() - puts_before
    return finish(stack, run, cpu_before, self_before, began, backlog=False)
