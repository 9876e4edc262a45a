"""The sandbox emulator over real sockets: its Zoho OAuth token endpoint, its scripted faults,
stats and reset. SDP's and Zoho's APIs: test_sandbox_sdp.py and test_sandbox_zoho.py."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from engine.sandbox import SandboxSettings
from sandbox_client import ACCEPT, GRANT, MILESTONE, SDP, SDP_HEADERS, ZOHO, ZOHO_HEADERS, put_milestone, sdp_failure, stored
from sandbox_client import client, server  # noqa: F401 (fixtures: pytest finds them by name)
from sandbox_server import Running, running_sandbox


# ---- OAuth ----------------------------------------------------------------------------------


def test_token_from_query_or_form_opens_both_apis(client: httpx.Client, server: Running) -> None:
    for reply in (client.post("/oauth/v2/token", params=GRANT), client.post("/oauth/v2/token", data=GRANT)):
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["access_token"].startswith("1000.") and body["expires_in"] == 3600
        assert body["api_domain"] == server.url and body["token_type"] == "Bearer"
        auth = {"Authorization": f"Zoho-oauthtoken {body['access_token']}"}
        assert client.get(f"{SDP}/{MILESTONE}", headers={**auth, "Accept": ACCEPT}).status_code == 200
        assert client.get(ZOHO, headers=auth).status_code == 200
    stats = client.get("/_sandbox/stats").json()
    assert stats["token_requests"] == 2 and stats["tokens_issued"] == 2


@pytest.mark.parametrize("change, error", [
    ({"client_secret": "wrong"}, "invalid_client"),
    ({"client_id": "someone-else"}, "invalid_client"),
    ({"refresh_token": "1000.revoked"}, "invalid_code"),
    ({"grant_type": "authorization_code"}, "unsupported_grant_type"),
])
def test_token_refused_for_wrong_credentials(client: httpx.Client, change: dict[str, str], error: str) -> None:
    reply = client.post("/oauth/v2/token", data={**GRANT, **change})
    assert reply.status_code == 400 and reply.json() == {"error": error}
    assert client.get("/_sandbox/stats").json()["tokens_issued"] == 0


def test_eleventh_token_in_ten_minutes_is_refused(client: httpx.Client) -> None:
    tokens = [client.post("/oauth/v2/token", data=GRANT).json()["access_token"] for _ in range(10)]
    assert len(set(tokens)) == 10
    reply = client.post("/oauth/v2/token", data=GRANT)
    assert reply.status_code == 400
    assert reply.json()["error"] == "Access Denied" and "too many requests" in reply.json()["error_description"]
    # The tokens already issued keep working.
    assert client.get(ZOHO, headers={"Authorization": f"Zoho-oauthtoken {tokens[0]}"}).status_code == 200


def test_expired_tokens_get_401_in_each_systems_shape(client: httpx.Client) -> None:
    token = client.post("/oauth/v2/token", data=GRANT).json()["access_token"]
    assert client.post("/_sandbox/expire-tokens").json() == {"expired": 1}
    auth = {"Authorization": f"Zoho-oauthtoken {token}"}
    sdp = client.get(f"{SDP}/{MILESTONE}", headers={**auth, "Accept": ACCEPT})
    assert sdp.status_code == 401 and "UNAUTHORISED" in sdp_failure(sdp)["message"]
    zoho = client.get(ZOHO, headers=auth)
    assert zoho.status_code == 401 and zoho.json()["error"]["code"] == 6401
    assert client.get(ZOHO, headers=ZOHO_HEADERS).status_code == 200  # static tokens never expire


def test_issued_token_expires_after_its_lifetime() -> None:
    with running_sandbox(SandboxSettings(token_lifetime_s=1)) as running:
        token = httpx.post(running.url + "/oauth/v2/token", data=GRANT).json()["access_token"]
        auth = {"Authorization": f"Zoho-oauthtoken {token}"}
        assert httpx.get(running.url + ZOHO, headers=auth).status_code == 200
        time.sleep(1.1)
        assert httpx.get(running.url + ZOHO, headers=auth).status_code == 401


def test_settings_from_env_keep_secrets_out_of_repr() -> None:
    settings = SandboxSettings.from_env({"HOOKRULES_SANDBOX_CLIENT_ID": "c", "HOOKRULES_SANDBOX_CLIENT_SECRET": "s3cr3t",
                                         "HOOKRULES_SANDBOX_TOKEN": "1000.fixed", "HOOKRULES_SANDBOX_TOKEN_LIFETIME": "60"})
    assert (settings.client_id, settings.client_secret, settings.token_lifetime_s) == ("c", "s3cr3t", 60)
    assert settings.static_tokens == frozenset({"1000.fixed"}) and settings.refresh_token == "sandbox-refresh"
    assert "s3cr3t" not in repr(settings) and "1000.fixed" not in repr(settings)
    assert SandboxSettings.from_env({}) == SandboxSettings()
    with pytest.raises(ValueError, match="HOOKRULES_SANDBOX_TOKEN_LIFETIME"):
        SandboxSettings.from_env({"HOOKRULES_SANDBOX_TOKEN_LIFETIME": "1h"})


# ---- faults, stats, reset --------------------------------------------------------------------


def test_fault_429_with_retry_after_then_normal(client: httpx.Client) -> None:
    assert client.post("/_sandbox/faults", json={"status": 429, "retry_after": 2, "count": 1,
                                                 "path_contains": "/api/v3/"}).status_code == 200
    assert client.get(ZOHO, headers=ZOHO_HEADERS).status_code == 200  # another path: not affected
    throttled = put_milestone(client, {"status": {"name": "Closed"}})
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "2"
    assert sdp_failure(throttled)["status_code"] == 4015
    assert stored(client)["status"]["name"] == "Open"  # nothing applied
    assert put_milestone(client, {"status": {"name": "Closed"}}).status_code == 200
    put = "PUT /app/{portal}/api/v3/projects/{project_id}/milestones/{milestone_id}"
    assert client.get("/_sandbox/stats").json()["requests"][put] == 2


def test_faults_in_zoho_and_token_shapes(client: httpx.Client) -> None:
    client.post("/_sandbox/faults", json={"status": 503, "count": 2, "path_contains": "/restapi/"})
    client.post("/_sandbox/faults", json={"status": 429, "path_contains": "/oauth/"})
    for _ in range(2):
        reply = client.get(ZOHO, headers=ZOHO_HEADERS)
        assert reply.status_code == 503 and reply.json()["error"]["code"] == 6500 and "retry-after" not in reply.headers
    assert client.get(ZOHO, headers=ZOHO_HEADERS).status_code == 200
    token = client.post("/oauth/v2/token", data=GRANT)
    assert token.status_code == 429 and token.json()["error"] == "Access Denied"
    assert client.post("/oauth/v2/token", data=GRANT).status_code == 200


@pytest.mark.parametrize("fault", [{"status": 200}, {"status": 429, "count": 0}, {"status": 429, "colour": "red"}, []])
def test_bad_fault_is_refused(client: httpx.Client, fault: Any) -> None:
    assert client.post("/_sandbox/faults", json=fault).status_code == 400
    assert client.get(ZOHO, headers=ZOHO_HEADERS).status_code == 200


def test_reset_restores_seed_data_and_counts(client: httpx.Client) -> None:
    client.delete(f"{SDP}/{MILESTONE}", headers=SDP_HEADERS)
    client.post("/_sandbox/faults", json={"status": 500})
    client.post("/_sandbox/reset")
    assert client.get("/_sandbox/stats").json() == {"token_requests": 0, "tokens_issued": 0, "requests": {}}
    assert client.get(f"{SDP}/{MILESTONE}", headers=SDP_HEADERS).status_code == 200
