"""The image's HEALTHCHECK: asks the process the container runs, whatever its role.

One image runs `hookrules api`, `hookrules worker` and the sandbox, and Docker gives them all
the same HEALTHCHECK, so this looks at the container's main process (PID 1, or the pid given
as the first argument) to see which one it is:

- `hookrules api`: GET /health on $HOOKRULES_PORT (and $HOOKRULES_HOST, 127.0.0.1 for a
  wildcard) must answer 200. /health says the process answers; it does not fail when Redis
  or the workers are away (that is /ready), so Docker does not restart an API that is only
  waiting for Redis.
- `hookrules sandbox [--host H] [--port N]`: GET /_sandbox/stats on that port (8001 by
  default) and host (127.0.0.1 for a wildcard such as compose.yaml's 0.0.0.0) must answer 200.
- `hookrules worker`, and anything else: healthy while it runs. A worker has no port, and
  the heartbeat in Redis is shared by all workers, so nothing here can tell one worker's
  health; the workers as a whole are judged by the API's /ready.

Standard library only: it runs with the image's Python, quickly, every interval.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

WILDCARDS = {"", "0.0.0.0", "::", "[::]", "localhost"}
# `hookrules sandbox` defaults (engine/cli.py); its settings from the environment play no part.
SANDBOX_HOST, SANDBOX_PORT = "127.0.0.1", "8001"


def command_line(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def role(argv: list[str]) -> tuple[str, list[str]]:
    """The hookrules subcommand the process runs, and the arguments after it."""
    for index, arg in enumerate(argv):
        if os.path.basename(arg) == "hookrules" or arg == "engine.cli":
            rest = argv[index + 1:]
            return (rest[0] if rest else ""), rest[1:]
    return "", []


def option(args: list[str], name: str, default: str) -> str:
    for index, arg in enumerate(args):
        if arg == name and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return default


def local_host(host: str) -> str:
    """Where to ask a server listening on `host`: loopback for a wildcard address."""
    if host in WILDCARDS:
        return "127.0.0.1"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


# No proxies: an HTTP_PROXY set for the container's outbound calls must not catch these.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def answers(url: str) -> bool:
    try:
        with OPENER.open(url, timeout=3) as reply:
            return reply.status == 200
    except OSError as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return False


def main(argv: list[str]) -> int:
    pid = int(argv[1]) if len(argv) > 1 else 1
    command, rest = role(command_line(pid))
    if command == "api":
        host, port = local_host(os.environ.get("HOOKRULES_HOST", "127.0.0.1")), os.environ.get("HOOKRULES_PORT", "8000")
        return 0 if answers(f"http://{host}:{port}/health") else 1
    if command == "sandbox":
        host, port = local_host(option(rest, "--host", SANDBOX_HOST)), option(rest, "--port", SANDBOX_PORT)
        return 0 if answers(f"http://{host}:{port}/_sandbox/stats") else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
