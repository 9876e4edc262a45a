"""Child processes: started in a session of their own (Ctrl-C reaches only the bench, which then
stops each child once), killed by the kernel if the bench itself dies, and measured through
/proc (CPU seconds, resident memory)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from engine.embedded_redis import die_with_parent

ROOT = Path(__file__).resolve().parent.parent
STOP_WAIT_S = 15.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn(args: list[str], env: dict[str, str], log: Path, stdout: int | None = None) -> subprocess.Popen[bytes]:
    """Start a child; its output goes to `log` (or stdout to a pipe when asked)."""
    with log.open("ab") as out:
        return subprocess.Popen(args, env=env, cwd=ROOT, stdout=stdout if stdout is not None else out,
                                stderr=out, start_new_session=True, preexec_fn=die_with_parent)


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def stop(proc: subprocess.Popen[bytes], wait_s: float = STOP_WAIT_S, sig: int = signal.SIGTERM) -> None:
    """SIGTERM (uvicorn and arq shut down cleanly on it), then SIGKILL if it lingers. Under
    cProfile, SIGINT: uvicorn raises the signal again once it has shut down, and only
    KeyboardInterrupt (not SIGTERM's default action) lets cProfile write its file."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def wait_with_cpu(proc: subprocess.Popen[bytes], timeout_s: float) -> tuple[int, float]:
    """Wait for a child to end (killing it after timeout_s) and return its exit status and the
    CPU seconds it used, from wait4's rusage: /proc is gone once it has exited. Interrupted
    (Ctrl-C), the child is killed and reaped before the interruption goes on."""
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                return proc.returncode, usage.ru_utime + usage.ru_stime
            if time.monotonic() > deadline:
                proc.kill()
                deadline = float("inf")
            time.sleep(0.02)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            proc.wait(timeout=10)
        raise


def cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            return next((int(line.split()[1]) / 1024 for line in status if line.startswith(field + ":")), 0.0)
    except OSError:
        return 0.0


def self_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return {"cpu": model, "cores": str(os.cpu_count()), "python": sys.version.split()[0], "load average at start": load}


def clean_env() -> dict[str, str]:
    """This environment without HOOKRULES_* and REDIS_URL: an inherited one would silently
    change what is measured."""
    return {k: v for k, v in os.environ.items() if not k.startswith("HOOKRULES_") and k != "REDIS_URL"}
