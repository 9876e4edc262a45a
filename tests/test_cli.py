"""The `hookrules` command as an admin runs it: check, api/worker without Redis, and `up`
starting everything and leaving no process behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conftest import ADMIN, ROOT, SECRET, base_env, free_port, http_status, wait_until


def hookrules(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        env=env or base_env(), cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )


def test_check_lists_the_rules() -> None:
    done = hookrules("check")
    assert done.returncode == 0, done.stderr
    assert "OK: 3 rule(s)" in done.stdout
    assert "close-finished-milestone" in done.stdout


def test_check_reports_every_problem_and_fails(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("id: x\non: {source: sdp}\nthen: []\n")
    done = hookrules("check", str(tmp_path))
    assert done.returncode == 1
    assert f"{tmp_path / 'bad.yaml'}:2: rule 'x': 'on' needs a source and an event" in done.stderr
    assert f"{tmp_path / 'bad.yaml'}:3: rule 'x': 'then' must be a list of actions" in done.stderr
    assert "fix them and check again" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("args", "said"), [
    (("--limit", "0"), "argument --limit: '0': give a number above 0"),
    (("--hours", "-1"), "argument --hours: '-1': give a number above 0"),
    (("--limit", "lots"), "argument --limit: 'lots' is not a number"),
])
def test_events_refuses_numbers_that_mean_nothing(args: tuple[str, ...], said: str) -> None:
    done = hookrules("events", *args)
    assert done.returncode == 2 and said in done.stderr, done.stderr


def test_api_and_worker_refuse_to_start_with_bad_rules(tmp_path: Path, redis_url: str) -> None:
    (tmp_path / "bad.yaml").write_text("id: x\n")
    env = base_env(REDIS_URL=redis_url, HOOKRULES_RULES_DIR=str(tmp_path))
    for command in ("api", "worker", "up"):
        done = hookrules(command, env=env)
        assert done.returncode == 1, (command, done.stderr)
        assert "problem(s); fix them and start again" in done.stderr
        assert f"{tmp_path / 'bad.yaml'}:1: rule 'x'" in done.stderr


def test_api_without_redis_url_says_what_to_do(tmp_path: Path) -> None:
    # Even beside a running `up`: a part of the service is told where it belongs, never guesses.
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "redis-url").write_text(f"redis://127.0.0.1:9/0\n{os.getpid()}\n")
    for command in ("api", "worker"):
        done = hookrules(command, env=base_env(HOOKRULES_DATA_DIR=str(tmp_path / "data")))
        assert done.returncode == 1, (command, done.stderr)
        assert "REDIS_URL is not set" in done.stderr and "hookrules up" in done.stderr and "Traceback" not in done.stderr
    status = hookrules("status", env=base_env(HOOKRULES_DATA_DIR=str(tmp_path / "none")))  # no `up` running from there
    assert status.returncode == 1 and "no `hookrules up` is running" in status.stderr


def test_bad_setting_is_a_plain_message() -> None:
    done = hookrules("check", env=base_env(HOOKRULES_MAX_BODY="lots"))
    assert done.returncode == 2
    assert "HOOKRULES_MAX_BODY='lots' is not a number" in done.stderr
    pasted = hookrules("check", env=base_env(HOOKRULES_ZOHO_PORTAL="https://projects.zoho.com/portal/mycompany"))
    assert pasted.returncode == 2
    assert "HOOKRULES_ZOHO_PORTAL='https://projects.zoho.com/portal/mycompany' must be the portal's name or id alone" in pasted.stderr
    assert hookrules("check", env=base_env(HOOKRULES_ZOHO_PORTAL="2063927")).returncode == 0


def descendants(pid: int) -> set[int]:
    """Every process below `pid`, from /proc (Linux)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def settled(outcome: dict | None) -> dict | None:
    """An action's record once it is done or failed (not while it is retrying)."""
    return outcome if outcome and outcome["outcome"] in ("done", "failed") else None


def two_free_ports() -> int:
    """A free port whose next one is free too: `up --demo` puts the sandbox on port + 1."""
    while True:
        port = free_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue


