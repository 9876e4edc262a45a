"""The system tests/test_scale.py runs, and the webhooks it sends.

Everything is a real process on 127.0.0.1: a Valkey server of the test's own (the session's
shared server has no database to spare), `hookrules api` twice, `hookrules worker` three times
(`Stack.start_worker` starts more mid-run), and tests/scale_receiver.py, an SDP stand-in that
records every request it applies. The rules are two: one whose action writes each webhook's
event id to a milestone of its own on the receiver, and one scheduled every minute that lists
a project there and updates each milestone listed.

`send_webhooks` sends each entity's events one after the other (the next only once the
previous one got its 202), alternately to the two APIs, all entities at once, so the arrival
order of an entity's events is their sequence numbers.

Bounded: every wait has a deadline and says what is missing; every process is stopped in
`finally`, and dies with the test process if that is killed.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import redis

from conftest import ROOT, SECRET, Process, base_env, free_port
from engine.embedded_redis import die_with_parent, start_embedded

ENTITIES = 200
FIRST_SEQ = 10  # sequence numbers 10..34 at 25 per entity: always two digits, so entity id + seq is a unique target id
PROJECT = "2000000000001"  # the webhooks' milestones
SCAN_PROJECT = "3000000000001"  # the scheduled rule's list
SCAN_ITEMS = 3
SDP_TOKEN = "scale-sdp-token"  # a test value
RULE_ID, SCAN_RULE_ID = "scale-apply", "scale-scan"
STREAM, GROUP = "hookrules:events:stream", "workers"

APPLY_RULE = f"""\
id: {RULE_ID}
description: Each change of a milestone's seq writes that event's id to a milestone of its own.
on: {{source: sdp, event: milestone.updated}}
when: {{changed: milestone.seq}}
then:
  - sdp.milestones.update:
      project_id: "{{{{ milestone.project.id }}}}"
      milestone_id: "{{{{ milestone.id }}}}{{{{ milestone.seq }}}}"
      fields: {{title: "{{{{ event.id }}}}", description: "entity {{{{ milestone.id }}}} seq {{{{ milestone.seq }}}}"}}
"""
SCAN_RULE = f"""\
id: {SCAN_RULE_ID}
description: Every minute, list a project and touch each milestone listed, once per tick.
on:
  schedule: "* * * * *"
  fetch:
    sdp.milestones.list:
      project_id: "{SCAN_PROJECT}"
      list_info: {{search_criteria: {{field: title, condition: "is not", value: "{{{{ now }}}}"}}}}
then:
  - sdp.milestones.update:
      project_id: "{SCAN_PROJECT}"
      milestone_id: "{{{{ payload.scan.tick }}}}{{{{ milestone.id }}}}"
      fields: {{title: "tick {{{{ payload.scan.tick }}}} item {{{{ milestone.id }}}}"}}
"""
SOURCES = """\
sources:
  sdp:
    shape: sdp
    default_event: "{kind}.updated"
    auth: [token]
    rate: 1000000   # the default 100 webhooks/s per API process would answer 429 here
