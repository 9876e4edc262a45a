"""Shared pieces for the fault tests: a sandbox whose SDP PUTs are counted per milestone, and
a service (API + workers) pointed at it."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs

import redis

from conftest import Service, base_env, run_service, start, with_db
from engine.sandbox import SandboxSettings, create_sandbox
from sandbox_server import running_app

PROJECT = "2258743870606263"
TOKEN = "fault-token"


@dataclass
class Applied:
    """Every SDP milestone PUT the sandbox answered 2xx, by milestone id."""

    puts: Counter = field(default_factory=Counter)
    bodies: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def counting(app, applied: Applied):  # noqa: ANN001, ANN201
    """ASGI middleware: count PUTs to a milestone that the sandbox accepted."""

    async def middleware(scope, receive, send):  # noqa: ANN001, ANN202
        if scope["type"] != "http" or scope["method"] != "PUT" or "/milestones/" not in scope["path"]:
            return await app(scope, receive, send)
        chunks = []

        async def replay_receive():  # noqa: ANN202
            message = await receive()
            chunks.append(message.get("body", b""))
            return message

        status = {}

        async def watch_send(message):  # noqa: ANN001, ANN202
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        await app(scope, replay_receive, watch_send)
        if 200 <= status.get("code", 0) < 300:
            body = parse_qs(b"".join(chunks).decode())
            with applied.lock:
                applied.puts[scope["path"].rsplit("/", 1)[1]] += 1
                applied.bodies.append(json.loads(body["input_data"][0]))

    return middleware


@contextmanager
def counted_sandbox() -> Iterator[tuple[str, Applied]]:
    applied = Applied()
    with running_app(counting(create_sandbox(SandboxSettings(static_tokens=frozenset({TOKEN}))), applied)) as running:
        yield running.url, applied


def fault_service(tmp_path: Path, redis_url: str, db: int, sandbox_url: str, rules_dir: Path, workers: int = 1, **extra: str) -> Service:
    url = with_db(redis_url, db)
    client = redis.Redis.from_url(url)
    client.flushdb()
    env = base_env(REDIS_URL=url, HOOKRULES_RULES_DIR=str(rules_dir), HOOKRULES_SDP_URL=f"{sandbox_url}/app/itdesk",
                   HOOKRULES_SDP_TOKEN=TOKEN, HOOKRULES_RELOAD_INTERVAL="0.2", **extra)
    service = run_service(tmp_path, env, db=client)
    for _ in range(workers - 1):
        service.processes.append(start(["worker"], {**env, "HOOKRULES_PORT": "0"}, tmp_path))
    return service


def milestone_body(milestone_id: str, **fields: object) -> bytes:
    return json.dumps({"milestone": {"id": milestone_id, "project": {"id": PROJECT}, **fields}}).encode()
