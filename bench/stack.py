"""What the end-to-end sections run: embedded Valkey, the sandbox, the api, workers, the bare
Starlette baseline, each a real process on 127.0.0.1, all stopped (newest first) and the
temporary directory removed when the ExitStack given to Stack closes: at the end, on an error
or on Ctrl-C."""

from __future__ import annotations

import contextlib
import io
import json
import pstats
import signal
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import redis

import payloads
import procs
from engine import store
from engine.embedded_redis import start_embedded

SECRET = "bench-secret-0000"  # a bench value, not a credential
ADMIN_TOKEN = "bench-admin-token"  # a bench value, not a credential
SDP_TOKEN = "bench-static-sdp-token"  # accepted by the sandbox as a static token
PORTAL = "bench"
SDP_ACCEPT = "application/vnd.manageengine.sdp.v3+json"
READY_S = 60.0

# The engine's safety settings a benchmark would run into (see bench/README.md, "What is lifted").
LIFTED = {
    "HOOKRULES_SDP_RATE": "1000000",  # default 5 requests/s per connector
    "HOOKRULES_SDP_BURST": "1000000",  # default 5
    "HOOKRULES_SDP_MAX_CONCURRENT": "10000",  # default 5 in flight
    "HOOKRULES_LOOP_LIMIT": "1000000000",  # default: a 6th action by one rule on one entity within 600 s is dropped
}


class Failed(Exception):
    """A part of the stack did not come up or died; the message carries its log's tail."""


