"""What the sandbox tests share: a sandbox on a real socket (one per test module), a client
that resets its data before each test, and the helpers that read SDP's and Zoho's answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.sandbox import SandboxSettings
from sandbox_server import Running, running_sandbox

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "1000.static-test-token"  # a test value
ACCEPT = "application/vnd.manageengine.sdp.v3+json"
SDP_HEADERS = {"Accept": ACCEPT, "Authorization": f"Zoho-oauthtoken {TOKEN}"}
ZOHO_HEADERS = {"Authorization": f"Zoho-oauthtoken {TOKEN}"}
PROJECT, MILESTONE = "2258743870606263", "2007594064055157"
SDP = f"/app/itdesk/api/v3/projects/{PROJECT}/milestones"
ZOHO = "/restapi/portal/2063927/projects/"
GRANT = {"grant_type": "refresh_token", "client_id": "sandbox-client", "client_secret": "sandbox-secret",
         "refresh_token": "sandbox-refresh"}


@pytest.fixture(scope="module")
def server() -> Iterator[Running]:
    with running_sandbox(SandboxSettings(static_tokens=frozenset({TOKEN}))) as running:
        yield running


@pytest.fixture
def client(server: Running) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5) as http:
        assert http.post("/_sandbox/reset").status_code == 200
        yield http


def put_milestone(client: httpx.Client, changes: Any, milestone_id: str = MILESTONE, **headers: str) -> httpx.Response:
    return client.put(f"{SDP}/{milestone_id}", headers={**SDP_HEADERS, **headers},
                      data={"input_data": json.dumps({"milestone": changes})})


def sdp_failure(reply: httpx.Response) -> dict[str, Any]:
    """The one message of an SDP failure, after checking the envelope."""
    status = reply.json()["response_status"]
    assert status["status_code"] == 4000 and status["status"] == "failed", status
    (message,) = status["messages"]
    assert message["type"] == "failed"
    return message


def stored(client: httpx.Client, milestone_id: str = MILESTONE) -> dict[str, Any]:
    return client.get(f"/_sandbox/milestones/{PROJECT}/{milestone_id}").json()
