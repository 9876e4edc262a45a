"""Settings from the environment, and the sources file.

Everything the engine reads from the environment is read here, once, into plain objects that
the rest of the code is handed. Secrets stay in the environment: the sources file names a
source, never its secret.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from engine.oauth import OAuthClient
from engine.ratelimit import Limits
from engine.sources import IpNetwork, Source, SourceError, load_sources

DEFAULT_MAX_BODY = 1024 * 1024


class ConfigError(Exception):
    """A setting or the sources file is wrong; the message says which and how to fix it."""


# Per Zoho data centre: the ServiceDesk Plus Cloud host, the Zoho Projects API host and the
# Zoho accounts host (OAuth). A custom SDP domain, or a data centre not listed, is set with the
# full URLs instead (HOOKRULES_SDP_URL, HOOKRULES_ZOHO_URL, HOOKRULES_ACCOUNTS_URL).
DATA_CENTRES = {
    "com": ("sdpondemand.manageengine.com", "projectsapi.zoho.com", "accounts.zoho.com"),
    "eu": ("sdpondemand.manageengine.eu", "projectsapi.zoho.eu", "accounts.zoho.eu"),
    "in": ("sdpondemand.manageengine.in", "projectsapi.zoho.in", "accounts.zoho.in"),
    "com.au": ("sdpondemand.manageengine.com.au", "projectsapi.zoho.com.au", "accounts.zoho.com.au"),
    "jp": ("sdpondemand.manageengine.jp", "projectsapi.zoho.jp", "accounts.zoho.jp"),
}
DEFAULT_LIMITS = Limits(max_concurrent=5, per_second=5.0, burst=5)


@dataclass(frozen=True)
class Connector:
    """One target system: where it is, how to authenticate, how hard it may be pushed."""

    name: str  # "sdp" | "zoho"
    base_url: str | None = None
    token: str | None = field(default=None, repr=False)  # a static access token
    oauth: OAuthClient | None = None  # refreshed tokens, preferred over a static one
    limits: Limits = DEFAULT_LIMITS
    max_tries: int | None = None  # attempts before an action is given up; None: HOOKRULES_MAX_TRIES
    max_age_s: float | None = None  # seconds from the first try; None: HOOKRULES_ACTION_MAX_WAIT

    @property
    def configured(self) -> bool:
        return bool(self.base_url and (self.token or self.oauth))


@dataclass(frozen=True)
class Targets:
    """Where actions go and how they authenticate there."""

    sdp: Connector = Connector("sdp")
    zoho: Connector = Connector("zoho")
    timeout_s: float = 10.0
    # Hosts http.request may reach: exact names or addresses, or "*.example.com"; none: none.
    http_allow_hosts: tuple[str, ...] = ()

    def connector(self, name: str) -> Connector:
        return {"sdp": self.sdp, "zoho": self.zoho}[name]


@dataclass(frozen=True)
class Settings:
    redis_url: str | None
    rules_dir: Path
    sources: Mapping[str, Source]
    targets: Targets
    host: str = "127.0.0.1"
    port: int = 8000
    max_body: int = DEFAULT_MAX_BODY
    heartbeat_s: float = 5.0
    event_ttl_s: int = 7 * 24 * 3600
    max_tries: int = 5
    worker_max_jobs: int = 50
    worker_poll_s: float = 0.05
    worker_batch: int = 100  # events a worker takes from the queue at once
    worker_batches: int = 4  # batches a worker works on at once (while one waits on HTTP, the next is decided)
    reload_s: float = 2.0  # how often each process looks for rule edits
    action_max_wait_s: float = 3600.0  # an action waiting for a rate-limit turn or a token gives up after this
    schedule_catchup_s: float = 600.0  # a scheduled tick missed while no worker ran is caught up if this recent
    admin_token: str | None = field(default=None, repr=False)  # for the admin API (dead letters)
    echo_window_s: int = 300  # how long our own write is remembered, to recognise its echo
    loop_limit: int = 5  # a rule acting on one entity more often than this within loop_window_s is stopped
    loop_window_s: int = 600
    job_timeout_s: int = 120  # a job running longer is cancelled (and tried again); a send stops before
    shutdown_wait_s: int = 20  # on SIGTERM a worker finishes running jobs this long, then hands them back
    body_timeout_s: float = 10.0  # a webhook body must arrive within this, else 408
    header_timeout_s: float = 10.0  # a request's headers must arrive within this, else the connection closes
    trusted_proxies: tuple[IpNetwork, ...] = ()  # peers whose X-Forwarded-For names the sender
    stuck_queue_s: float = 60.0  # /health fails when the oldest due job has waited longer
    backoff_s: float = 1.0  # the first retry's delay; each next one doubles (with jitter), at most 5 minutes
    warnings: tuple[str, ...] = field(default_factory=tuple)


def _number(env: Mapping[str, str], name: str, default: float, kind: type = float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise ConfigError(f"{name} must be greater than 0, got {raw!r}")
    return value


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    sources_file = Path(env.get("HOOKRULES_SOURCES_FILE", "sources.yaml"))
    try:
        sources = load_sources(sources_file, env)
    except SourceError as exc:
        raise ConfigError(str(exc)) from None
    warnings = tuple(
        f"source {s.name!r} has no secret: set {s.secret_variable}; until then its webhooks get 401"
        for s in sources.values()
        if s.secret is None
    )
    try:
        port = int(env.get("HOOKRULES_PORT", "8000"))
    except ValueError:
        raise ConfigError(f"HOOKRULES_PORT={env.get('HOOKRULES_PORT')!r} is not a port number") from None
    return Settings(
        redis_url=env.get("REDIS_URL") or None,
        rules_dir=Path(env.get("HOOKRULES_RULES_DIR", "rules")),
        sources=sources,
        targets=load_targets(env),
        host=env.get("HOOKRULES_HOST", "127.0.0.1"),
        port=port,
        max_body=int(_number(env, "HOOKRULES_MAX_BODY", DEFAULT_MAX_BODY, int)),
        heartbeat_s=_number(env, "HOOKRULES_HEARTBEAT", 5.0),
        event_ttl_s=int(_number(env, "HOOKRULES_EVENT_TTL", 7 * 24 * 3600, int)),
        max_tries=int(_number(env, "HOOKRULES_MAX_TRIES", 5, int)),
        worker_max_jobs=int(_number(env, "HOOKRULES_WORKER_CONCURRENCY", 50, int)),
        worker_poll_s=_number(env, "HOOKRULES_WORKER_POLL", 0.05),
        worker_batch=max(1, int(_number(env, "HOOKRULES_WORKER_BATCH", 100, int))),
        worker_batches=max(1, int(_number(env, "HOOKRULES_WORKER_BATCHES", 4, int))),
        reload_s=_number(env, "HOOKRULES_RELOAD_INTERVAL", 2.0),
        action_max_wait_s=_number(env, "HOOKRULES_ACTION_MAX_WAIT", 3600.0),
        schedule_catchup_s=_number(env, "HOOKRULES_SCHEDULE_CATCHUP", 600.0),
        admin_token=env.get("HOOKRULES_ADMIN_TOKEN") or None,
        echo_window_s=int(_number(env, "HOOKRULES_ECHO_WINDOW", 300, int)),
        loop_limit=int(_number(env, "HOOKRULES_LOOP_LIMIT", 5, int)),
        loop_window_s=int(_number(env, "HOOKRULES_LOOP_WINDOW", 600, int)),
        job_timeout_s=int(_number(env, "HOOKRULES_JOB_TIMEOUT", 120, int)),
        shutdown_wait_s=int(_number(env, "HOOKRULES_SHUTDOWN_WAIT", 20, int)),
        backoff_s=_number(env, "HOOKRULES_BACKOFF", 1.0),
        stuck_queue_s=_number(env, "HOOKRULES_STUCK_QUEUE", 60.0),
        body_timeout_s=_number(env, "HOOKRULES_BODY_TIMEOUT", 10.0),
        header_timeout_s=_number(env, "HOOKRULES_HEADER_TIMEOUT", 10.0),
        trusted_proxies=_networks(env, "HOOKRULES_TRUSTED_PROXIES"),
        warnings=warnings,
    )


def _networks(env: Mapping[str, str], name: str) -> tuple[IpNetwork, ...]:
    items = [item.strip() for item in env.get(name, "").split(",") if item.strip()]
    try:
        return tuple(ipaddress.ip_network(item, strict=False) for item in items)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _data_centre(env: Mapping[str, str]) -> tuple[str, str, str]:
    dc = env.get("HOOKRULES_DC", "com").strip().lower().lstrip(".")
    if dc not in DATA_CENTRES:
        raise ConfigError(
            f"HOOKRULES_DC={dc!r} is not a known data centre ({', '.join(DATA_CENTRES)}); "
            "for another, set HOOKRULES_SDP_URL, HOOKRULES_ZOHO_URL and HOOKRULES_ACCOUNTS_URL"
        )
    return DATA_CENTRES[dc]


def _oauth(env: Mapping[str, str], prefix: str, name: str, token_url: str) -> OAuthClient | None:
    values = {key: env.get(f"{prefix}_{key}") or "" for key in ("CLIENT_ID", "CLIENT_SECRET", "REFRESH_TOKEN")}
    given = [key for key, value in values.items() if value]
    if not given:
        return None
    if len(given) < 3:
        missing = ", ".join(f"{prefix}_{key}" for key, value in values.items() if not value)
        raise ConfigError(f"OAuth for {name} needs a client id, a client secret and a refresh token: set {missing}")
    return OAuthClient(name, token_url, values["CLIENT_ID"], values["CLIENT_SECRET"], values["REFRESH_TOKEN"])


def _connector(env: Mapping[str, str], name: str, default_url: str | None, accounts: str) -> Connector:
    prefix = f"HOOKRULES_{name.upper()}"
    limits = Limits(
        max_concurrent=int(_number(env, f"{prefix}_MAX_CONCURRENT", DEFAULT_LIMITS.max_concurrent, int)),
        per_second=_number(env, f"{prefix}_RATE", DEFAULT_LIMITS.per_second),
        burst=int(_number(env, f"{prefix}_BURST", DEFAULT_LIMITS.burst, int)),
    )
    return Connector(
        name=name,
        base_url=(env.get(f"{prefix}_URL") or default_url or "").rstrip("/") or None,
        token=env.get(f"{prefix}_TOKEN") or None,
        oauth=_oauth(env, prefix, name, f"{accounts}/oauth/v2/token"),
        limits=limits,
        max_tries=int(_number(env, f"{prefix}_MAX_TRIES", 0, int)) or None,
        max_age_s=_number(env, f"{prefix}_MAX_AGE", 0) or None,
    )


def _portal(env: Mapping[str, str], connector: str) -> str | None:
    """A portal name or id goes into the URL as it is: a pasted URL there makes nonsense."""
    value = (env.get(f"HOOKRULES_{connector}_PORTAL") or "").strip()
    if value and not re.fullmatch(r"[A-Za-z0-9._-]+", value):
        raise ConfigError(f"HOOKRULES_{connector}_PORTAL={value!r} must be the portal's name or id alone (letters, digits, "
                          f"'.', '-', '_'), e.g. 2063927; for a whole address set HOOKRULES_{connector}_URL instead")
    return value or None


def load_targets(env: Mapping[str, str]) -> Targets:
    sdp_host, zoho_host, accounts_host = _data_centre(env)
    accounts = (env.get("HOOKRULES_ACCOUNTS_URL") or f"https://{accounts_host}").rstrip("/")
    sdp_portal, zoho_portal = _portal(env, "SDP"), _portal(env, "ZOHO")
    return Targets(
        sdp=_connector(env, "sdp", sdp_portal and f"https://{sdp_host}/app/{sdp_portal}", accounts),
        zoho=_connector(env, "zoho", zoho_portal and f"https://{zoho_host}/restapi/portal/{zoho_portal}", accounts),
        timeout_s=_number(env, "HOOKRULES_HTTP_TIMEOUT", 10.0),
        http_allow_hosts=tuple(h.strip().lower() for h in env.get("HOOKRULES_HTTP_ALLOW_HOSTS", "").split(",") if h.strip()),
    )
