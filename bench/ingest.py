"""Section 1, ingest: /hooks/sdp (auth on, a 1.5 KB milestone body, a new event per request)
against a bare Starlette route answering 202 under the same uvicorn options, same generator,
connections and duration, in the same run. No worker runs: this is the api alone."""

from __future__ import annotations

import argparse

import load
import payloads
import procs
from report import Goal, Summary, cpu_row, ms, num, print_table
from stack import SECRET, Stack

TARGET_RATIO = 0.5


def measure(stack: Stack, server: str, target: load.Target, args: argparse.Namespace, first_pe: int) -> tuple[load.Load, list[str]]:
    """A short warm-up, then the timed run; the CPU row of the processes that did the work."""
    load.timed(target, args.connections, args.warmup_s, first_pe, prefer_wrk=not args.no_wrk)
    before, self_before = stack.cpu(), procs.self_cpu_s()
    result = load.timed(target, args.connections, args.ingest_s, first_pe, prefer_wrk=not args.no_wrk)
    after = stack.cpu()
    used = {result.generator: result.cpu_s, server: after[server] - before[server],
            "valkey": after["valkey"] - before["valkey"], "bench": procs.self_cpu_s() - self_before}
    result.server_cpu_us = used[server] / result.requests * 1e6 if result.requests else 0.0
    return result, [*cpu_row(server, used, result.seconds), f"{result.server_cpu_us:,.0f}"]


def row(label: str, result: load.Load) -> list[str]:
    return [label, num(result.per_s), ms(result.p50_ms), ms(result.p99_ms), num(result.requests),
            str(result.not_2xx), str(result.errors)]


def bare_run(stack: Stack, args: argparse.Namespace, ids: list[str], access_log: bool) -> tuple[load.Load, list[str]]:
    name = stack.start_bare(access_log)
    try:
        return measure(stack, name, load.Target(stack.url("bare", "/hooks/sdp"), SECRET, ids, stack.tmp), args,
                       payloads.BASE_PE)
    finally:
        stack.stop(name)


def run(stack: Stack, args: argparse.Namespace, summary: Summary) -> None:
    ids = [str(9_000_000_000_000 + n) for n in range(args.entities)]  # no worker runs: any ids do
    generator = load.generator_name(not args.no_wrk)
    print(f"\n## 1. Ingest: {generator}, {args.connections} connections, {args.ingest_s:g} s each "
          f"(after {args.warmup_s:g} s of warm-up), {len(payloads.body('1' * 16, payloads.BASE_PE))}-byte bodies")
    stack.stop_workers()
    bare, bare_cpu = bare_run(stack, args, ids, access_log=True)
    stack.db.flushdb()
    hooks, hooks_cpu = measure(stack, "api", load.Target(stack.url("api", "/hooks/sdp"), SECRET, ids, stack.tmp),
                               args, payloads.BASE_PE)
    retained = stack.db.zcard("hookrules:events")
    stack.db.flushdb()  # the queued events are not wanted by the next sections
    quiet, quiet_cpu = bare_run(stack, args, ids, access_log=False)
    headers = ["endpoint", "requests/s", "p50 ms", "p99 ms", "requests", "non-2xx", "errors"]
    rows = [row("bare Starlette route, 202 (same uvicorn options): the baseline", bare),
            row("/hooks/sdp, token auth, stored + queued in Redis", hooks),
            row("reference: the bare route with access_log=False added", quiet)]
    print_table("", headers, rows)
    print_table("CPU seconds per process during each timed run", ["run", "wall s", "CPU s", "server CPU µs/request"],
                [bare_cpu, hooks_cpu, quiet_cpu])
    for result in (bare, hooks, quiet):
        if result.problem:
            print(f"\nproblem: {result.problem}")
        if result.saturated:
            print(f"\nnote: the generator ({result.generator}) used {result.cpu_s:.1f} CPU s in {result.seconds:.1f} s: "
                  "it may be what limits this figure")
    print(f"\n/hooks/sdp: {num(retained)} events stored in Redis (each 202 is a stored, queued event, warm-up included)")
    ratio = hooks.per_s / bare.per_s if bare.per_s else 0.0
    if hooks.server_cpu_us:
        print(f"by CPU per request (what the ratio would be if each server had a core to itself): "
              f"{bare.server_cpu_us / hooks.server_cpu_us:.2f}")
    goal = summary.add(Goal("ingest", "/hooks/sdp ÷ bare Starlette, requests/s", ratio, TARGET_RATIO, "", True))
    print_table("Target", ["figure", "value", "target", "value/target", "met?"], [goal.row()])
