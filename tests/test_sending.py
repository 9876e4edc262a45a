"""Building and sending actions: http.request from a rule, and the reply classification, sent
over a real socket to the stand-in."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from pathlib import Path

import pytest

import redis.asyncio

from conftest import with_db
from engine.config import Connector, Targets
from engine.sources import Source
from engine.http_client import HttpClient, HttpError, Reply
from engine.decide import decide
from engine.intake import to_event
from engine.models import Request
from engine.rule_files import load_ruleset
from engine.sending import SendResult, Sender, classify
from stand_in import StandIn


async def send_with(redis_url: str, targets: Targets, request: Request) -> SendResult:
    """Send one request the way a worker does: a Sender on the real Redis (limits, tokens)."""
    client = redis.asyncio.Redis.from_url(with_db(redis_url, 6))
    try:
        async with HttpClient() as http:
            return await Sender.create(client, http, targets).send(request)
    finally:
        await client.aclose()

RULE = """\
id: notify
on: {source: sdp, event: "*"}
then:
  - http.request:
      method: post
      url: "{{ target }}/notify/{{ milestone.id }}"
      headers: {X-Rule: "{{ event.type }}"}
      query: {project: "{{ milestone.project.id }}"}
      json: {text: "Milestone {{ milestone.title }} changed", id: "{{ milestone.id }}"}
"""


def test_http_request_action_is_rendered_and_sent(tmp_path: Path, redis_url: str) -> None:
    with StandIn() as stand_in:
        (tmp_path / "r.yaml").write_text(RULE.replace("{{ target }}", stand_in.url))
        ruleset = load_ruleset(tmp_path, Targets())
        body = {"milestone": {"id": "42", "title": "{{ evil }}", "project": {"id": "7"}}}
        event = to_event(Source("sdp", secrets=("s",), default_event="{kind}.updated"),
                         {"x-hook-token": "s", "content-type": "application/json"}, json.dumps(body).encode(), 0.0)
        (action,) = decide(event, None, ruleset, now=0.0).actions
        assert action.error is None

        assert asyncio.run(send_with(redis_url, Targets(http_allow_hosts=("127.0.0.1",)), action.request)).outcome == "done"
        (got,) = stand_in.wait_for("/notify/42", 1)
        assert got.method == "POST"
        assert got.path == "/notify/42?project=7"
        assert got.headers["x-rule"] == "milestone.updated"
        assert json.loads(got.body) == {"text": "Milestone {{ evil }} changed", "id": "42"}


@pytest.mark.parametrize(("status", "outcome"), [(200, "done"), (204, "done"), (404, "failed"), (400, "failed"),
                                                 (429, "retry"), (500, "retry"), (503, "retry")])
def test_classify(status: int, outcome: str) -> None:
    assert classify(status) == outcome


def test_replies_and_network_errors_over_a_socket(redis_url: str) -> None:
    request = Request("PUT", "", headers={}, form={"input_data": "{}"}, connector="sdp")

    def go(url: str, token: str | None = "tok") -> SendResult:
        targets = Targets(sdp=Connector("sdp", base_url="http://unused", token=token))
        return asyncio.run(send_with(redis_url, targets, Request(**{**request.to_dict(), "url": url})))

    with StandIn() as stand_in:
        stand_in.replies.append((429, {"Retry-After": "1"}))
        limited = go(stand_in.url + "/x")
        assert (limited.outcome, limited.http_status, limited.retry_after_s) == ("retry", 429, 1.0)
        assert stand_in.to("/x")[0].headers["authorization"] == "Zoho-oauthtoken tok"
        no_token = go(stand_in.url + "/y", token=None)
        assert no_token.outcome == "failed" and "HOOKRULES_SDP_TOKEN" in no_token.error
        assert stand_in.to("/y") == []  # nothing sent without credentials
        dead_url = stand_in.url
    refused = go(dead_url + "/z")
    assert refused.outcome == "retry" and refused.http_status is None and "ClientConnectorError" in refused.error


def test_the_client_takes_each_reply_as_it_comes() -> None:
    """No redirect followed, no cookie kept for the next request: each action stands alone."""
    async def go(url: str) -> tuple[Reply, Reply]:
        async with HttpClient() as http:
            first = await http.request("GET", url + "/a", timeout=5)
            return first, await http.request("GET", url + "/b", timeout=5)

    with StandIn() as stand_in:
        stand_in.replies.append((302, {"Location": stand_in.url + "/elsewhere", "Set-Cookie": "sid=1; Path=/"}))
        moved, after = asyncio.run(go(stand_in.url))
        assert (moved.status_code, moved.headers.get("location")) == (302, stand_in.url + "/elsewhere")
        assert after.status_code == 200 and json.loads(after.text) == {"response_status": {"status_code": 2000}}
        assert stand_in.to("/elsewhere") == [] and "cookie" not in stand_in.to("/b")[0].headers


def test_transport_failures_are_one_error_type_naming_no_url_secret() -> None:
    """A timeout or a dropped connection is an HttpError whose message keeps the URL's host
    only; and a PUT whose connection drops is not sent again behind the caller's back."""
    seen: list[bytes] = []
    with socket.create_server(("127.0.0.1", 0)) as server:
        def drop() -> None:  # reads each request, then hangs up without a reply
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                with conn:
                    seen.append(conn.recv(65536))

        threading.Thread(target=drop, daemon=True).start()
        dropping = f"http://127.0.0.1:{server.getsockname()[1]}"

        async def failure(url: str, method: str = "GET", timeout: float = 5) -> str:
            async with HttpClient() as http:
                with pytest.raises(HttpError) as caught:
                    await http.request(method, url, params={"key": "s3cret"}, timeout=timeout)
                return str(caught.value)

        with StandIn() as slow:
            slow.delay_s = 1.0
            timed_out = asyncio.run(failure(slow.url + "/hook/s3cret", timeout=0.2))
        dropped = asyncio.run(failure(dropping + "/hook/s3cret", "PUT"))
        server.close()
    assert timed_out.startswith("TimeoutError: ") and dropped.startswith("ServerDisconnectedError: ")
    assert "s3cret" not in timed_out + dropped
    assert len(seen) == 1
