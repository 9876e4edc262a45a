"""Sources: who may send webhooks, how each proves it, and how hard each may push.

    sources:
      sdp:
        shape: sdp                       # the entity is the body's {"milestone": {...}} object
        default_event: "{kind}.updated"  # event type when the sender names none
        auth: [token]                    # token | hmac | github | standard (any of them)
        allow_ips: [203.0.113.0/24]      # optional: only these addresses may send
        rate: 50                         # optional: requests per second, else 429

Secrets stay in the environment: HOOKRULES_SOURCE_<NAME>_SECRET, and during a rotation
HOOKRULES_SOURCE_<NAME>_SECRET_PREVIOUS as well; both are accepted until the old one is removed.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SOURCE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
SHAPES = ("sdp", "zoho", "json")  # see shapes.py
MAP_KEYS = {"kind", "id", "fields", "type", "delivery"}
DEFAULT_JSON_MAP = {"kind": "item", "id": "body.id", "fields": "body"}
# token: X-Hook-Token. hmac: X-Hook-Signature sha256=<hex>. github: X-Hub-Signature-256.
# standard: Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature v1,<base64>).
SCHEMES = ("token", "hmac", "github", "standard", "param")
DEFAULT_SCHEMES = ("token", "hmac")
KEYS = {"shape", "default_event", "auth", "allow_ips", "rate", "map"}
DEFAULT_RATE = 100.0

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class SourceError(Exception):
    """The sources file is wrong; the message names the file, the source and the fix."""


@dataclass(frozen=True)
class Source:
    """A named sender of webhooks: how it authenticates and where its events sit."""

    name: str
    # From the environment; empty means every request is refused. repr=False keeps them out
    # of any log line that prints the object.
    secrets: tuple[str, ...] = field(default=(), repr=False)
    shape: str = "sdp"
    default_event: str | None = None
    schemes: tuple[str, ...] = DEFAULT_SCHEMES
    allow_ips: tuple[IpNetwork, ...] = ()  # empty: any address
    rate: float = DEFAULT_RATE
    mapping: dict[str, str] = field(default_factory=dict)  # shape json: where things are (see shapes.py)

    @property
    def secret(self) -> str | None:
        return self.secrets[0] if self.secrets else None

    @property
    def secret_variable(self) -> str:
        return secret_variable(self.name)


def secret_variable(source_name: str) -> str:
    return "HOOKRULES_SOURCE_" + re.sub(r"[^A-Z0-9]", "_", source_name.upper()) + "_SECRET"


def _schemes(value: Any, where: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    unknown = [item for item in items if item not in SCHEMES]
    if not items or unknown:
        raise SourceError(f"{where}: auth must be one or more of {', '.join(SCHEMES)}, got {value!r}")
    return tuple(items)


def _networks(value: Any, where: str) -> tuple[IpNetwork, ...]:
    if not isinstance(value, list):
        raise SourceError(f"{where}: allow_ips must be a list of addresses or networks, e.g. [203.0.113.0/24]")
    try:
        return tuple(ipaddress.ip_network(str(item), strict=False) for item in value)
    except ValueError as exc:
        raise SourceError(f"{where}: allow_ips: {exc}") from None


def _mapping(value: Any, shape: str, where: str) -> dict[str, str]:
    if value is None:
        # The generic default: the whole JSON body is the entity, its "id" the id.
        return dict(DEFAULT_JSON_MAP) if shape == "json" else {}
    if not isinstance(value, dict) or not all(isinstance(v, str) and v for v in value.values()):
        raise SourceError(f"{where}: map must be a mapping of {', '.join(sorted(MAP_KEYS))} to paths such as body.data.id")
    unknown = set(value) - MAP_KEYS
    if unknown:
        raise SourceError(f"{where}: map has unknown keys {sorted(unknown)}; allowed: {', '.join(sorted(MAP_KEYS))}")
    if shape == "json" and "id" not in value:
        raise SourceError(f"{where}: map needs id: the path of the entity's id, e.g. body.data.id")
    for key in ("id", "fields", "delivery"):
        if key in value and value[key].split(".", 1)[0] not in ("body", "headers", "query"):
            raise SourceError(f"{where}: map.{key} must be a path starting with body., headers. or query., got {value[key]!r}")
    return dict(value)


def parse_source(name: Any, spec: Any, path: Path, env: Mapping[str, str]) -> Source:
    where = f"{path}: source {name!r}"
    if not isinstance(name, str) or not SOURCE_NAME.match(name):
        raise SourceError(f"{path}: source name {name!r} must be lower-case letters, digits, '-' or '_'")
    spec = spec or {}
    if not isinstance(spec, dict):
        raise SourceError(f"{where} must be a mapping")
    unknown = set(spec) - KEYS
    if unknown:
        raise SourceError(f"{where} has unknown keys {sorted(unknown)}; allowed: {', '.join(sorted(KEYS))}")
    shape = spec.get("shape", "sdp")
    if shape not in SHAPES:
        raise SourceError(f"{where} has shape {shape!r}; known shapes: {', '.join(SHAPES)}")
    rate = spec.get("rate", DEFAULT_RATE)
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or rate <= 0:
        raise SourceError(f"{where}: rate must be a number of requests per second above 0, got {rate!r}")
    variable = secret_variable(name)
    secrets = tuple(s for s in (env.get(variable), env.get(variable + "_PREVIOUS")) if s)
    return Source(
        name=name,
        secrets=secrets,
        shape=shape,
        default_event=spec.get("default_event") or ("{kind}.updated" if shape == "zoho" else None),
        schemes=_schemes(spec["auth"], where) if "auth" in spec else DEFAULT_SCHEMES,
        allow_ips=_networks(spec["allow_ips"], where) if "allow_ips" in spec else (),
        rate=float(rate),
        mapping=_mapping(spec.get("map"), shape, where),
    )


def load_sources(path: Path, env: Mapping[str, str]) -> dict[str, Source]:
    """Read the sources file. A missing file means the built-in default: one `sdp` source."""
    if not path.exists():
        raw: object = {"sources": {"sdp": {"shape": "sdp", "default_event": "{kind}.updated"}}}
    else:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise SourceError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("sources"), dict):
        raise SourceError(f"{path}: expected a mapping with a 'sources:' mapping inside")
    return {name: parse_source(name, spec, path, env) for name, spec in raw["sources"].items()}