class Stack:
    def __init__(self, started: contextlib.ExitStack, rules: list[dict], profile: bool = False) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="hookrules-bench-"))
        started.callback(shutil.rmtree, self.tmp, ignore_errors=True)
        self.rules_dir = payloads.write_rules(self.tmp / "rules", rules)
        self.server = start_embedded(self.tmp / "valkey", port=procs.free_port())
        started.callback(self.server.stop)
        self.redis_url = self.server.connection_url + "/0"
        self.db = started.enter_context(redis.Redis.from_url(self.redis_url))
        self.valkey_pid = int(self.db.info("server")["process_id"])
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.profile = profile  # api, workers and sandbox under cProfile; printed at the end
        self.profiles: list[Path] = []
        started.callback(self.print_profiles)  # runs after stop_all (LIFO), before the rmtree
        started.callback(self.stop_all)
        self.ports = {name: procs.free_port() for name in ("sandbox", "api", "bare")}
        self.ids: list[str] = []

    # ---- settings --------------------------------------------------------------------------

    def url(self, name: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[name]}{path}"

    def env(self, port: str = "api") -> dict[str, str]:
        env = procs.clean_env()
        env.update(
            REDIS_URL=self.redis_url, HOOKRULES_PORT=str(self.ports[port]), HOOKRULES_SOURCE_SDP_SECRET=SECRET,
            HOOKRULES_SOURCES_FILE=str(procs.ROOT / "bench" / "sources.yaml"), HOOKRULES_RULES_DIR=str(self.rules_dir),
            HOOKRULES_ADMIN_TOKEN=ADMIN_TOKEN, HOOKRULES_SDP_URL=self.url("sandbox", f"/app/{PORTAL}"),
            HOOKRULES_SDP_TOKEN=SDP_TOKEN, HOOKRULES_SANDBOX_TOKEN=SDP_TOKEN,
            # Beats every second instead of 5, so the bench sees a new worker sooner.
            HOOKRULES_HEARTBEAT="1", **LIFTED,
        )
        return env

    # ---- processes -------------------------------------------------------------------------

    def spawn(self, name: str, args: list[str], port: str = "api") -> subprocess.Popen[bytes]:
        if self.profile and args[1:3] == ["-m", "engine.cli"]:
            out = self.tmp / f"profile-{name.split('-')[0]}-{len(self.profiles)}.pstats"
            self.profiles.append(out)
            args = [args[0], str(procs.ROOT / "bench" / "profiled.py"), str(out), *args[1:]]
        proc = procs.spawn(args, self.env(port), self.log(name))
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> Path:
        return self.tmp / f"{name.split('-')[0]}.log"

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None:
            procs.stop(proc, sig=signal.SIGINT if self.profile else signal.SIGTERM)

    def stop_all(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop(name)

    def print_profiles(self, top: int = 25) -> None:
        """Where the CPU went in each kind of process, all its runs together (--profile)."""
        roles: dict[str, list[str]] = {}
        for path in self.profiles:
            if path.exists():
                roles.setdefault(path.name.split("-")[1], []).append(str(path))
        for role, files in roles.items():
            out = io.StringIO()
            stats = pstats.Stats(*files, stream=out)
            stats.sort_stats("tottime").print_stats(top)
            print(f"\n## Profile: {role} ({len(files)} process(es)), top {top} functions by own CPU time\n")
            lines = [line for line in out.getvalue().splitlines() if line.strip() and ".pstats" not in line]
            print("\n".join(lines)[:12000])

    def pids(self) -> dict[str, int]:
        return {"valkey": self.valkey_pid, **{name: p.pid for name, p in self.procs.items()}}

    def cpu(self) -> dict[str, float]:
        return {name: procs.cpu_s(pid) for name, pid in self.pids().items()}

    def check_alive(self, name: str) -> None:
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is not None:
            raise Failed(f"{name} exited with status {proc.returncode}; {self.log(name)} ends with:\n{self.tail(name)}")

    def tail(self, name: str, lines: int = 15) -> str:
        try:
            return "\n".join(self.log(name).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def wait_http(self, name: str, url: str) -> None:
        deadline = time.monotonic() + READY_S
        while time.monotonic() < deadline:
            self.check_alive(name)
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise Failed(f"{name} did not answer {url} within {READY_S:g} s; its log ends with:\n{self.tail(name)}")

    def start_sandbox(self) -> None:
        self.spawn("sandbox", procs.python("-m", "engine.cli", "sandbox", "--port", str(self.ports["sandbox"])))
        self.wait_http("sandbox", self.url("sandbox", "/_sandbox/stats"))

    def start_api(self) -> None:
        self.spawn("api", procs.python("-m", "engine.cli", "api"))
        self.wait_http("api", self.url("api", "/health"))

    def start_bare(self, access_log: bool = True) -> str:
        name = "bare" if access_log else "bare-no-access-log"
        flags = [] if access_log else ["--no-access-log"]
        self.spawn(name, procs.python(str(procs.ROOT / "bench" / "bare_api.py"), *flags), port="bare")
        self.wait_http(name, self.url("bare", "/health"))
        return name

    def start_workers(self, count: int) -> list[str]:
        names = [f"worker-{n}" for n in range(1, count + 1)]
        for name in names:
            self.spawn(name, procs.python("-m", "engine.cli", "worker"))
        self.wait_workers(names)
        return names

    def wait_workers(self, names: list[str]) -> None:
        """Each worker writes the heartbeat on start-up and every second after."""
        waiting = {f":{self.procs[name].pid}" for name in names}
        deadline = time.monotonic() + READY_S
        while waiting and time.monotonic() < deadline:
            for name in names:
                self.check_alive(name)
            beat = self.db.get(store.HEARTBEAT_KEY)
            if beat:
                worker = json.loads(beat)["worker"]
                waiting = {w for w in waiting if not worker.endswith(w)}
            time.sleep(0.02)
        if waiting:
            raise Failed(f"workers {sorted(waiting)} sent no heartbeat within {READY_S:g} s:\n{self.tail(names[0])}")

    def stop_workers(self) -> None:
        for name in [n for n in self.procs if n.startswith("worker-")]:
            self.stop(name)

    # ---- data ------------------------------------------------------------------------------

    def create_milestones(self, count: int) -> list[str]:
        """The sandbox updates only milestones it holds: add `count` to the seeded project
        through its SDP API, as a client would, and keep their ids."""
        url = self.url("sandbox", f"/app/{PORTAL}/api/v3/projects/{payloads.PROJECT_ID}/milestones")
        headers = {"Accept": SDP_ACCEPT, "Authorization": f"Zoho-oauthtoken {SDP_TOKEN}"}
        with httpx.Client(headers=headers, timeout=10) as client:
            for n in range(count):
                milestone = {"title": f"Bench milestone {n}", "priority": {"name": "Medium"}, "status": {"name": "Open"},
                             "scheduled_start_time": {"value": "1421988300000"},
                             "scheduled_end_time": {"value": str(payloads.SCHEDULED_END)}}
                reply = client.post(url, data={"input_data": json.dumps({"milestone": milestone})})
                if reply.status_code != 201:
                    raise Failed(f"the sandbox refused a new milestone: HTTP {reply.status_code} {reply.text[:300]}")
                self.ids.append(reply.json()["milestone"]["id"])
        return self.ids

    def sandbox_puts(self) -> int:
        requests = httpx.get(self.url("sandbox", "/_sandbox/stats"), timeout=5).json()["requests"]
        return sum(n for key, n in requests.items() if key.startswith("PUT "))