"""
# Lines left out of the logs quoted in failure messages: one per webhook and per event.
NOISE = ("uvicorn.access", "hookrules.worker: event evt_", "hookrules.api: stored ")


def entity_id(n: int) -> str:
    return str(7_000_000 + n)


def tail(text: str, chars: int = 2500) -> str:
    lines = [line for line in text.splitlines() if not any(noise in line for noise in NOISE)]
    return "\n".join(lines)[-chars:]


# ---- processes ----

@dataclass
class Stack:
    """The running system: Valkey, the receiver, two APIs and the workers."""

    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    db: redis.Redis | None = None
    receiver_url: str = ""
    api_urls: list[str] = field(default_factory=list)
    workers: list[Process] = field(default_factory=list)
    children: list[Process] = field(default_factory=list)

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> Process:
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen([sys.executable, *args], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                     preexec_fn=die_with_parent)
        child = Process(name, popen, log)
        self.children.append(child)
        return child

    def start_worker(self) -> Process:
        worker = self.spawn(f"worker-{len(self.workers) + 1}", ["-m", "engine.cli", "worker"], {**self.env, "HOOKRULES_PORT": "0"})
        self.workers.append(worker)
        return worker

    def logs(self, prefix: str = "worker", chars: int = 2500) -> str:
        return "\n".join(f"--- {c.name} (exit {c.popen.poll()}, log {c.log})\n{tail(c.output(), chars)}"
                         for c in self.children if c.name.startswith(prefix))

    def summary(self) -> dict[str, Any]:
        return get_json(self.receiver_url + "/_summary") or {}

    def records(self) -> dict[str, Any]:
        records = get_json(self.receiver_url + "/_records")
        assert records is not None, f"the receiver did not answer\n{self.logs('receiver')}"
        return records

    def consumers(self) -> dict[str, int]:
        """The event stream's consumers (workers that have read), with how many entries each holds."""
        assert self.db is not None
        try:
            return {c["name"].decode(): int(c["pending"]) for c in self.db.xinfo_consumers(STREAM, GROUP)}
        except redis.ResponseError:
            return {}


def consumer_name(worker: Process) -> str:
    return f"{socket.gethostname()}:{worker.popen.pid}"  # how a worker names itself on the event stream


@contextmanager
def scale_stack(tmp_path: Path, **settings: str) -> Iterator[Stack]:
    """Everything started and ready (each worker reading the stream); everything stopped after."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "apply.yaml").write_text(APPLY_RULE)
    (rules / "scan.yaml").write_text(SCAN_RULE)
    (tmp_path / "sources.yaml").write_text(SOURCES)
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    stack = Stack(log_dir)
    valkey_port, receiver_port = free_port(), free_port()
    server = start_embedded(tmp_path / "valkey", port=valkey_port)
    stack.db = redis.Redis(port=valkey_port)
    try:
        stack.receiver_url = f"http://127.0.0.1:{receiver_port}"
        stack.spawn("receiver", [str(ROOT / "tests" / "scale_receiver.py"), "--port", str(receiver_port),
                                 "--token", SDP_TOKEN, "--items", str(SCAN_ITEMS)], dict(os.environ))
        stack.env = base_env(
            REDIS_URL=f"redis://127.0.0.1:{valkey_port}/0",
            HOOKRULES_RULES_DIR=str(rules),
            HOOKRULES_SOURCES_FILE=str(tmp_path / "sources.yaml"),
            HOOKRULES_SDP_URL=f"{stack.receiver_url}/app/scale",
            HOOKRULES_SDP_TOKEN=SDP_TOKEN,
            # Limits lifted, so thousands of actions go as fast as the machine allows.
            HOOKRULES_SDP_RATE="1000000", HOOKRULES_SDP_BURST="1000000", HOOKRULES_SDP_MAX_CONCURRENT="10000",
            HOOKRULES_LOOP_LIMIT="1000000",  # 25 actions of one rule on one entity are not a loop here
            **settings,
        )
        for n in range(2):
            port = free_port()
            stack.spawn(f"api-{n + 1}", ["-m", "engine.cli", "api"], {**stack.env, "HOOKRULES_PORT": str(port)})
            stack.api_urls.append(f"http://127.0.0.1:{port}")
        for _ in range(3):
            stack.start_worker()
        wait_for("the receiver to answer", stack.summary, 30, detail=lambda: stack.logs("receiver"))
        for url in stack.api_urls:
            wait_for(f"the API at {url} to answer /health", lambda url=url: get_json(url + "/health"), 30,
                     detail=lambda: stack.logs("api"))
        wait_for("all three workers to read the event stream",
                 lambda: all(consumer_name(w) in stack.consumers() for w in stack.workers), 45,
                 detail=lambda: f"consumers: {stack.consumers()}\n{stack.logs()}")
        yield stack
    finally:
        stop_all(stack.children)
        stack.db.close()
        server.stop()


def stop_all(children: list[Process], wait_s: float = 15.0) -> None:
    """SIGTERM to every child at once, one deadline for all, then SIGKILL to any still running."""
    running = [c for c in children if c.popen.poll() is None]
    for child in running:
        child.popen.terminate()
    deadline = time.monotonic() + wait_s
    for child in running:
        try:
            child.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.popen.kill()
            child.popen.wait(timeout=10)


# ---- waiting ----

def wait_for(what: str, check: Callable[[], Any], timeout_s: float, interval_s: float = 0.25,
             detail: Callable[[], str] | None = None, error: type[AssertionError] = AssertionError) -> Any:
    """Poll until `check()` is truthy and return that; past the deadline fail, saying what was awaited."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise error(f"gave up after {timeout_s:.0f} s waiting for {what}" + (f"\n{detail()}" if detail else ""))
        time.sleep(interval_s)


