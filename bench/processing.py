"""Section 2, processing: events end to end (webhook received -> the matching rule's PUT answered
by the sandbox) with 100 rules loaded and one matching per event, against arq's no-op job
throughput in the same Redis; then a paced run for latency, and the whole system at full speed."""

from __future__ import annotations

import argparse
import json

import e2e
import procs
from engine.config import load_settings
from report import Goal, Summary, cpu_row, ms, num, print_table
from stack import Stack

PER_WORKER_TARGET = 1000.0
SYSTEM_TARGET = 2400.0  # Node-RED, in memory, on this machine (issue 9)


def arq_noop(stack: Stack, jobs: int) -> tuple[float, dict[str, float], float]:
    """(jobs/s, CPU seconds by process, wall seconds) of arq draining `jobs` no-op jobs."""
    settings = load_settings(stack.env())
    out = stack.tmp / "arq-noop.json"
    before = stack.cpu()
    proc = procs.spawn(procs.python(str(procs.ROOT / "bench" / "arq_noop.py"), stack.redis_url, str(jobs),
                                   str(settings.worker_max_jobs), str(settings.worker_poll_s), str(out)),
                       stack.env(), stack.tmp / "arq-noop.log")
    code, _ = procs.wait_with_cpu(proc, 900)
    after = stack.cpu()
    if code != 0 or not out.exists():
        raise RuntimeError(f"arq_noop.py exited {code}: {(stack.tmp / 'arq-noop.log').read_text()[-800:]}")
    result = json.loads(out.read_text())
    stack.db.delete("bench:arq-noop")
    cpu = {"arq worker": result["cpu_s"], "valkey": after["valkey"] - before["valkey"]}
    per_s = result["jobs"] / result["seconds"] if result["seconds"] else 0.0
    return per_s, cpu, result["seconds"]


def run_row(run: e2e.Run, workers: str, latency: bool = True) -> list[str]:
    p50, p99 = run.latency_ms() if latency else (0.0, 0.0)
    posted = f"{num(run.posted.per_s)}" if run.posted else "-"
    return [run.label, workers, num(run.done), num(run.per_s), ms(p50) if latency else "-", ms(p99) if latency else "-",
            posted, num(run.puts)]


def per_event_row(label: str, cpu: dict[str, float], count: int) -> list[str]:
    """CPU milliseconds per event by role: steadier than rates on a shared machine."""
    roles = {"api": 0.0, "workers": 0.0, "valkey": 0.0, "sandbox": 0.0}
    for name, seconds in cpu.items():
        role = "workers" if name.startswith(("worker", "arq")) else name
        if role in roles:
            roles[role] += seconds
    cells = [f"{roles[r] / count * 1000:.2f}" if count else "-" for r in roles]
    return [label, *cells, f"{sum(roles.values()) / count * 1000:.2f}" if count else "-"]


def print_notes(runs: list[e2e.Run]) -> None:
    for run in runs:
        for note in run.notes:
            print(f"note ({run.label}): {note}")


def run(stack: Stack, args: argparse.Namespace, summary: Summary, pe: e2e.Pe) -> None:
    settings = load_settings(stack.env())
    batches = (f", batch {settings.worker_batch} x {settings.worker_batches}"
               if hasattr(settings, "worker_batch") and hasattr(settings, "worker_batches") else "")
    print(f"\n## 2. Processing: 100 rules loaded (1 matches each event, 24 more listen), events over "
          f"{len(stack.ids)} sandbox milestones; worker max_jobs {settings.worker_max_jobs}, "
          f"poll {settings.worker_poll_s:g} s{batches} (engine.config defaults)")
    backlog = e2e.backlog_run(stack, "backlog drained by 1 worker", args.events, 1, pe, args.connections)
    noop_per_s, noop_cpu, noop_s = arq_noop(stack, args.events)
    rate = args.steady_rate or max(50.0, round(backlog.per_s * 0.5 / 50) * 50)
    steady = e2e.live_run(stack, f"paced at {rate:g}/s, 1 worker", int(rate * args.steady_s), pe, args.connections, rate)
    systems = []
    for workers in args.workers:
        stack.stop_workers()
        stack.start_workers(workers)
        systems.append(e2e.live_run(stack, f"whole system, full speed, {workers} worker(s)", args.events, pe,
                                    args.connections, None))
    stack.stop_workers()
    stack.db.flushdb()

    headers = ["run", "workers", "events done", "events/s", "p50 ms", "p99 ms", "webhooks/s posted", "sandbox PUTs"]
    rows = [run_row(backlog, "1", latency=False),
            ["arq no-op jobs (same Redis, max_jobs, poll)", "1", num(args.events), num(noop_per_s), "-", "-", "-", "-"],
            run_row(steady, "1"), *(run_row(r, str(w)) for r, w in zip(systems, args.workers))]
    print_table("", headers, rows)
    ratio = backlog.per_s / noop_per_s if noop_per_s else 0.0
    print(f"\nengine events/s ÷ arq no-op jobs/s, one worker process each: {ratio:.2f} "
          "(arq's own ceiling with the same max_jobs and poll delay; an event is far more than a job: "
          "a decision, Redis writes and a PUT answered)")
    print("backlog: clock from the first decision to the last action answered (worker start-up excluded); "
          "paced and full speed: from the first webhook received; latency = action answered - webhook received")
    print_notes([backlog, steady, *systems])
    cpu_rows = [cpu_row(backlog.label, backlog.cpu, backlog.wall_s), cpu_row("arq no-op", noop_cpu, noop_s),
                cpu_row(steady.label, steady.cpu, steady.wall_s), *(cpu_row(r.label, r.cpu, r.wall_s) for r in systems)]
    print_table("CPU seconds per process (wall s: the whole run, posting and waiting included)",
                ["run", "wall s", "CPU s"], cpu_rows)
    # The backlog's api CPU is not in its window (posting came first): add the posting's.
    backlog_cpu = {**backlog.cpu, "api": backlog.cpu.get("api", 0.0) + backlog.post_api_cpu}
    per_event = [per_event_row(backlog.label + " (api: while posting)", backlog_cpu, backlog.done),
                 per_event_row("arq no-op (per job)", noop_cpu, args.events),
                 per_event_row(steady.label, steady.cpu, steady.done),
                 *(per_event_row(r.label, r.cpu, r.done) for r in systems)]
    print_table("CPU milliseconds per event, by process (less noisy than rates when others share the machine)",
                ["run", "api", "worker(s)", "valkey", "sandbox", "total"], per_event)
    best = max(systems, key=lambda r: r.per_s)
    goals = [summary.add(Goal("processing", "events/s end to end, 1 worker (backlog)", backlog.per_s, PER_WORKER_TARGET,
                              "/s", True)),
             summary.add(Goal("processing", f"events/s, whole system ({best.label.rsplit(', ', 1)[1]})", best.per_s,
                              SYSTEM_TARGET, "/s", True))]
    print_table("Targets", ["figure", "value", "target", "value/target", "met?"], [g.row() for g in goals])
