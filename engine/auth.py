"""How a webhook proves it comes from its source. Pure: headers, body and clock in; a
Rejected(401) with the reason, or nothing.

Schemes (a source accepts those listed in its `auth`, see sources.py), each compared in
constant time against every active secret, so a secret can be rotated without a gap:
- token:    `X-Hook-Token: <secret>` (ServiceDesk Plus and Zoho cannot sign: pair it with
            allow_ips);
- hmac:     `X-Hook-Signature: sha256=<hex HMAC-SHA256 of the raw body>`;
- github:   `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`;
- standard: Standard Webhooks: `webhook-id`, `webhook-timestamp` (within ±5 minutes),
            `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, several
            signatures separated by spaces; a `whsec_` secret is base64;
- param:    a `hook_token=<secret>` parameter, in the form body or the query string, for
            senders that cannot set a header (Zoho Projects' "custom parameters"). Intake
            drops it from what is stored.
A scheme whose header is present but wrong is refused outright, never passed over.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from urllib.parse import parse_qs

from engine.sources import Source

TOLERANCE_S = 300
_UNIX_SECONDS = re.compile(r"^[0-9]{1,12}$")
HEADERS = {
    "token": "X-Hook-Token",
    "hmac": "X-Hook-Signature",
    "github": "X-Hub-Signature-256",
    "standard": "webhook-id, webhook-timestamp and webhook-signature",
    "param": "a hook_token parameter (form or query string)",
}
PARAM = "hook_token"


class Rejected(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _hex_signature(header: str, secrets: tuple[str, ...], body: bytes, value: str | None) -> bool | None:
    if value is None:
        return None
    scheme, _, given = value.partition("=")
    if scheme.strip().lower() != "sha256" or not given:
        raise Rejected(401, f"{header} must be 'sha256=<hex HMAC-SHA256 of the raw body>'")
    given_bytes = given.strip().lower().encode()
    matches = [hmac.compare_digest(given_bytes, hmac.new(s.encode(), body, hashlib.sha256).hexdigest().encode()) for s in secrets]
    if not any(matches):
        raise Rejected(401, f"{header} does not match the body signed with this source's secret")
    return True


def _one_of(given: str, secrets: tuple[str, ...]) -> bool:
    # Every secret compared, in constant time each: which one matched leaks nothing either.
    return any([hmac.compare_digest(given.encode(), s.encode()) for s in secrets])


def token(secrets: tuple[str, ...], headers: Mapping[str, str], body: bytes, now: float,
          query: Mapping[str, str]) -> bool | None:
    given = headers.get("x-hook-token")
    if given is None:
        return None
    if not _one_of(given, secrets):
        raise Rejected(401, "X-Hook-Token does not match this source's secret")
    return True


def signature(secrets: tuple[str, ...], headers: Mapping[str, str], body: bytes, now: float,
              query: Mapping[str, str]) -> bool | None:
    return _hex_signature("X-Hook-Signature", secrets, body, headers.get("x-hook-signature"))


def github(secrets: tuple[str, ...], headers: Mapping[str, str], body: bytes, now: float,
           query: Mapping[str, str]) -> bool | None:
    return _hex_signature("X-Hub-Signature-256", secrets, body, headers.get("x-hub-signature-256"))


def _standard_key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret[len("whsec_"):], validate=True)
        except binascii.Error:
            pass
    return secret.encode()


def standard(secrets: tuple[str, ...], headers: Mapping[str, str], body: bytes, now: float,
             query: Mapping[str, str]) -> bool | None:
    webhook_id, stamp, signatures = (headers.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if signatures is None:
        return None
    if not webhook_id or not stamp or not _UNIX_SECONDS.match(stamp.strip()):
        raise Rejected(401, "Standard Webhooks needs webhook-id, webhook-timestamp (unix seconds) and webhook-signature")
    skew = int(stamp) - now
    if abs(skew) > TOLERANCE_S:
        raise Rejected(401, f"webhook-timestamp is {int(skew)} s from now; allowed: ±{TOLERANCE_S} s (a replay, or a wrong clock)")
    signed = f"{webhook_id}.{stamp.strip()}.".encode() + body
    expected = [base64.b64encode(hmac.new(_standard_key(s), signed, hashlib.sha256).digest()) for s in secrets]
    given = [part.split(",", 1)[1].encode() for part in signatures.split() if part.startswith("v1,")]
    if not any(hmac.compare_digest(g, e) for g in given for e in expected):
        raise Rejected(401, "webhook-signature: no v1 signature matches this source's secret")
    return True


def param(secrets: tuple[str, ...], headers: Mapping[str, str], body: bytes, now: float,
          query: Mapping[str, str]) -> bool | None:
    given = query.get(PARAM)
    if given is None and headers.get("content-type", "").split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
        given = next(iter(parse_qs(body.decode("utf-8", "replace")).get(PARAM, [])), None)
    if given is None:
        return None
    if not _one_of(given, secrets):
        raise Rejected(401, f"the {PARAM} parameter does not match this source's secret")
    return True


# (secrets, headers, body, now, query) -> True when it vouches, None when its credentials are
# absent; Rejected when they are present and wrong.
VERIFIERS: dict[str, Callable[[tuple[str, ...], Mapping[str, str], bytes, float, Mapping[str, str]], bool | None]] = {
    "token": token,
    "hmac": signature,
    "github": github,
    "standard": standard,
    "param": param,
}


def authenticate(source: Source, headers: Mapping[str, str], body: bytes, now: float,
                 query: Mapping[str, str] | None = None) -> None:
    """Raise Rejected(401) unless one of the source's schemes vouches for the request.
    `headers` must have lower-case names."""
    if not source.secrets:
        raise Rejected(401, f"source {source.name!r} accepts no webhooks yet: the server has no secret for it")
    for scheme in source.schemes:
        if VERIFIERS[scheme](source.secrets, headers, body, now, query or {}):
            return
    wanted = [HEADERS[s] for s in source.schemes]
    # "; or " only where a scheme's own headers are a list: "a, b and c; or X-Hook-Token".
    accepted = ("; or " if any("," in h for h in wanted) else " or ").join(wanted)
    raise Rejected(401, f"missing credentials: this source accepts {accepted}")
