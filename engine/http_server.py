"""How uvicorn serves the API: h11, with a deadline on request headers.

uvicorn times out idle keep-alive connections but not a client that sends its headers one byte
a minute (slowloris): such a client holds a connection for as long as it likes. Here the
headers of each request must be complete within `header_timeout_s` of its first byte (of the
connection, for the first request), or the connection is closed. The body has its own limit
(HOOKRULES_BODY_TIMEOUT, in api.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

class HeaderDeadlineProtocol(H11Protocol):
    header_timeout_s = 10.0  # set per server by with_header_deadline()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def handle_events(self) -> None:
        waiting = self.cycle
        super().handle_events()
        # A new request cycle means its headers are complete.
        if self.cycle is not None and self.cycle is not waiting and self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # The next request on this connection gets its own deadline from its first byte on;
        # until then uvicorn's keep-alive timeout applies.
        self._restart_on_data = True

    def data_received(self, data: bytes) -> None:
        if getattr(self, "_restart_on_data", False) and self._header_timer is None:
            self._restart_on_data = False
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def with_header_deadline(timeout_s: float) -> type[HeaderDeadlineProtocol]:
    """The protocol class for one server, its deadline fixed: no module state to share."""
    return type("HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), {"header_timeout_s": timeout_s})


def server_options(header_timeout_s: float) -> dict[str, Any]:
    """uvicorn.run() options: the protocol above, and headers of at most 16 KiB."""
    return {"http": with_header_deadline(header_timeout_s), "h11_max_incomplete_event_size": 16 * 1024}
