"""How uvicorn serves the API: httptools on uvloop, with a deadline and a size limit on
request headers.

httptools and uvloop are several times faster than h11 and asyncio's own loop (bench/run.py
measures a bare route under these same options beside /hooks). Neither bounds headers:
uvicorn times out idle keep-alive connections but not a client that sends its headers one byte
a minute (slowloris), and llhttp takes headers of any size. Here the headers of each request
must be complete within `header_timeout_s` of its first byte (of the connection, for the first
request), or the connection is closed; and headers still incomplete after MAX_HEADER_BYTES are
answered 431. The body has its own limits (HOOKRULES_BODY_TIMEOUT, HOOKRULES_MAX_BODY, in
api.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEADER_BYTES = 16 * 1024


class HeaderLimitsProtocol(HttpToolsProtocol):
    header_timeout_s = 10.0  # set per server by with_header_limits()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._reading_headers = True
        self._header_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # The next request on a kept-alive connection: its deadline runs from its first byte.
        self._reading_headers = True
        self._header_bytes = 0
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._cancel_timer()
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # Counted after parsing: a chunk that completes the headers (and brings body bytes
        # with it) is never refused.
        if self._reading_headers and not self.transport.is_closing():
            self._header_bytes += len(data)
            if self._header_bytes > MAX_HEADER_BYTES:
                self._refuse_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        super().connection_lost(exc)

    def _cancel_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def _refuse_headers(self) -> None:
        self._cancel_timer()
        message = b"request headers over 16 KiB"
        self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain\r\n"
                             b"content-length: " + str(len(message)).encode() + b"\r\nconnection: close\r\n\r\n" + message)
        self.transport.close()


def with_header_limits(timeout_s: float) -> type[HeaderLimitsProtocol]:
    """The protocol class for one server, its deadline fixed: no module state to share."""
    return type("HeaderLimitsProtocol", (HeaderLimitsProtocol,), {"header_timeout_s": timeout_s})


def server_options(header_timeout_s: float) -> dict[str, Any]:
    """uvicorn.run() options shared by the API and the benchmark's bare route."""
    return {"http": with_header_limits(header_timeout_s), "loop": "uvloop"}
