"""Events of one entity are decided in arrival order, even with several workers at once."""

from __future__ import annotations

import json
from pathlib import Path

import redis

from conftest import base_env, run_service, start, wait_until, with_db

SAMPLE = json.loads((Path(__file__).resolve().parent.parent / "samples" / "milestone-slipped.json").read_text())


def consumers(db: redis.Redis) -> int:
    try:
        return len(db.xinfo_consumers("hookrules:events:stream", "workers"))
    except redis.ResponseError:  # no stream or group yet
        return 0


def test_two_workers_decide_one_entitys_events_in_arrival_order(redis_url: str, tmp_path: Path) -> None:
    url = with_db(redis_url, 8)
    db = redis.Redis.from_url(url)
    db.flushdb()
    env = base_env(REDIS_URL=url, HOOKRULES_SDP_URL="http://127.0.0.1:9/app/x", HOOKRULES_SDP_TOKEN="t")
    service = run_service(tmp_path, env, db=db)
    service.processes.append(start(["worker"], {**env, "HOOKRULES_PORT": "0"}, tmp_path))  # a second worker
    try:
        # Both read the event stream before the first webhook, or one may take all 30 alone.
        assert wait_until(lambda: consumers(db) == 2, timeout_s=30), service.logs()
        ids = []
        for n in range(30):
            body = json.loads(json.dumps(SAMPLE))
            body["milestone"]["description"] = f"version {n}"
            reply = service.post(json.dumps(body).encode())
            assert reply.status_code == 202
            ids.append(reply.json()["event_id"])
        decided = wait_until(lambda: all(db.hget(f"hookrules:event:{i}", "status") == b"decided" for i in ids), timeout_s=60)
        assert decided, service.logs()
        seen = [json.loads(db.hget(f"hookrules:event:{i}", "previous")) for i in ids]
        assert seen[0] is None
        assert [p["description"] for p in seen[1:]] == [f"version {n}" for n in range(29)]
        # Both workers took part: the order held although events were decided in two processes.
        # A worker logs an event's line just after deciding it (and trying its actions).
        def each_worker_logged() -> bool:
            return all(any(f"event {i} (sdp" in p.output() for i in ids) for p in service.processes[1:])

        assert wait_until(each_worker_logged, timeout_s=10), [p.output() for p in service.processes[1:]]
    finally:
        for process in service.processes:
            process.stop()