def get_json(url: str) -> Any:
    try:
        reply = httpx.get(url, timeout=5)
        return reply.json() if reply.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


# ---- the webhooks ----

@dataclass
class Sent:
    answers: dict[tuple[str, int], tuple[int, Any]] = field(default_factory=dict)  # (entity, seq): status, body
    accepted: int = 0
    seconds: float = 0.0


async def _send_webhooks(api_urls: list[str], per_entity: int, on_accepted: Callable[[int], None]) -> Sent:
    sent = Sent()
    headers = {"Content-Type": "application/json", "X-Hook-Token": SECRET}

    async def lane(session: aiohttp.ClientSession, n: int) -> None:
        entity = entity_id(n)
        for k in range(per_entity):
            seq = FIRST_SEQ + k
            body = {"milestone": {"id": entity, "project": {"id": PROJECT}, "seq": seq, "title": f"m{n} v{k}"}}
            url = f"{api_urls[(n + k) % 2]}/hooks/sdp"  # an entity's events alternate between the APIs
            try:
                async with session.post(url, data=json.dumps(body), headers={**headers, "X-Delivery-Id": f"scale-{entity}-{seq}"}) as reply:
                    text = await reply.text()
                    try:
                        answer: Any = json.loads(text)
                    except ValueError:
                        answer = text
                    sent.answers[(entity, seq)] = (reply.status, answer)
            except (TimeoutError, aiohttp.ClientError) as exc:
                sent.answers[(entity, seq)] = (0, f"{type(exc).__name__}: {exc}")
                return
            if reply.status != 202:
                return  # what would follow a refusal is no longer in a known order
            sent.accepted += 1
            on_accepted(sent.accepted)

    started = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=30)) as session:
        await asyncio.gather(*(lane(session, n) for n in range(ENTITIES)))
    sent.seconds = time.monotonic() - started
    return sent


def send_webhooks(stack: Stack, per_entity: int, on_accepted: Callable[[int], None]) -> tuple[Sent, dict[tuple[str, int], str]]:
    """Each entity's events one after the other (arrival order = seq order), all entities at once.
    Every one must be answered 202, as a first delivery. The event ids, by (entity, seq)."""
    sent = asyncio.run(_send_webhooks(stack.api_urls, per_entity, on_accepted))
    events = ENTITIES * per_entity
    refused = {key: answer for key, answer in sent.answers.items() if answer[0] != 202}
    assert not refused and len(sent.answers) == events, (
        f"{len(refused)} webhook(s) not answered 202 and {events - len(sent.answers)} never sent "
        f"(an entity's sending stops at its first refusal), e.g. {list(refused.items())[:5]}\n{stack.logs('api')}")
    duplicates = [key for key, (_, body) in sent.answers.items() if body.get("duplicate") is not False]
    assert not duplicates, f"{len(duplicates)} first deliveries answered as duplicates, e.g. {duplicates[:5]}"
    event_ids = {key: body["event_id"] for key, (_, body) in sent.answers.items()}
    assert len(set(event_ids.values())) == events, "two webhooks got the same event id"
    return sent, event_ids
