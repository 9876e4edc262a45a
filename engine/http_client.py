"""The worker's outbound HTTP client: one pooled aiohttp session behind a small interface.

Every action, read and OAuth token request goes through `HttpClient.request`, which answers a
`Reply` (status, decoded text, headers) or raises `HttpError`, whatever went wrong on the way.
aiohttp replaced httpx here for CPU: with 50 requests in flight httpx's pool scans every
connection on each request. Through Sender.send, 50 PUTs in flight to a local server, httpx
cost about 2.4 ms of the worker's CPU per request and aiohttp 0.15 ms; the worker aims at
1,000 events/s per process.

What aiohttp would otherwise do differently from the httpx client it replaced, switched off:
- redirects are never followed (a 3xx is a reply like any other);
- no cookies are kept from one request to the next (each action stands alone);
- an idempotent request is not silently sent a second time when its connection breaks: one
  call, one request on the wire, so attempt counts and rate limits stay true;
- an error message names a URL's host but not its path, query or credentials (aiohttp's
  connection timeout repeats the whole URL, and an http.request URL may carry a key).
Replies are decompressed (gzip, deflate; only what aiohttp can decode is asked for), so `text`
is the body as the server meant it, decoded with its charset or UTF-8, bad bytes replaced.
"""

from __future__ import annotations

import json as jsonlib
import re
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.helpers import ProxyInfo, proxies_from_env
from multidict import CIMultiDict

# Field name -> (file name, text content, content type): one multipart file part each.
FileParts = Mapping[str, tuple[str, str, str]]

# A URL in a message, kept to its scheme, host and port: the credentials, path (a Slack-style
# webhook URL is a secret in itself), query and fragment left out.
_URL_SECRETS = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?:[^/?#\s'\"<>@]*@)?(?P<host>[^/?#\s'\"<>]*)[^\s'\"<>]*")

_CONTENT_TYPE = ("Content-Type",)
# What HTML5 percent-encodes in a multipart file name: '"' and control characters but ESC.
_HTML5_ESCAPED = re.compile(r'["\x00-\x1a\x1c-\x1f]')


@dataclass(frozen=True)
class Reply:
    status_code: int
    text: str
    headers: Mapping[str, str]  # case-insensitive: headers.get("retry-after")


class HttpError(Exception):
    """The request got no reply: refused, reset, timed out, a bad URL, a broken body. The
    message is "TypeName: detail", TypeName the underlying error's, safe to log and store."""


class HttpClient:
    """One keep-alive pool for the process. Create it anywhere; the aiohttp session is made
    on the first request, inside the running loop it then belongs to. Close with aclose()."""

    # An idle connection is dropped after keepalive_s: httpx's 5 s, shorter than most servers'
    # own idle timeout, so a request seldom goes out on a connection the server is closing.
    def __init__(self, *, max_connections: int = 100, keepalive_s: float = 5.0) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")
        self._max_connections = max_connections
        self._keepalive_s = keepalive_s
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[str, ProxyInfo] = {}

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        files: FileParts | None = None,
        json: Any = None,
        timeout: float,
    ) -> Reply:
        """Send one request; the whole exchange (connection, sending, the reply's body) gets
        `timeout` seconds. `data` is a form, or with `files` the plain fields of a multipart
        body; `json` is sent only without either."""
        sent_headers = CIMultiDict(headers or {})
        # Built before the try: a body that cannot be encoded (NaN in JSON) is a bug in what
        # was asked for, not a transport failure, as it was with httpx.
        body = _body(sent_headers, data, files, json)
        session = self._open()
        proxy, proxy_headers = self._proxy_for(url, sent_headers)
        try:
            async with session.request(
                method,
                url,
                headers=sent_headers,
                params=params or None,
                data=body,
                # Without a body aiohttp would label a POST or PUT application/octet-stream.
                skip_auto_headers=_CONTENT_TYPE if body is None else None,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout),
                proxy=proxy,
                proxy_headers=proxy_headers,
            ) as response:
                raw = await response.read()
                return Reply(response.status, raw.decode(response.get_encoding(), errors="replace"), response.headers)
        except TimeoutError as exc:
            # aiohttp's whole-request timeout; the caller's own deadline arrives as a
            # cancellation instead, and passes through untouched.
            raise HttpError(_message(exc, f"no complete reply within {timeout:g} s")) from None
        except (aiohttp.ClientError, ValueError) as exc:
            # ValueError: a header or file name with a line break, a URL yarl cannot read.
            raise HttpError(_message(exc)) from None

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = self._new_session()
        return self._session

    def _new_session(self) -> aiohttp.ClientSession:
        # The proxy settings httpx took from the environment (HTTP_PROXY, HTTPS_PROXY,
        # NO_PROXY), read once. Not trust_env: it reads them and ~/.netrc in a thread on every
        # request, and sends ~/.netrc credentials to the hosts it lists.
        self._proxies = proxies_from_env()
        connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0, keepalive_timeout=self._keepalive_s)
        session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)
        # aiohttp sends a GET, PUT or DELETE a second time when the connection fails before a
        # reply (3.14.5; its own test client switches it off the same way). Whether to try
        # again is for the worker's retry policy, which counts attempts and rate-limit slots.
        session._retry_connection = False
        return session

    def _proxy_for(self, url: str, headers: CIMultiDict[str]) -> tuple[str | None, dict[str, str] | None]:
        """The proxy for this URL, if any, and the headers of a CONNECT through it. The proxy's
        credentials go where aiohttp would put them from its deprecated proxy_auth: on the
        request itself for http://, which the proxy forwards, on the CONNECT for https://."""
        if not self._proxies:
            return None, None
        parts = urlsplit(url)
        info = self._proxies.get(parts.scheme)
        if info is None or (parts.hostname and urllib.request.proxy_bypass(parts.hostname)):
            return None, None
        if info.proxy_auth is None:
            return str(info.proxy), None
        if parts.scheme == "http":
            headers["Proxy-Authorization"] = info.proxy_auth.encode()
            return str(info.proxy), None
        return str(info.proxy), {"Proxy-Authorization": info.proxy_auth.encode()}


