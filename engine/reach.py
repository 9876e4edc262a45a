"""Where http.request may go. Connectors go only to their configured base URL; a plain HTTP
action needs its host on HOOKRULES_HTTP_ALLOW_HOSTS, and even then never reaches loopback,
link-local or cloud metadata addresses unless that exact host or address is listed outright
(a "*.example.com" entry does not count: a DNS answer must not open the door to 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

# Cloud metadata services outside the link-local range.
METADATA = {ipaddress.ip_address("100.100.100.200"), ipaddress.ip_address("fd00:ec2::254")}


class Unreachable(Exception):
    """The request may not go there; the message says why and what setting allows it."""


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def listed(host: str, allow: tuple[str, ...]) -> str | None:
    """'exact' when the host is listed as itself, 'wildcard' when by a *.domain entry, else None."""
    if host in allow:
        return "exact"
    if any(entry.startswith("*.") and host.endswith(entry[1:]) for entry in allow):
        return "wildcard"
    return None


def check_host(url: str, allow: tuple[str, ...]) -> None:
    host = host_of(url)
    if not allow:
        raise Unreachable(f"http.request may reach no host until you list some: set HOOKRULES_HTTP_ALLOW_HOSTS (e.g. {host or 'hooks.example.com'})")
    if listed(host, allow) is None:
        raise Unreachable(f"{host!r} is not on HOOKRULES_HTTP_ALLOW_HOSTS ({', '.join(allow)})")


def forbidden(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast or ip in METADATA


async def check_addresses(url: str, allow: tuple[str, ...]) -> None:
    """Resolve the host and refuse loopback, link-local and metadata addresses, unless the
    host itself is listed outright."""
    host = host_of(url)
    if listed(host, allow) == "exact":
        return
    try:
        infos = await asyncio.to_thread(socket.getaddrinfo, host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise Unreachable(f"{host!r} does not resolve: {exc}") from None
    bad = sorted({info[4][0] for info in infos if forbidden(info[4][0])})
    if bad:
        raise Unreachable(f"{host!r} resolves to {', '.join(bad)}: loopback, link-local and metadata addresses are refused "
                          "unless the host is listed outright on HOOKRULES_HTTP_ALLOW_HOSTS")
