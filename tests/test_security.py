"""Intake security over a real socket: each signature scheme (good, bad, stale, rotated), the
IP allowlist, the per-source rate, body timeout and JSON limits; and where http.request may go."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from conftest import Service, base_env, run_service, with_db
from engine.config import Targets
from engine.connectors import CATALOG
from engine.http_client import HttpClient
from engine.sending import Sender
from stand_in import StandIn

BODY = json.dumps({"milestone": {"id": "42", "title": "x"}}).encode()
NEW, OLD = "new-secret-2026", "old-secret-2025"
WHSEC = "whsec_" + base64.b64encode(b"standard-webhooks-key").decode()
SOURCES = f"""\
sources:
  tokens: {{auth: [token], default_event: "{{kind}}.updated"}}
  signed: {{auth: [hmac, github], default_event: "{{kind}}.updated"}}
  standard: {{auth: [standard], default_event: "{{kind}}.updated"}}
  fenced: {{auth: [token], allow_ips: [10.0.0.0/8], default_event: "{{kind}}.updated"}}
  slow: {{auth: [token], rate: 2, default_event: "{{kind}}.updated"}}
"""


@pytest.fixture(scope="module")
def api(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("security")
    (tmp / "sources.yaml").write_text(SOURCES)
    url = with_db(redis_url, 4)
    db = redis.Redis.from_url(url)
    db.flushdb()
    env = base_env(REDIS_URL=url, HOOKRULES_SOURCES_FILE=str(tmp / "sources.yaml"), HOOKRULES_BODY_TIMEOUT="1",
                   HOOKRULES_HEADER_TIMEOUT="1",
                   HOOKRULES_TRUSTED_PROXIES="127.0.0.1/32",
                   HOOKRULES_SOURCE_TOKENS_SECRET=NEW, HOOKRULES_SOURCE_TOKENS_SECRET_PREVIOUS=OLD,
                   HOOKRULES_SOURCE_SIGNED_SECRET=NEW, HOOKRULES_SOURCE_STANDARD_SECRET=WHSEC,
                   HOOKRULES_SOURCE_FENCED_SECRET=NEW, HOOKRULES_SOURCE_SLOW_SECRET=NEW)
    service = run_service(tmp, env, worker=False, db=db)
    yield service
    for process in service.processes:
        process.stop()


def post(api: Service, source: str, headers: dict, body: bytes = BODY) -> httpx.Response:
    stored = api.stored_events()
    reply = httpx.post(f"{api.url}/hooks/{source}", content=body, headers={"Content-Type": "application/json", **headers}, timeout=10)
    if reply.status_code != 202:
        assert api.stored_events() == stored  # nothing stored for a refusal
    return reply


def hex_sig(secret: str, body: bytes = BODY) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def standard_headers(msg_id: str, stamp: int, key: bytes, body: bytes = BODY) -> dict[str, str]:
    signature = base64.b64encode(hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()).decode()
    return {"webhook-id": msg_id, "webhook-timestamp": str(stamp), "webhook-signature": f"v1,{signature}"}


def test_token_with_rotation(api: Service) -> None:
    assert post(api, "tokens", {"X-Hook-Token": NEW}).status_code == 202
    assert post(api, "tokens", {"X-Hook-Token": OLD}).status_code == 202  # the previous secret, during rotation
    bad = post(api, "tokens", {"X-Hook-Token": "guess"})
    assert bad.status_code == 401 and "X-Hook-Token does not match" in bad.json()["error"]
    other_scheme = post(api, "tokens", {"X-Hook-Signature": hex_sig(NEW)})
    assert other_scheme.status_code == 401 and "this source accepts X-Hook-Token" in other_scheme.json()["error"]
    unsigned = post(api, "signed", {})
    assert unsigned.json()["error"] == "missing credentials: this source accepts X-Hook-Signature or X-Hub-Signature-256"


def test_hmac_and_github_signatures(api: Service) -> None:
    assert post(api, "signed", {"X-Hook-Signature": hex_sig(NEW)}).status_code == 202
    assert post(api, "signed", {"X-Hub-Signature-256": hex_sig(NEW)}).status_code == 202
    bad = post(api, "signed", {"X-Hub-Signature-256": hex_sig(NEW, b"another body")})
    assert bad.status_code == 401 and "X-Hub-Signature-256 does not match" in bad.json()["error"]
    assert post(api, "signed", {"X-Hook-Token": NEW}).status_code == 401  # tokens are not accepted here


def test_standard_webhooks(api: Service) -> None:
    key = base64.b64decode(WHSEC.removeprefix("whsec_"))
    now = int(time.time())
    good = post(api, "standard", standard_headers("msg_good", now, key))
    assert good.status_code == 202
    again = post(api, "standard", standard_headers("msg_good", now, key))  # a replay within the window
    assert again.status_code == 202 and again.json() == {"event_id": good.json()["event_id"], "duplicate": True}
    stale = post(api, "standard", standard_headers("msg_stale", now - 301, key))
    assert stale.status_code == 401 and "allowed: ±300 s" in stale.json()["error"]
    future = post(api, "standard", standard_headers("msg_future", now + 400, key))
    assert future.status_code == 401
    forged = post(api, "standard", standard_headers("msg_forged", now, b"wrong key"))
    assert forged.status_code == 401 and "no v1 signature matches" in forged.json()["error"]
    # Rotation on the sender's side: several signatures, one of them right.
    both = standard_headers("msg_rotated", now, key)
    wrong = standard_headers("msg_rotated", now, b"old key")["webhook-signature"]
    both["webhook-signature"] = f"{wrong} {both['webhook-signature']}"
    assert post(api, "standard", both).status_code == 202
    odd = post(api, "standard", {**standard_headers("msg_odd", now, key), "webhook-timestamp": "\u00b2".encode("latin-1")})
    assert odd.status_code == 401


def test_ip_allowlist_and_trusted_proxy(api: Service) -> None:
    refused = post(api, "fenced", {"X-Hook-Token": NEW})
    assert refused.status_code == 403 and "127.0.0.1 may not send" in refused.json()["error"]
    # 127.0.0.1 is a trusted proxy here: the sender is the address it forwards for.
    assert post(api, "fenced", {"X-Hook-Token": NEW, "X-Forwarded-For": "10.1.2.3"}).status_code == 202
    assert post(api, "fenced", {"X-Hook-Token": NEW, "X-Forwarded-For": "192.0.2.7"}).status_code == 403


def test_rate_per_source(api: Service) -> None:
    statuses = [post(api, "slow", {"X-Hook-Token": NEW}) for _ in range(6)]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited and int(limited[0].headers["retry-after"]) >= 1
    assert "more than 2 webhooks a second" in limited[0].json()["error"]
    assert post(api, "tokens", {"X-Hook-Token": NEW}).status_code == 202  # other sources are not held back


def test_json_depth_and_key_limits(api: Service) -> None:
    deep = b'{"milestone": {"id": "1", "d": ' + b"[" * 40 + b"]" * 40 + b"}}"
    assert "nested too deeply" in post(api, "tokens", {"X-Hook-Token": NEW}, deep).json()["error"]
    wide = json.dumps({"milestone": {"id": "1", **{f"k{n}": n for n in range(10_001)}}}).encode()
    assert "too many keys" in post(api, "tokens", {"X-Hook-Token": NEW}, wide).json()["error"]


def test_a_body_that_never_arrives_is_408(api: Service) -> None:
    port = int(api.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"POST /hooks/tokens HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"X-Hook-Token: " + NEW.encode() + b"\r\nContent-Length: 500\r\n\r\n{\"milestone\": ")
        started = time.monotonic()
        reply = b""
        while b"did not arrive" not in reply:  # headers and body may come in separate segments
            chunk = conn.recv(4096)
            if not chunk:
                break
            reply += chunk
    assert reply.decode().startswith("HTTP/1.1 408") and "did not arrive within 1 s" in reply.decode()
    assert time.monotonic() - started >= 0.9


def test_headers_that_never_finish_close_the_connection(api: Service) -> None:
    port = int(api.url.rsplit(":", 1)[1])
    started = time.monotonic()  # before the server can start its clock (at the connection)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"POST /hooks/tokens HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and then nothing
        closed = conn.recv(4096)
    assert closed == b""  # closed by the server, without an answer
    assert 0.9 <= time.monotonic() - started < 9
    assert httpx.get(f"{api.url}/ready", timeout=5).status_code in (200, 503)  # still serving others


def test_headers_over_16_kib_are_refused_with_431(api: Service) -> None:
    port = int(api.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        # 18 headers of 1 KiB each, never finished, in one write: the server reads all of it
        # before it answers, so its close is a clean one.
        fillers = "".join(f"X-Filler-{n}: {'a' * 1000}\r\n" for n in range(18))
        conn.sendall(b"POST /hooks/tokens HTTP/1.1\r\nHost: x\r\n" + fillers.encode())
        reply = b""
        while chunk := conn.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 431 ")
    # Large but complete headers with a body in one write are still read.
    big = {f"X-Note-{n}": "b" * 1000 for n in range(10)}
    assert httpx.post(f"{api.url}/hooks/nosuch", content=b"{}", headers=big, timeout=5).status_code == 404


def send(request_args: dict, allow: tuple[str, ...], redis_url: str):  # noqa: ANN201
    targets = Targets(http_allow_hosts=allow)
    request = CATALOG["http.request"].build({"method": "GET", **request_args}, targets)

    async def go():  # noqa: ANN202
        client = redis.asyncio.Redis.from_url(with_db(redis_url, 4))
        try:
            async with HttpClient() as http:
                return await Sender.create(client, http, targets).send(request)
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_http_request_reaches_only_allowed_hosts(redis_url: str) -> None:
    with StandIn() as target:
        port = target.url.rsplit(":", 1)[1]
        nowhere = send({"url": f"{target.url}/x"}, (), redis_url)
        assert nowhere.outcome == "failed" and "set HOOKRULES_HTTP_ALLOW_HOSTS" in nowhere.error
        other = send({"url": f"{target.url}/x"}, ("hooks.example.com",), redis_url)
        assert other.outcome == "failed" and "not on HOOKRULES_HTTP_ALLOW_HOSTS" in other.error
        # A wildcard entry never opens loopback, link-local or metadata addresses...
        wildcard = send({"url": f"http://127.0.0.1:{port}/x"}, ("*.0.0.1",), redis_url)
        assert wildcard.outcome == "failed" and "loopback, link-local and metadata addresses are refused" in wildcard.error
        metadata = send({"url": "http://169.254.169.254/latest/meta-data/"}, ("*.169.254",), redis_url)
        assert metadata.outcome == "failed" and "169.254.169.254" in metadata.error
        assert target.requests == []
        # ...an exact entry does: the admin meant it.
        assert send({"url": f"http://127.0.0.1:{port}/x"}, ("127.0.0.1",), redis_url).outcome == "done"
        # A redirect is not followed, to another host or at all.
        target.replies.append((302, {"Location": "http://169.254.169.254/"}))
        redirected = send({"url": f"http://127.0.0.1:{port}/y"}, ("127.0.0.1",), redis_url)
        assert redirected.outcome == "failed" and redirected.http_status == 302
        assert [r.path for r in target.requests] == ["/x", "/y"]


def test_a_rediss_url_checks_that_the_certificate_names_the_host() -> None:
    """redis-py checks a TLS certificate's chain but not its host name unless asked: hookrules
    asks, for the API and the workers alike (both use store.connect); the URL can still say no."""
    from engine.store import connect

    checked = connect("rediss://:pw@redis.example:6380/0").connection_pool.connection_kwargs
    assert checked["ssl_check_hostname"] is True
    opted_out = connect("rediss://redis.example:6380/0?ssl_check_hostname=false").connection_pool.connection_kwargs
    assert opted_out["ssl_check_hostname"] is False
    assert "ssl_check_hostname" not in connect("redis://127.0.0.1:6379/0").connection_pool.connection_kwargs