def test_up_runs_everything_and_ctrl_c_leaves_nothing(tmp_path: Path) -> None:
    port = two_free_ports()
    env = base_env(HOOKRULES_PORT=str(port), HOOKRULES_DATA_DIR=str(tmp_path / "data"))
    env.pop("HOOKRULES_SOURCE_SDP_SECRET")  # --demo makes its own
    log = (tmp_path / "up.log").open("wb")
    # A session of its own, as a shell gives a command: Ctrl-C is SIGINT to its whole process
    # group, so whatever `up` starts in that group gets the signal too, not only `up`.
    up = subprocess.Popen([sys.executable, "-m", "engine.cli", "up", "--demo"], env=env, cwd=ROOT,
                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert wait_until(lambda: http_status(f"http://127.0.0.1:{port}/ready") == 200, timeout_s=40), \
            (tmp_path / "up.log").read_text()
        assert wait_until(lambda: "hookrules is running" in (tmp_path / "up.log").read_text(), timeout_s=10)
        processes = descendants(up.pid)
        assert len(processes) >= 4  # valkey, sandbox, api, worker

        # The demo works as the banner says: the sample webhook closes the stand-in's milestone.
        secret_file = tmp_path / "data" / "demo-secret"
        assert secret_file.stat().st_mode & 0o077 == 0
        secret = secret_file.read_text().strip()
        assert secret not in (tmp_path / "up.log").read_text()
        reply = httpx.post(f"http://127.0.0.1:{port}/hooks/sdp", timeout=10,
                           content=(ROOT / "samples" / "milestone-completed.json").read_bytes(),
                           headers={"X-Hook-Token": secret, "Content-Type": "application/json"})
        assert reply.status_code == 202, reply.text
        event_url = f"http://127.0.0.1:{port}/events/{reply.json()['event_id']}"
        outcome = wait_until(lambda: settled(httpx.get(event_url, headers=ADMIN, timeout=5).json()["actions"].get("close-finished-milestone:0")))
        assert outcome and outcome["outcome"] == "done" and outcome["http_status"] == 200, outcome
        milestone = httpx.get(f"http://127.0.0.1:{port + 1}/_sandbox/milestones/2258743870606263/2007594064055157", timeout=5)
        assert milestone.json()["status"]["name"] == "Closed"

        # Another terminal, same directory, no REDIS_URL: the commands find up's Redis.
        status = hookrules("status", env=env)
        assert status.returncode == 0 and "status     ok" in status.stdout, status.stdout + status.stderr
        assert "warning" not in status.stdout and "None" not in status.stdout, status.stdout
        listed = hookrules("events", env=env)
        assert listed.returncode == 0 and reply.json()["event_id"] in listed.stdout, listed.stdout + listed.stderr
        assert (tmp_path / "data" / "redis-url").exists()

        os.killpg(up.pid, signal.SIGINT)  # Ctrl-C
        assert up.wait(timeout=30) == 0
        assert wait_until(lambda: not any(alive(pid) for pid in processes), timeout_s=10), \
            [pid for pid in processes if alive(pid)]
        assert http_status(f"http://127.0.0.1:{port}/ready") is None
        # Stopped in order: Redis outlives the worker, which needs it to hand back its work.
        said = (tmp_path / "up.log").read_text()
        assert "unreachable" not in said and "did not stop" not in said, said[-3000:]
        assert not (tmp_path / "data" / "redis-url").exists()  # nothing points at a stopped server
        gone = hookrules("status", env=env)
        assert gone.returncode == 1 and "no `hookrules up` is running" in gone.stderr
    finally:
        stop(up)
        log.close()


def start_up(tmp_path: Path, **settings: str) -> tuple[subprocess.Popen[bytes], dict[str, str], Path]:
    """`hookrules up` (no demo) on a free port with its data under tmp_path, ready: the process,
    its environment and its log."""
    port = free_port()
    env = base_env(HOOKRULES_PORT=str(port), HOOKRULES_DATA_DIR=str(tmp_path / "data"), **settings)
    log = tmp_path / "up.log"
    up = subprocess.Popen([sys.executable, "-m", "engine.cli", "up"], env=env, cwd=ROOT,
                          stdout=log.open("wb"), stderr=subprocess.STDOUT)
    if not wait_until(lambda: http_status(f"http://127.0.0.1:{port}/ready") == 200, timeout_s=40):
        stop(up)
        raise AssertionError(log.read_text())
    return up, env, log


def test_up_stops_everything_when_a_child_dies(tmp_path: Path) -> None:
    up, env, log = start_up(tmp_path, HOOKRULES_SOURCE_SDP_SECRET=SECRET)
    try:
        processes = descendants(up.pid)
        api = next(pid for pid in processes if b"\0api" in Path(f"/proc/{pid}/cmdline").read_bytes())
        os.kill(api, signal.SIGKILL)
        assert up.wait(timeout=30) == 1
        assert "the api stopped" in log.read_text()
        assert wait_until(lambda: not any(alive(pid) for pid in processes), timeout_s=10)
    finally:
        stop(up)


def test_up_killed_outright_takes_its_children_and_redis_along(tmp_path: Path) -> None:
    up, env, _ = start_up(tmp_path)
    try:
        processes = descendants(up.pid)
        assert any(b"valkey-server" in Path(f"/proc/{pid}/cmdline").read_bytes() for pid in processes)
        up.kill()  # SIGKILL: no chance to clean up; the kernel tells the children (Linux)
        up.wait(timeout=10)
        assert wait_until(lambda: not any(alive(pid) for pid in processes), timeout_s=15), \
            [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in processes if alive(pid)]
        # Its address file stays behind, but names a dead `up`: no command follows it.
        assert (tmp_path / "data" / "redis-url").exists()
        stale = hookrules("status", env=env)
        assert stale.returncode == 1 and "no `hookrules up` is running" in stale.stderr, stale.stderr
    finally:
        stop(up)


def stop(up: subprocess.Popen[bytes]) -> None:
    """End a test's `up` the way a user would (Ctrl-C), so a failed test leaves nothing behind."""
    if up.poll() is None:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=30)
        except subprocess.TimeoutExpired:
            up.kill()


def test_a_closed_terminal_stops_up_in_order(tmp_path: Path) -> None:
    """SIGHUP, what closing the terminal sends, stops everything as Ctrl-C does."""
    up, _, log = start_up(tmp_path)
    try:
        processes = descendants(up.pid)
        up.send_signal(signal.SIGHUP)
        assert up.wait(timeout=30) == 0, log.read_text()
        assert wait_until(lambda: not any(alive(pid) for pid in processes), timeout_s=10)
        assert not (tmp_path / "data" / "redis-url").exists()
    finally:
        stop(up)


def test_output_into_a_closed_pipe_is_no_traceback() -> None:
    """`hookrules check | head -1`: the reader goes away; the command ends quietly."""
    done = subprocess.Popen([sys.executable, "-m", "engine.cli", "check"], env={**base_env(), "PYTHONUNBUFFERED": "1"},
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    done.stdout.close()  # before the command has printed anything: its first line meets a closed pipe
    _, errors = done.communicate(timeout=60)
    assert done.returncode == 0 and b"Traceback" not in errors and b"BrokenPipeError" not in errors, errors.decode()
