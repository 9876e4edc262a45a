"""The worker's event queue: a batch with an event that cannot be decided (a defect, not Redis)
still decides the others, and that one is marked failed with a reason, not retried forever."""

from __future__ import annotations

import json
from pathlib import Path

import redis

from conftest import base_env, run_service, start, wait_until, with_db

SAMPLE = json.loads((Path(__file__).resolve().parent.parent / "samples" / "milestone-slipped.json").read_text())


def test_one_undecidable_event_is_marked_failed_and_the_rest_of_its_batch_is_decided(redis_url: str, tmp_path: Path) -> None:
    url = with_db(redis_url, 12)
    db = redis.Redis.from_url(url)
    db.flushdb()
    env = base_env(REDIS_URL=url, HOOKRULES_SDP_URL="http://127.0.0.1:9/app/x", HOOKRULES_SDP_TOKEN="t")
    service = run_service(tmp_path, env, worker=False, db=db)  # events wait for the worker, as one batch
    try:
        ids = []
        for n in range(3):
            body = json.loads(json.dumps(SAMPLE))
            body["milestone"]["id"] = str(900 + n)
            reply = service.post(json.dumps(body).encode())
            assert reply.status_code == 202
            ids.append(reply.json()["event_id"])
        # A record no worker can read (what a defect, or a hand edit, could leave behind).
        db.hset(f"hookrules:event:{ids[1]}", "event", "{not json")
        service.processes.append(start(["worker"], {**env, "HOOKRULES_PORT": "0"}, tmp_path))

        def statuses() -> list[bytes | None] | None:
            found = [db.hget(f"hookrules:event:{i}", "status") for i in ids]
            return found if b"queued" not in found else None

        assert wait_until(statuses, timeout_s=30) == [b"decided", b"failed", b"decided"], service.logs()
        assert "internal error" in json.loads(db.hget(f"hookrules:event:{ids[1]}", "error"))
        assert db.xlen("hookrules:events:stream") == 0  # nothing left to be read again
    finally:
        for process in service.processes:
            process.stop()
        db.flushdb()
