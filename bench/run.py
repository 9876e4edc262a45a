"""hookrules benchmark: prints figures, asserts nothing. How to run it and what each figure
means: bench/README.md. Everything binds 127.0.0.1, every loop is bounded in count and time,
and everything started here is stopped before it returns. This client, the api, the worker,
Valkey and the stand-in SDP share the cores: the CPU seconds per process show where they went.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `python bench/run.py` puts bench/, not the repo root, on sys.path

import httpx  # noqa: E402
import redis  # noqa: E402

from engine.config import Connector, Targets  # noqa: E402
from engine.sources import load_sources  # noqa: E402
from engine.decide import decide, rule_context  # noqa: E402
from engine.embedded_redis import start_embedded  # noqa: E402
from engine.intake import to_event  # noqa: E402
from engine.logic import compile_condition  # noqa: E402
from engine.rule_files import load_ruleset  # noqa: E402

SECRET = "bench-secret-0000"  # a bench value, not a real credential
ADMIN_TOKEN = "bench-admin-token"  # a bench value, not a credential
# Label, worker settings, and whether the run is the big one (--events) or a comparison one.
# Engine defaults are left unset on purpose: measure what the engine really defaults to.
PLAN = [
    ("engine defaults (50 jobs, 0.05 s poll)", {}, "events"),
    ("engine defaults (50 jobs, 0.05 s poll)", {}, "compare_events"),
    ("arq defaults (10 jobs, 0.5 s poll)", {"HOOKRULES_WORKER_CONCURRENCY": "10", "HOOKRULES_WORKER_POLL": "0.5"}, "compare_events"),
]


def rate(fn: Callable[[], object], budget_s: float, max_calls: int) -> float:
    """Calls per second of fn(), run for about budget_s and never more than max_calls."""
    calls, start = 0, time.perf_counter()
    while calls < max_calls and time.perf_counter() - start < budget_s:
        for _ in range(100):  # read the clock every 100 calls, not every call
            fn()
        calls += 100
    return calls / (time.perf_counter() - start)


def bench_decide() -> None:
    ruleset = load_ruleset(ROOT / "rules", Targets(sdp=Connector("sdp", base_url="http://127.0.0.1:1/app/x", token="t")))
    source = load_sources(ROOT / "sources.yaml", {"HOOKRULES_SOURCE_SDP_SECRET": SECRET})["sdp"]
    headers = {"x-hook-token": SECRET, "content-type": "application/json"}
    events = [to_event(source, headers, p.read_bytes(), 0.0) for p in sorted((ROOT / "samples").glob("*.json"))]
    turn = iter(range(10**9))
    per_s = rate(lambda: decide(events[next(turn) % len(events)], None, ruleset, 0.0), 3.0, 200_000)
    print(f"decide(): {per_s:,.0f} events/s ({len(ruleset.rules)} rules, {len(events)} sample events in turn)")
    context = rule_context(events[0], None, 0.0)
    entity_only = {events[0].entity.kind: events[0].entity.data}
    for rule in ruleset.rules:
        if (cond := rule.condition) is None:
            continue
        compiled = rate(lambda: cond.evaluate(context), 1.0, 200_000)
        each = rate(lambda: compile_condition(cond.source).evaluate(context), 1.0, 50_000)
        # The same compiled rule over the entity alone: how much of evaluate() is datalogic-py
        # taking in the whole rule context (event, entity.data, milestone and payload).
        small = rate(lambda: cond.evaluate(entity_only), 1.0, 200_000)
        print(f"  when of {rule.id}: compiled {1e6 / compiled:.1f} us/eval, compiled each time "
              f"{1e6 / each:.1f} us/eval ({compiled / each:.2f}x); compiled, entity-only data {1e6 / small:.1f} us/eval")


class StandIn(ThreadingHTTPServer):
    """A stand-in SDP: answers 200 to every PUT and counts those whose milestone id starts with
    the current run's prefix (a straggler from an earlier run never counts), and connections."""

    daemon_threads = True

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.prefix, self.duplicates, self.connections, self.last_at = "", 0, 0, 0.0
        self.seen: set[str] = set()
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def begin(self, prefix: str) -> None:
        with self.lock:
            self.prefix, self.seen, self.duplicates, self.connections = prefix, set(), 0, 0

    def record(self, path: str) -> None:
        with self.lock:
            if f"/milestones/{self.prefix}" in path:
                self.duplicates += path in self.seen
                self.seen.add(path)
                self.last_at = time.perf_counter()

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a stopped worker resets its kept-alive connections: not worth a traceback


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real SDP offers: the worker's pool decides
    server: StandIn

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.server.record(self.path)
        body = b'{"response_status":{"status_code":2000}}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_process(command: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "engine.cli", command], env=env, cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()  # SIGTERM: uvicorn and arq shut down cleanly on it
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def peak_rss_mb(pid: int) -> float:
    """VmHWM, the resident-set high-water mark: read it before the process stops."""
    with open(f"/proc/{pid}/status") as status:
        return next((int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:")), 0.0)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Stack:
    """What stays up across the runs: Valkey, the stand-in SDP and the api."""

    tmp: Path
    redis_url: str
    db: redis.Redis
    sdp: StandIn
    port: int
    pids: dict[str, int]  # name -> pid, for the CPU figures
    api_url: str = ""

    def __post_init__(self) -> None:
        self.api_url = f"http://127.0.0.1:{self.port}"

    def env(self, extra: dict[str, str]) -> dict[str, str]:
        # An inherited HOOKRULES_* or REDIS_URL would silently change what is measured.
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKRULES_") and k != "REDIS_URL"}
        env.update(REDIS_URL=self.redis_url, HOOKRULES_PORT=str(self.port), HOOKRULES_SOURCE_SDP_SECRET=SECRET,
                   HOOKRULES_SDP_URL=self.sdp.url + "/app/bench", HOOKRULES_SDP_TOKEN="x", HOOKRULES_HEARTBEAT="1",
                   HOOKRULES_RULES_DIR=str(ROOT / "rules"), HOOKRULES_SOURCES_FILE=str(ROOT / "bench" / "sources.yaml"),
                   HOOKRULES_ADMIN_TOKEN=ADMIN_TOKEN,
                   # Limits far above what this machine can send: the figures are the engine's,
                   # with the shared limiter still doing its Redis round trip per request.
                   HOOKRULES_SDP_RATE="100000", HOOKRULES_SDP_BURST="100000", HOOKRULES_SDP_MAX_CONCURRENT="1000", **extra)
        return env

    def wait_ready(self, worker_pid: int, timeout_s: float = 30.0) -> bool:
        """/health is 200 and the heartbeat is this worker's: a stale beat from the previous
        worker would otherwise start the clock before this one polls the queue."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                reply = httpx.get(self.api_url + "/ready", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=2)
                if reply.status_code == 200 and str(reply.json()["worker"]["worker"]).endswith(f":{worker_pid}"):
                    return True
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                pass
            time.sleep(0.1)
        return False


@dataclass
class Run:
    label: str
    events: int
    post_s: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    puts: int = 0
    e2e_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def actions_per_s(self) -> float:
        return self.puts / self.e2e_s if self.e2e_s else 0.0


def bodies(prefix: str, count: int) -> list[bytes]:
    """The milestone-completed sample with a milestone id of its own each (digits, as SDP ids
    are), so each webhook plans exactly one PUT, to a path of its own."""
    sample = json.loads((ROOT / "samples" / "milestone-completed.json").read_text())
    out = []
    for i in range(count):
        sample["milestone"]["id"] = f"{prefix}{i:07d}"
        out.append(json.dumps(sample).encode())
    return out


async def post_all(url: str, payloads: list[bytes], concurrency: int, run: Run) -> None:
    headers = {"Content-Type": "application/json", "X-Hook-Token": SECRET}
    queue = iter(payloads)  # shared by the senders: each payload is posted exactly once

    async def sender(client: httpx.AsyncClient) -> None:
        for body in queue:
            start = time.perf_counter()
            try:
                status = (await client.post(url, content=body, headers=headers)).status_code
            except httpx.HTTPError:
                status = 0
            run.latencies_ms.append((time.perf_counter() - start) * 1000)
            run.statuses[status] = run.statuses.get(status, 0) + 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        await asyncio.gather(*(sender(client) for _ in range(concurrency)))


def run_load(stack: Stack, run: Run, prefix: str, args: argparse.Namespace) -> None:
    payloads = bodies(prefix, run.events)
    stack.sdp.begin(prefix)
    cpu_before = {name: cpu_s(pid) for name, pid in stack.pids.items()}
    commands_before = int(stack.db.info("stats")["total_commands_processed"])
    start = time.perf_counter()
    asyncio.run(post_all(stack.api_url + "/hooks/sdp", payloads, args.concurrency, run))
    run.post_s = time.perf_counter() - start
    accepted = run.statuses.get(202, 0)  # only accepted webhooks can become PUTs
    # Polling is only the stop condition: the stand-in stamps the last PUT's arrival itself.
    deadline = time.perf_counter() + args.timeout
    while len(stack.sdp.seen) < accepted and time.perf_counter() < deadline:
        time.sleep(0.01)
    with stack.sdp.lock:
        run.puts, run.e2e_s = len(stack.sdp.seen), (stack.sdp.last_at - start) if stack.sdp.seen else 0.0
        if stack.sdp.duplicates:
            run.notes.append(f"{stack.sdp.duplicates} duplicate PUTs")
        run.notes.append(f"{stack.sdp.connections} connections to the stand-in SDP")
    if run.puts < accepted:
        run.notes.append(f"stopped waiting for PUTs after {args.timeout:.0f} s")
    # Includes the heartbeat and arq's health check, a few a second: small beside the load.
    commands = int(stack.db.info("stats")["total_commands_processed"]) - commands_before
    run.notes.append(f"{commands / run.events:.1f} Redis commands per webhook")
    used = ", ".join(f"{name} {cpu_s(pid) - cpu_before[name]:.1f}" for name, pid in stack.pids.items())
    run.notes.append(f"CPU s: {used} over {time.perf_counter() - start:.1f} s wall")


def report(run: Run, worker_rss_mb: float) -> None:
    accepted = run.statuses.get(202, 0)
    cuts = statistics.quantiles(run.latencies_ms, n=100) if len(run.latencies_ms) > 1 else [0.0] * 99
    others = {s: n for s, n in run.statuses.items() if s != 202}
    print(f"  {run.label}, {run.events} webhooks:")
    print(f"    accepted: {accepted / run.post_s:,.0f} webhooks/s ({accepted} x 202 in {run.post_s:.2f} s)"
          + (f"; other answers {others}" if others else ""))
    print(f"    webhook latency: p50 {cuts[49]:.1f} ms, p95 {cuts[94]:.1f} ms")
    print(f"    end to end: {run.actions_per_s:,.0f} actions/s ({run.puts}/{accepted} PUTs in {run.e2e_s:.2f} s)")
    print(f"    worker peak RSS {worker_rss_mb:.1f} MB; " + "; ".join(run.notes))


def run_config(stack: Stack, n: int, label: str, extra: dict[str, str], events: int,
               args: argparse.Namespace) -> Run | None:
    """Start a worker with these settings, load the service, report, stop the worker."""
    log = stack.tmp / f"worker-{n}.log"
    worker = start_process("worker", stack.env(extra), log)
    try:
        if not stack.wait_ready(worker.pid):
            print(f"  {label}: the service did not come up; the logs end with:")
            for path in (stack.tmp / "api.log", log):
                print("\n".join(path.read_text(errors="replace").splitlines()[-10:]))
            return None
        stack.pids["worker"] = worker.pid
        run = Run(label, events)
        run_load(stack, run, f"9{n}", args)
        report(run, peak_rss_mb(worker.pid))
        return run
    finally:
        stop_process(worker)
        stack.db.flushdb()  # a timed-out run leaves jobs queued: the next worker starts empty


def bench_end_to_end(args: argparse.Namespace) -> None:
    # ExitStack is the finally block: whatever was started is stopped, newest first, whether
    # the runs end, fail or are interrupted.
    with contextlib.ExitStack() as started:
        tmp = Path(tempfile.mkdtemp(prefix="hookrules-bench-"))
        started.callback(shutil.rmtree, tmp, ignore_errors=True)
        server = start_embedded(tmp / "valkey", port=free_port())
        started.callback(server.stop)
        db = started.enter_context(redis.Redis.from_url(server.connection_url + "/0"))
        sdp = StandIn()
        started.callback(sdp.server_close)
        started.callback(sdp.shutdown)
        pids = {"valkey": int(db.info("server")["process_id"]), "bench+stand-in": os.getpid()}
        stack = Stack(tmp, server.connection_url + "/0", db, sdp, free_port(), pids)
        api = start_process("api", stack.env({}), tmp / "api.log")
        started.callback(stop_process, api)
        stack.pids["api"] = api.pid
        runs: list[Run] = []
        for n, (label, extra, size) in enumerate(PLAN, start=1):
            events = getattr(args, size)
            if events and (run := run_config(stack, n, label, extra, events, args)) is None:
                return  # the service did not come up: the log tails are printed
            runs += [run] if events else []
        if len(runs) == 3 and runs[2].actions_per_s:
            print(f"  end-to-end actions/s at {args.compare_events} webhooks, engine defaults / arq defaults: "
                  f"{runs[1].actions_per_s / runs[2].actions_per_s:.1f}x")
        print(f"api peak RSS: {peak_rss_mb(api.pid):.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description="hookrules benchmark (prints figures only)")
    parser.add_argument("--events", type=int, default=2000, help="webhooks in the main run (1-20000)")
    parser.add_argument("--compare-events", type=int, default=300,
                        help="webhooks in each engine-vs-arq-defaults run (0 skips them; max 2000)")
    parser.add_argument("--concurrency", type=int, default=20, help="webhooks in flight at once (1-200)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for one run's PUTs (max 120)")
    args = parser.parse_args()
    # Clamped, so no flag turns this into an unbounded load test.
    args.events = max(1, min(args.events, 20000))
    args.compare_events = max(0, min(args.compare_events, 2000))
    args.concurrency = max(1, min(args.concurrency, 200))
    args.timeout = max(1.0, min(args.timeout, 120.0))
    started = time.perf_counter()
    print("== decide() and conditions, in process")
    bench_decide()
    print(f"== end to end over 127.0.0.1, {args.concurrency} webhooks in flight")
    bench_end_to_end(args)
    print(f"total bench time: {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
