"""hookrules benchmark: prints figures, asserts nothing. Run from the repo root:

    .venv/bin/python bench/run.py [--events 2000] [--compare-events 100] [--concurrency 20]

1. decide() throughput over the shipped rules and samples, and compiled vs compile-each-time
   JSONLogic evaluation.
2. Intake and end-to-end throughput over real sockets on 127.0.0.1: embedded Valkey, the real
   `engine.cli api` and `engine.cli worker` processes, and a stand-in SDP that counts PUTs.
3. Peak RSS (VmHWM) of the api and worker processes.

Everything binds 127.0.0.1, every loop is bounded in count and time, and everything started
here is stopped in a finally block. Note the machine is shared: on 2 cores this client, the
api, the worker, Valkey and the stand-in all compete, so the figures are a floor, not a ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
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

from engine.config import Targets, load_sources  # noqa: E402
from engine.decide import decide, rule_context  # noqa: E402
from engine.embedded_redis import start_embedded  # noqa: E402
from engine.intake import to_event  # noqa: E402
from engine.logic import compile_condition  # noqa: E402
from engine.models import Event  # noqa: E402
from engine.rules import load_ruleset  # noqa: E402

SECRET = "bench-secret-0000"  # a bench value, not a real credential
SAMPLE = ROOT / "samples" / "milestone-completed.json"
ENGINE_DEFAULTS: dict[str, str] = {}  # unset: measure what the engine really defaults to (50, 0.05)
ARQ_DEFAULTS = {"HOOKRULES_WORKER_CONCURRENCY": "10", "HOOKRULES_WORKER_POLL": "0.5"}


# ---------------------------------------------------------------- 1. in-process figures


def timed_rate(fn: Callable[[int], object], budget_s: float, max_calls: int) -> float:
    """Calls per second of fn(i), run for about budget_s and never more than max_calls."""
    calls, start = 0, time.perf_counter()
    deadline = start + budget_s
    while calls < max_calls and time.perf_counter() < deadline:
        for i in range(calls, calls + 100):  # check the clock every 100 calls, not every call
            fn(i)
        calls += 100
    return calls / (time.perf_counter() - start)


def sample_events() -> list[Event]:
    source = load_sources(ROOT / "sources.yaml", {"HOOKRULES_SOURCE_SDP_SECRET": SECRET})["sdp"]
    headers = {"x-hook-token": SECRET, "content-type": "application/json"}
    return [to_event(source, headers, p.read_bytes(), 0.0) for p in sorted((ROOT / "samples").glob("*.json"))]


def bench_decide() -> None:
    ruleset = load_ruleset(ROOT / "rules", Targets(sdp_url="http://127.0.0.1:1/app/x", sdp_token="t"))
    events = sample_events()
    rate = timed_rate(lambda i: decide(events[i % len(events)], None, ruleset, 0.0), 3.0, 200_000)
    print(f"decide(): {rate:,.0f} events/s  ({len(ruleset.rules)} rules, {len(events)} sample events, round robin)")
    context = rule_context(events[0], None, 0.0)
    for rule in ruleset.rules:
        if rule.condition is None:
            continue
        cond = rule.condition
        compiled = timed_rate(lambda i: cond.evaluate(context), 1.0, 200_000)
        each = timed_rate(lambda i: compile_condition(cond.source).evaluate(context), 1.0, 50_000)
        # The same compiled rule over only the entity: how much of evaluate() is handing
        # datalogic-py the whole rule context (event, entity, milestone and payload copies).
        small = {events[0].entity.kind: events[0].entity.data}
        entity_only = timed_rate(lambda i: cond.evaluate(small), 1.0, 200_000)
        print(
            f"  condition {rule.id}: compiled {1e6 / compiled:.1f} us/eval, compile each time "
            f"{1e6 / each:.1f} us/eval, ratio {compiled / each:.2f}x; compiled on entity-only data "
            f"{1e6 / entity_only:.1f} us/eval"
        )


# ---------------------------------------------------------------- 2. the stand-in SDP


class StandIn:
    """Answers 200 to everything and counts PUTs whose milestone id starts with the current
    run's prefix, so a straggler from an earlier run never counts toward a later one."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.prefix, self.expected = "", 0
        self.seen: set[str] = set()
        self.duplicates = 0
        self.last_at = 0.0
        self.done = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real SDP would: no reconnect per PUT

            def do_PUT(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                outer.record(self.path)
                self.reply()

            def do_GET(self) -> None:
                self.reply()

            def reply(self) -> None:
                body = b'{"response_status":{"status_code":2000}}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def begin(self, prefix: str, expected: int) -> None:
        with self.lock:
            self.prefix, self.expected, self.seen, self.duplicates = prefix, expected, set(), 0
            self.done.clear()

    def expect(self, count: int) -> None:
        """Lower the target to what was accepted; it may already be reached."""
        with self.lock:
            self.expected = count
            if len(self.seen) >= count:
                self.done.set()

    def record(self, path: str) -> None:
        with self.lock:
            if f"/milestones/{self.prefix}" not in path:
                return
            if path in self.seen:
                self.duplicates += 1
                return
            self.seen.add(path)
            self.last_at = time.perf_counter()
            if len(self.seen) >= self.expected:
                self.done.set()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_process(command: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "engine.cli", command], env=env, cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT)


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM, the process's resident-set high-water mark. Read before stopping it."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def wait_ready(api_url: str, worker_pid: int, timeout_s: float = 30.0) -> bool:
    """/health is 200 and the heartbeat is this worker's: a stale beat from the previous
    worker would otherwise start the clock before this one polls the queue."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            reply = httpx.get(api_url + "/health", timeout=2)
            worker = (reply.json().get("worker") or {}).get("worker") or ""
            if reply.status_code == 200 and worker.endswith(f":{worker_pid}"):
                return True
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.1)
    return False


# ---------------------------------------------------------------- load


@dataclass
class RunResult:
    label: str
    events: int
    post_s: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    puts: int = 0
    duplicates: int = 0
    e2e_s: float = 0.0
    worker_rss_mb: float | None = None


def bodies(prefix: str, count: int) -> list[bytes]:
    """The milestone-completed sample, each with its own milestone id (digits, as SDP ids are)."""
    sample = json.loads(SAMPLE.read_text())
    out = []
    for i in range(count):
        sample["milestone"]["id"] = f"{prefix}{i:07d}"
        out.append(json.dumps(sample).encode())
    return out


async def post_all(url: str, payloads: list[bytes], concurrency: int, result: RunResult) -> None:
    headers = {"Content-Type": "application/json", "X-Hook-Token": SECRET}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    queue = iter(payloads)  # shared by the senders: each payload is posted exactly once

    async def sender(client: httpx.AsyncClient) -> None:
        for body in queue:
            start = time.perf_counter()
            try:
                status = (await client.post(url, content=body, headers=headers)).status_code
            except httpx.HTTPError:
                status = 0
            result.latencies_ms.append((time.perf_counter() - start) * 1000)
            result.statuses[status] = result.statuses.get(status, 0) + 1

    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        await asyncio.gather(*(sender(client) for _ in range(concurrency)))


def run_load(label: str, api_url: str, sdp: StandIn, prefix: str, events: int, concurrency: int,
             timeout_s: float) -> RunResult:
    result = RunResult(label, events)
    payloads = bodies(prefix, events)
    sdp.begin(prefix, events)
    start = time.perf_counter()
    asyncio.run(post_all(api_url + "/hooks/sdp", payloads, concurrency, result))
    result.post_s = time.perf_counter() - start
    # Only accepted webhooks can become PUTs; wait for those, bounded.
    accepted = min(events, result.statuses.get(202, 0))
    sdp.expect(accepted)
    if accepted and not sdp.done.wait(timeout=timeout_s):
        print(f"  ({label}: timed out after {timeout_s:.0f} s waiting for PUTs)")
    with sdp.lock:
        result.puts, result.duplicates = len(sdp.seen), sdp.duplicates
        result.e2e_s = (sdp.last_at - start) if result.puts else 0.0
    return result


def report(r: RunResult) -> None:
    accepted = r.statuses.get(202, 0)
    cuts = statistics.quantiles(r.latencies_ms, n=100) if len(r.latencies_ms) > 1 else [0.0] * 99
    others = {s: n for s, n in r.statuses.items() if s != 202}
    print(f"  {r.label}: {r.events} webhooks")
    print(f"    accepted: {accepted / r.post_s:,.0f} webhooks/s ({accepted} x 202 in {r.post_s:.2f} s)"
          + (f"; other answers {others}" if others else ""))
    print(f"    latency: p50 {cuts[49]:.1f} ms, p95 {cuts[94]:.1f} ms")
    rate = r.puts / r.e2e_s if r.e2e_s else 0.0
    print(f"    end to end: {rate:,.0f} actions/s ({r.puts}/{accepted} PUTs in {r.e2e_s:.2f} s"
          + (f", {r.duplicates} duplicate PUTs" if r.duplicates else "") + ")")
    print(f"    worker peak RSS: {r.worker_rss_mb or 0:.1f} MB")


def process_env(redis_url: str, port: int, sdp_url: str, extra: dict[str, str]) -> dict[str, str]:
    # Inherited HOOKRULES_* or REDIS_URL would silently change what is measured.
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKRULES_") and k != "REDIS_URL"}
    env.update(REDIS_URL=redis_url, HOOKRULES_PORT=str(port), HOOKRULES_SOURCE_SDP_SECRET=SECRET,
               HOOKRULES_SDP_URL=sdp_url + "/app/bench", HOOKRULES_SDP_TOKEN="x", HOOKRULES_HEARTBEAT="1",
               HOOKRULES_RULES_DIR=str(ROOT / "rules"), HOOKRULES_SOURCES_FILE=str(ROOT / "sources.yaml"),
               PYTHONUNBUFFERED="1", **extra)
    return env


def bench_end_to_end(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="hookrules-bench-"))
    server = sdp = api = worker = None
    try:
        server = start_embedded(tmp / "valkey", port=free_port())
        redis_url = server.connection_url + "/0"
        sdp = StandIn()
        port = free_port()
        api_url = f"http://127.0.0.1:{port}"
        api = start_process("api", process_env(redis_url, port, sdp.url, {}), tmp / "api.log")
        plan = [("engine defaults (50 jobs, 0.05 s poll)", ENGINE_DEFAULTS, args.events)]
        if args.compare_events:
            plan += [("engine defaults (50 jobs, 0.05 s poll)", ENGINE_DEFAULTS, args.compare_events),
                     ("arq defaults (10 jobs, 0.5 s poll)", ARQ_DEFAULTS, args.compare_events)]
        results = []
        for n, (label, extra, events) in enumerate(plan, start=1):
            log = tmp / f"worker-{n}.log"
            worker = start_process("worker", process_env(redis_url, port, sdp.url, extra), log)
            if not wait_ready(api_url, worker.pid):
                print(f"  {label}: the service did not come up; last log lines:")
                print("\n".join((tmp / "api.log").read_text(errors="replace").splitlines()[-10:]))
                print("\n".join(log.read_text(errors="replace").splitlines()[-10:]))
                return
            result = run_load(label, api_url, sdp, f"9{n}", events, args.concurrency, args.timeout)
            result.worker_rss_mb = peak_rss_mb(worker.pid)
            stop_process(worker)
            worker = None
            # A timed-out run leaves jobs queued: clear them so the next worker starts empty.
            with redis.Redis.from_url(redis_url) as client:
                client.flushdb()
            results.append(result)
            report(result)
        if len(results) == 3:
            fast, slow = results[1], results[2]
            ratio = (fast.puts / fast.e2e_s) / (slow.puts / slow.e2e_s) if slow.e2e_s and fast.e2e_s else 0.0
            print(f"  end-to-end actions/s, engine defaults / arq defaults at {args.compare_events} webhooks: {ratio:.1f}x")
        print(f"api peak RSS: {peak_rss_mb(api.pid) or 0:.1f} MB")
    finally:
        stop_process(worker)
        stop_process(api)
        if sdp is not None:
            sdp.stop()
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="hookrules benchmark (prints figures only)")
    parser.add_argument("--events", type=int, default=2000, help="webhooks in the main run (1-20000)")
    parser.add_argument("--compare-events", type=int, default=100,
                        help="webhooks in each engine-vs-arq-defaults run; 0 skips the comparison (max 2000)")
    parser.add_argument("--concurrency", type=int, default=20, help="webhooks in flight at once (1-200)")
    parser.add_argument("--timeout", type=float, default=30.0, help="max seconds to wait for the PUTs of one run")
    args = parser.parse_args()
    # Bounds, so no flag can turn this into an unbounded load test.
    args.events = max(1, min(args.events, 20000))
    args.compare_events = max(0, min(args.compare_events, 2000))
    args.concurrency = max(1, min(args.concurrency, 200))
    args.timeout = max(1.0, min(args.timeout, 120.0))
    started = time.perf_counter()
    print("== decide() and conditions (in process)")
    bench_decide()
    print(f"== end to end over 127.0.0.1 (concurrency {args.concurrency})")
    bench_end_to_end(args)
    print(f"total bench time: {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
