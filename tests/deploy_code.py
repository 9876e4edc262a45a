"""What the code offers that the deploy files name, for checking them against it: the
variables hookrules reads, the commands of engine/cli.py's parser, the routes of the API and
sandbox apps (and the query parameters the OpenAPI document declares), and the shutdown wait
the stop grace periods must allow for.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from conftest import ROOT
from deploy_files import manifest


class ReadRecorder(dict):  # type: ignore[type-arg]
    """An environment that notes every variable asked for."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return super().__contains__(key)


def settings_read() -> set[str]:
    """The variables load_settings reads, with the repository's sources file."""
    from engine.config import load_settings

    env = ReadRecorder(HOOKRULES_SOURCES_FILE=str(ROOT / "sources.yaml"))
    load_settings(env)
    return env.asked


def known_variables() -> set[str]:
    """Every variable hookrules reads: what the settings and the sandbox's settings ask for when
    loaded, and every name the code spells out (HOOKRULES_LOG_FORMAT in cli.py, ...)."""
    from engine.sandbox import SandboxSettings

    sandbox = ReadRecorder()
    SandboxSettings.from_env(sandbox)
    spelled = {
        name
        for path in [*ROOT.joinpath("engine").rglob("*.py"), *ROOT.joinpath("workers").rglob("*.py")]
        for name in re.findall(r"\b(HOOKRULES_[A-Z0-9_]*[A-Z0-9]|REDIS_URL)(?![A-Za-z0-9_{<])", path.read_text())
    }
    return settings_read() | sandbox.asked | spelled


def cli_commands() -> set[str]:
    from engine.cli import parser

    subparsers = next(a for a in parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    return set(subparsers.choices)


def api_routes() -> set[str]:
    from engine.api import create_app
    from engine.config import load_settings
    from engine.rule_files import load_ruleset

    settings = load_settings({"HOOKRULES_SOURCES_FILE": str(ROOT / "sources.yaml"), "REDIS_URL": "redis://127.0.0.1:1/0"})
    app = create_app(settings, load_ruleset(ROOT / "rules", settings.targets))  # connects only when started
    return {route.path for route in app.routes}


def check_api_path(path: str) -> None:
    """`path` (with its query string) names a route of the API, and each query parameter one
    the OpenAPI document declares for it, with a value it allows."""
    from engine.openapi import OPENAPI

    route, query = urlsplit(path).path, parse_qsl(urlsplit(path).query, keep_blank_values=True)
    assert route in api_routes(), f"{path}: no route {route} in engine/api.py"
    declared = {p["name"]: p for p in OPENAPI["paths"].get(route, {}).get("get", {}).get("parameters", []) if p["in"] == "query"}
    for name, value in query:
        assert name in declared, f"{path}: {route} takes no query parameter {name!r}"
        assert value in declared[name]["schema"].get("enum", [value]), f"{path}: {name}={value!r} is not allowed"


def sandbox_routes() -> set[str]:
    from engine.sandbox import SandboxSettings, create_sandbox

    return {route.path for route in create_sandbox(SandboxSettings()).routes}


def shutdown_wait_s() -> int:
    from engine.config import load_settings

    configured = manifest("ConfigMap", "hookrules-config")["data"].get("HOOKRULES_SHUTDOWN_WAIT")
    return int(configured) if configured else load_settings({"HOOKRULES_SOURCES_FILE": str(ROOT / "sources.yaml")}).shutdown_wait_s
