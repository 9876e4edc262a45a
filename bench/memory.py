"""Section 5, memory: a fresh api and worker, webhooks posted at full speed and processed end to
end, the processes' resident memory (VmRSS) after the first and after the last stage, and
Redis' used_memory growth divided by the events it retains (the `hookrules:events` index)."""

from __future__ import annotations

import argparse

import e2e
import procs
from engine import store
from report import Goal, Summary, num, print_table
from stack import Stack

GROWTH_TARGET = 10.0  # percent


def snapshot(stack: Stack, names: list[str]) -> dict[str, float]:
    figures = {name: procs.rss_mb(stack.procs[name].pid) for name in names}
    figures["redis used_memory MB"] = int(stack.db.info("memory")["used_memory"]) / 2**20
    figures["events retained"] = stack.db.zcard(store.INDEX_KEY)
    return figures


def run(stack: Stack, args: argparse.Namespace, summary: Summary, pe: e2e.Pe) -> None:
    first, last = args.memory_stages
    print(f"\n## 5. Memory: a fresh api and 1 worker, {num(first)} then {num(last)} events processed end to end")
    stack.stop_workers()
    stack.stop("api")
    stack.db.flushdb()
    stack.start_api()
    names = ["api", *stack.start_workers(1)]
    base = int(stack.db.info("memory")["used_memory"])
    stages = {}
    done = 0
    for total in (first, last):
        batch = e2e.Run(f"memory stage to {total}", total - done)
        e2e.post(stack, batch, pe, args.connections)
        e2e.wait_actions(stack, total, batch)
        for note in batch.notes:
            print(f"note ({batch.label}): {note}")
        done = total
        stages[total] = snapshot(stack, names)
    rows = [[name, f"{stages[first][name]:.1f}", f"{stages[last][name]:.1f}",
             f"{(stages[last][name] / stages[first][name] - 1) * 100:+.1f}%"] for name in names]
    used = stages[last]["redis used_memory MB"] * 2**20 - base
    retained = stages[last]["events retained"]
    per_event = used / retained if retained else 0.0
    rows.append(["redis used_memory MB", f"{stages[first]['redis used_memory MB']:.1f}",
                 f"{stages[last]['redis used_memory MB']:.1f}", ""])
    print_table("", ["process", f"RSS MB after {num(first)}", f"RSS MB after {num(last)}", "growth"], rows)
    print(f"\nRedis: {num(used / 2**20, 1)} MB more than before the first event, {num(retained)} events retained: "
          f"{num(per_event)} bytes per retained event (record, arq job results, snapshots, echo marks, counters)")
    goals = [summary.add(Goal("memory", f"{name} RSS growth {num(first)} -> {num(last)} events",
                              (stages[last][name] / stages[first][name] - 1) * 100, GROWTH_TARGET, "%", False))
             for name in names]
    print_table("Targets", ["figure", "value", "target", "value/target", "met?"], [g.row() for g in goals])
    summary.notes.append(f"Redis bytes per retained event: {num(per_event)}")
    stack.stop_workers()
    stack.db.flushdb()
