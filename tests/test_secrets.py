"""Planted secrets appear in no captured output of a full end-to-end run: logs of the API and
the worker, every key and value in Redis (but the shared OAuth token, which must be there),
the event records, /health, `hookrules try` and `hookrules check`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import redis

from conftest import ADMIN, ROOT, SECRET, base_env, run_service, with_db
from engine.masking import MASK, MaskSecrets, secret_values
from engine.sandbox import SandboxSettings
from sandbox_server import running_sandbox
from test_cli import hookrules

PLANTED = {
    "HOOKRULES_SDP_CLIENT_SECRET": "planted-client-secret-5e1f",
    "HOOKRULES_SDP_REFRESH_TOKEN": "planted-refresh-token-9a3c",
}


def test_no_secret_in_any_output_of_a_full_run(redis_url: str, tmp_path: Path) -> None:
    url = with_db(redis_url, 5)
    db = redis.Redis.from_url(url)
    db.flushdb()
    sandbox_settings = SandboxSettings(client_id="planted-client", client_secret=PLANTED["HOOKRULES_SDP_CLIENT_SECRET"],
                                       refresh_token=PLANTED["HOOKRULES_SDP_REFRESH_TOKEN"])
    with running_sandbox(sandbox_settings) as sandbox:
        env = base_env(REDIS_URL=url, HOOKRULES_SDP_URL=f"{sandbox.url}/app/itdesk", HOOKRULES_ACCOUNTS_URL=sandbox.url,
                       HOOKRULES_SDP_CLIENT_ID="planted-client", **PLANTED)
        secrets = [SECRET, env["HOOKRULES_ADMIN_TOKEN"], *PLANTED.values()]
        service = run_service(tmp_path, env, db=db)
        try:
            sample = (ROOT / "samples" / "milestone-completed.json").read_bytes()
            event_id = service.post(sample).json()["event_id"]
            done = service.wait_event(event_id, lambda r: r["actions"].get("close-finished-milestone:0", {}).get("outcome") == "done")
            assert done is not None, service.logs()
            refused = service.post(sample, {"X-Hook-Token": "wrong"})  # a refusal is logged too
            assert refused.status_code == 401
            outputs = {
                "logs": service.logs(),
                "event": json.dumps(done),
                "health": json.dumps(service.health()),
                "dead letters": httpx.get(f"{service.url}/admin/dead-letters", headers=ADMIN, timeout=5).text,
                "try": hookrules("try", "samples/milestone-completed.json", env=env).stdout,
                "check": hookrules("check", env=env).stdout,
            }
            for key in db.keys("*"):
                if key.startswith(b"hookrules:oauth:"):
                    continue  # the shared access token lives here by design (not a planted secret)
                kind = db.type(key)
                value = {b"string": lambda: db.get(key), b"hash": lambda: db.hgetall(key), b"list": lambda: db.lrange(key, 0, -1),
                         b"zset": lambda: db.zrange(key, 0, -1)}.get(kind, lambda: b"")()
                outputs[f"redis {key.decode()}"] = repr(value)
        finally:
            for process in service.processes:
                process.stop()
    assert "close-finished-milestone:0 done" in outputs["logs"]  # the run did happen
    for where, text in outputs.items():
        for secret in secrets:
            assert secret not in text, f"a planted secret appears in {where}"


def test_the_log_filter_blanks_secrets_a_library_might_repeat() -> None:
    records = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Keep()
    handler.addFilter(MaskSecrets(secret_values({"HOOKRULES_ZOHO_TOKEN": "1000.abcdef123456", "OTHER": "not-a-secret"})))
    log = logging.getLogger("test.masking")
    log.addHandler(handler)
    try:
        log.warning("GET https://x/?token=%s failed", "1000.abcdef123456")
        log.warning("plain not-a-secret text")
    finally:
        log.removeHandler(handler)
    assert records == [f"GET https://x/?token={MASK} failed", "plain not-a-secret text"]
