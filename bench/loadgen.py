"""The bench's own HTTP/1.1 load generator: raw sockets, keep-alive, asyncio, one process.

Run by bench/load.py as a separate process (so it has its own interpreter and its CPU seconds
are its own), for a duration or a count of requests, optionally paced at a rate:

    python bench/loadgen.py --url http://127.0.0.1:P/hooks/sdp --token T --template FILE
        --ids FILE --first-pe N --connections C (--duration S | --count N) [--rate R] --out FILE

Each request is its own webhook (see bench/payloads.py). The result is one JSON object in --out:
requests, seconds, statuses, errors, p50/p99 latency in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

MAX_SECONDS = 1800.0  # whatever the count, a run never lasts longer than this
IO_TIMEOUT_S = 30.0  # a connection or an answer that takes longer counts as an error


class Plan:
    """Hands out request numbers until the count or the deadline is reached; paces them."""

    def __init__(self, count: int | None, duration: float | None, rate: float | None) -> None:
        self.count, self.rate = count, rate
        self.start = time.perf_counter()
        self.deadline = self.start + min(duration or MAX_SECONDS, MAX_SECONDS)
        self.next_k = 0

    def take(self) -> int | None:
        if (self.count is not None and self.next_k >= self.count) or time.perf_counter() >= self.deadline:
            return None
        k, self.next_k = self.next_k, self.next_k + 1
        return k

    async def pace(self, k: int) -> None:
        if self.rate:
            delay = self.start + k / self.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)


class Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.errors = 0
        self.first_sent = 0.0
        self.last_done = 0.0


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, whether the server closes the connection) after reading the whole answer."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, close = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value.strip().lower() == "close":
            close = True
        elif name == "transfer-encoding":
            raise ValueError("chunked answers are not expected here")
    if length:
        await reader.readexactly(length)
    return status, close


class Sender:
    def __init__(self, args: argparse.Namespace) -> None:
        url = urlsplit(args.url)
        self.host, self.port, self.path = url.hostname or "127.0.0.1", url.port or 80, url.path
        template = Path(args.template).read_text()
        head, rest = template.split("@@ID@@")
        middle, tail = rest.split("@@PE@@")
        self.head, self.middle, self.tail = head.encode(), middle.encode(), tail.encode()
        self.ids = [line.strip().encode() for line in Path(args.ids).read_text().splitlines() if line.strip()]
        self.first_pe = args.first_pe
        self.prefix = (f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                       f"Content-Type: application/json\r\nX-Hook-Token: {args.token}\r\n").encode()

    def request(self, k: int) -> bytes:
        body = self.head + self.ids[k % len(self.ids)] + self.middle + str(self.first_pe + k).encode() + self.tail
        return self.prefix + b"Content-Length: %d\r\n\r\n" % len(body) + body

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.wait_for(asyncio.open_connection(self.host, self.port), IO_TIMEOUT_S)

    async def connection(self, plan: Plan, tally: Tally) -> None:
        reader, writer = await self.connect()
        try:
            while (k := plan.take()) is not None:
                await plan.pace(k)
                sent = time.perf_counter()
                tally.first_sent = tally.first_sent or time.time()
                writer.write(self.request(k))
                try:
                    status, close = await asyncio.wait_for(read_response(reader), IO_TIMEOUT_S)
                except (asyncio.IncompleteReadError, ConnectionError, ValueError, TimeoutError):
                    tally.errors += 1
                    close = True
                else:
                    tally.latencies.append(time.perf_counter() - sent)
                    tally.statuses[status] += 1
                    tally.last_done = time.time()
                if close:
                    writer.close()
                    reader, writer = await self.connect()
        finally:
            writer.close()


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p / 100))]


async def main(args: argparse.Namespace) -> dict:
    sender, tally = Sender(args), Tally()
    plan = Plan(args.count, args.duration, args.rate)
    await asyncio.gather(*(sender.connection(plan, tally) for _ in range(args.connections)))
    seconds = time.perf_counter() - plan.start
    lat = sorted(tally.latencies)
    return {"requests": len(lat), "seconds": seconds, "statuses": {str(k): v for k, v in tally.statuses.items()},
            "errors": tally.errors, "p50_ms": percentile(lat, 50) * 1000, "p99_ms": percentile(lat, 99) * 1000,
            "first_sent": tally.first_sent, "last_done": tally.last_done}


def cli() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--url", "--token", "--template", "--ids", "--out"):
        parser.add_argument(name, required=True)
    parser.add_argument("--first-pe", type=int, required=True)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float)
    parser.add_argument("--count", type=int)
    parser.add_argument("--rate", type=float)
    args = parser.parse_args()
    if args.duration is None and args.count is None:
        parser.error("give --duration or --count")
    result = asyncio.run(main(args))
    Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    cli()
