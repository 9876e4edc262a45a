"""What the webhook route checks before it reads a body: the sender's address and its rate.

Per API process and in memory: a limit here protects this process, and costs no Redis round
trip on the path every webhook takes.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from engine.sources import IpNetwork, Source


def client_address(peer: str | None, forwarded_for: str | None, trusted: Sequence[IpNetwork]) -> str | None:
    """The sender's address: the peer's, or, when the peer is a trusted proxy, the last
    address in X-Forwarded-For that is not a trusted proxy itself."""
    if peer is None or not forwarded_for or not _within(peer, trusted):
        return peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if not _within(hop, trusted):
            return hop
    return peer


def _within(address: str, networks: Sequence[IpNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def address_allowed(source: Source, address: str | None) -> bool:
    return not source.allow_ips or (address is not None and _within(address, source.allow_ips))


@dataclass
class RateGate:
    """A token bucket per source: `rate` requests a second, bursts up to one second's worth."""

    buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (tokens, at)

    def admit(self, source: Source, now: float | None = None) -> float:
        """0 when admitted; else the seconds until the next request would be."""
        now = time.monotonic() if now is None else now
        tokens, at = self.buckets.get(source.name, (source.rate, now))
        tokens = min(source.rate, tokens + (now - at) * source.rate)
        if tokens >= 1:
            self.buckets[source.name] = (tokens - 1, now)
            return 0.0
        self.buckets[source.name] = (tokens, now)
        return (1 - tokens) / source.rate
