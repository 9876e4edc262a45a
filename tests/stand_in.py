"""A small HTTP server standing in for ServiceDesk Plus in the tests: it records every request
that reaches it, over a real socket, and answers what the test tells it to."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode())

    def input_data(self) -> object:
        return json.loads(self.form()["input_data"][0])


class StandIn:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.replies: list[tuple[int, dict[str, str]]] = []  # scripted (status, headers), used in order
        self.delay_s = 0.0  # how long to wait before answering: a slow system
        self._lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                time.sleep(stand_in.delay_s)
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                with stand_in._lock:
                    stand_in.requests.append(
                        Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    status, headers = stand_in.replies.pop(0) if stand_in.replies else (200, {})
                reply = json.dumps({"response_status": {"status_code": 2000 if status < 300 else 4000}}).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_GET = do_PUT = do_POST = do_DELETE = _handle

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def to(self, path_part: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if path_part in r.path]

    def wait_for(self, path_part: str, count: int, timeout_s: float = 15.0) -> list[Recorded]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.to(path_part)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        return self.to(path_part)