def _body(headers: CIMultiDict[str], data: Mapping[str, str] | None, files: FileParts | None, json: Any) -> Any:
    """What aiohttp sends, by httpx's precedence: multipart when there are files, else the
    form, else JSON (compact UTF-8, as httpx 0.28 wrote it), else nothing."""
    if files:
        headers.popall("Content-Type", None)  # the multipart boundary goes in it
        # quote_fields=False: aiohttp would otherwise percent-encode the whole file name
        # ("a b.txt" arriving as "a%20b.txt"); httpx wrote it as UTF-8, escaped as HTML5 does.
        form = aiohttp.FormData(quote_fields=False)
        for name, value in (data or {}).items():
            form.add_field(name, value)
        for name, (filename, text, content_type) in files.items():
            form.add_field(name, text.encode(), filename=_html5_escaped(filename), content_type=content_type)
        return form
    if data:
        return dict(data)  # aiohttp url-encodes it, Content-Type included unless given
    if json is not None:
        headers.setdefault("Content-Type", "application/json")
        return jsonlib.dumps(json, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    return None


def _html5_escaped(filename: str) -> str:
    """A file name as HTML5 forms (and httpx) put it in Content-Disposition: quotes and control
    characters percent-encoded. aiohttp escapes the backslash itself."""
    return _HTML5_ESCAPED.sub(lambda m: f"%{ord(m.group()):02X}", filename)


def _message(exc: BaseException, fallback: str = "") -> str:
    detail = _URL_SECRETS.sub(r"\g<scheme>\g<host>", str(exc)) or fallback or repr(exc)
    return f"{type(exc).__name__}: {detail}"
