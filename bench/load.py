"""Sending webhooks: wrk when it is on PATH (duration runs), else bench/loadgen.py; counted and
paced runs always use bench/loadgen.py. Either way the generator is a process of its own, and
its CPU seconds are reported, so a saturated generator shows."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import payloads
import procs

LUA = Path(__file__).resolve().parent / "wrk_hooks.lua"


@dataclass
class Load:
    generator: str
    requests: int = 0
    seconds: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    not_2xx: int = 0
    errors: int = 0
    cpu_s: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    first_sent: float = 0.0  # epoch seconds (loadgen.py only)
    problem: str = ""
    server_cpu_us: float = 0.0  # set by the ingest section: the server's CPU per request

    @property
    def per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def saturated(self) -> bool:
        """The generator used (almost) a whole core: it may be what limits the rate."""
        return self.seconds > 0 and self.cpu_s / self.seconds > 0.9


@dataclass
class Target:
    """Where to send and what: the URL, the source token, the milestone ids to cycle over."""

    url: str
    token: str
    ids: list[str]
    workdir: Path

    def files(self) -> tuple[Path, Path]:
        template = payloads.write_template(self.workdir / "body-template.json")
        ids = self.workdir / "ids.txt"
        ids.write_text("\n".join(self.ids) + "\n")
        return template, ids


def generator_name(prefer_wrk: bool = True) -> str:
    return "wrk" if prefer_wrk and shutil.which("wrk") else "loadgen.py"


def timed(target: Target, connections: int, duration_s: float, first_pe: int, prefer_wrk: bool = True) -> Load:
    """Full speed for duration_s seconds."""
    if generator_name(prefer_wrk) == "wrk":
        return _wrk(target, connections, duration_s, first_pe)
    return _loadgen(target, connections, first_pe, ["--duration", str(duration_s)], duration_s + 60)


def counted(target: Target, connections: int, count: int, first_pe: int, rate: float | None = None,
            max_s: float = 1800.0) -> Load:
    """Exactly `count` webhooks, at full speed or paced at `rate` a second."""
    extra = ["--count", str(count)] + (["--rate", str(rate)] if rate else [])
    return _loadgen(target, connections, first_pe, extra, max_s)


def _wrk(target: Target, connections: int, duration_s: float, first_pe: int) -> Load:
    template, ids = target.files()
    log = target.workdir / "wrk.out"
    args = ["wrk", "-t1", f"-c{connections}", f"-d{duration_s:g}s", "--timeout", "10s", "-s", str(LUA), target.url,
            "--", target.token, str(template), str(ids), str(first_pe)]
    log.write_bytes(b"")
    proc = procs.spawn(args, procs.clean_env(), log)
    code, cpu = procs.wait_with_cpu(proc, duration_s + 60)
    line = next((x for x in log.read_text(errors="replace").splitlines() if x.startswith("BENCHJSON ")), None)
    if code != 0 or line is None:
        return Load("wrk", cpu_s=cpu, problem=f"wrk exited {code}: {log.read_text(errors='replace')[-500:]}")
    data = json.loads(line.removeprefix("BENCHJSON "))
    errors = data["connect"] + data["read"] + data["write"] + data["timeout"]
    return Load("wrk", data["requests"], data["duration_us"] / 1e6, data["p50_us"] / 1000, data["p99_us"] / 1000,
                not_2xx=data["status"], errors=errors, cpu_s=cpu)


def _loadgen(target: Target, connections: int, first_pe: int, extra: list[str], max_s: float) -> Load:
    template, ids = target.files()
    out = target.workdir / "loadgen.json"
    out.unlink(missing_ok=True)
    args = procs.python(str(Path(__file__).with_name("loadgen.py")), "--url", target.url, "--token", target.token,
                        "--template", str(template), "--ids", str(ids), "--first-pe", str(first_pe),
                        "--connections", str(connections), "--out", str(out), *extra)
    proc = procs.spawn(args, procs.clean_env(), target.workdir / "loadgen.log")
    code, cpu = procs.wait_with_cpu(proc, max_s)
    if code != 0 or not out.exists():
        tail = (target.workdir / "loadgen.log").read_text(errors="replace")[-800:]
        return Load("loadgen.py", cpu_s=cpu, problem=f"loadgen.py exited {code}: {tail}")
    data = json.loads(out.read_text())
    statuses = data["statuses"]
    not_2xx = sum(n for status, n in statuses.items() if not status.startswith("2"))
    return Load("loadgen.py", data["requests"], data["seconds"], data["p50_ms"], data["p99_ms"], not_2xx,
                data["errors"], cpu, statuses, data["first_sent"])
