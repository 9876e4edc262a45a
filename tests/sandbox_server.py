"""Run an ASGI app (the sandbox, or any other) with uvicorn on a free loopback port, in a
background thread, for tests that talk to it over real sockets.

    with running_sandbox(SandboxSettings(static_tokens=frozenset({"t"}))) as sandbox:
        httpx.get(sandbox.url + "/_sandbox/stats")
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn

from engine.sandbox import SandboxSettings, create_sandbox


@dataclass(frozen=True)
class Running:
    url: str  # http://127.0.0.1:<port>, no trailing slash


@contextmanager
def running_app(app: object, start_timeout_s: float = 10.0) -> Iterator[Running]:
    """Serve `app` until the block ends; the server is up when the block starts."""
    # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets that say so, and
    # without it every keep-alive reply waits 40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))  # the kernel picks a free port, and nobody can take it meanwhile
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off", server_header=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="test-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + start_timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        yield Running(f"http://127.0.0.1:{sock.getsockname()[1]}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def running_sandbox(settings: SandboxSettings | None = None) -> Iterator[Running]:
    """A fresh sandbox (default settings unless given) on a free port."""
    with running_app(create_sandbox(settings or SandboxSettings())) as running:
        yield running
