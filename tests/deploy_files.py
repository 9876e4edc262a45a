"""The files in deploy/ read as the deploy tests need them, and the tools that check them.

The readers parse just enough of each format: the Kubernetes manifests and compose.yaml
through PyYAML (which resolves compose's << merges), the Dockerfile into its instructions and
stages, the systemd units into (section, key, value), hookrules.env.example into the variables
it sets or shows, haproxy.cfg into its sections; healthcheck.py is loaded as a module.
`tool` finds a validator the `test` extra installs in the venv (docker-compose, hadolint),
`run` runs a command with a deadline, `validate_kubernetes` checks a manifest against
Kubernetes' own schemas (kubernetes-validate, strict).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from conftest import ROOT

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
BIN = Path(sys.executable).parent  # the venv's scripts: docker-compose, hadolint, hookrules
K8S_VERSIONS = ["1.30.0", "1.37.0"]  # the oldest and newest Kubernetes the manifests target
IMAGE = "hookrules"  # the image name in compose.yaml and the manifests (kustomize renames it)
# What every stop grace period (compose, Kubernetes, systemd) allows a worker beyond
# HOOKRULES_SHUTDOWN_WAIT: cancelling what still runs, handing its events back, closing.
HAND_BACK_S = 10


# --- YAML: the Kubernetes manifests and compose.yaml -----------------------------------------

def yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifests() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in sorted(K8S.rglob("*.yaml")) if path.name != "kustomization.yaml" for doc in yaml_docs(path)]


def manifest(kind: str, name: str) -> dict[str, Any]:
    found = [doc for _, doc in manifests() if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["template"]["spec"]


def hookrules_containers() -> Iterator[tuple[str, dict[str, Any]]]:
    for _, doc in manifests():
        if doc["kind"] in ("Deployment", "StatefulSet"):
            for container in pod_spec(doc)["containers"]:
                if container["image"].split(":")[0] == IMAGE:
                    yield doc["metadata"]["name"], container


def compose_raw() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())  # PyYAML resolves the << merges


def hookrules_services(compose: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose["services"].items() if svc.get("image", "").split(":")[0] == IMAGE}


def duration_s(text: str) -> float:
    """A compose duration ("60s", "1m30s") in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s|us)", text)
    assert parts and "".join(n + u for n, u in parts) == text, text
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}[u] for n, u in parts)


# --- the Dockerfile --------------------------------------------------------------------------

def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    lines, joined = [], ""
    for raw in (DEPLOY / "Dockerfile").read_text().splitlines():
        if raw.lstrip().startswith("#") and not joined:
            continue
        if raw.rstrip().endswith("\\"):
            joined += raw.rstrip()[:-1] + " "
            continue
        joined += raw
        if joined.strip():
            word, _, rest = joined.strip().partition(" ")
            lines.append((word.upper(), rest.strip()))
        joined = ""
    return lines


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction, args in dockerfile():
        if instruction == "FROM":
            found.append([])
        found[-1].append((instruction, args))
    return found


def dockerfile_env() -> dict[str, str]:
    """ENV of the final stage."""
    env: dict[str, str] = {}
    for instruction, args in stages()[-1]:
        if instruction == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(args))
    return env


# --- systemd units and env files -------------------------------------------------------------

UNITS = sorted(DEPLOY.glob("*.service"))


def unit(path: Path) -> list[tuple[str, str, str]]:
    """(section, key, value) of a systemd unit, repeated keys kept."""
    entries, section = [], ""
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        entries.append((section, key.strip(), value.strip()))
    return entries


def unit_value(entries: list[tuple[str, str, str]], key: str) -> list[str]:
    return [value for _, k, value in entries if k == key]


def unit_env(entries: list[tuple[str, str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for value in unit_value(entries, "Environment"):
        env.update(item.split("=", 1) for item in shlex.split(value))
    return env


def env_file_names(path: Path) -> dict[str, str | None]:
    """Every VARIABLE of an env file, set (its value) or commented out (None)."""
    names: dict[str, str | None] = {}
    for line in path.read_text().splitlines():
        if match := re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line):
            names[match[1]] = match[2]
        elif match := re.fullmatch(r"#\s?([A-Z][A-Z0-9_]*)=.*", line):
            names.setdefault(match[1], None)
    return names


# --- haproxy.cfg and healthcheck.py ----------------------------------------------------------

def haproxy_sections(config: str, kind: str) -> dict[str, list[str]]:
    """{name: its lines, stripped, comments dropped} of every `kind` section of a config."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in config.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not raw[0].isspace():
            word, _, name = line.partition(" ")
            current = sections.setdefault(name, []) if word == kind else None
        elif current is not None:
            current.append(line)
    return sections


def healthcheck_module() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("deploy_healthcheck", DEPLOY / "healthcheck.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- running the tools -----------------------------------------------------------------------

def run(args: list[str], timeout: float = 60, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)


def tool(name: str) -> str:
    path = BIN / name
    assert path.exists(), f"{path} is missing: install the test extra (pip install -e '.[test]')"
    return str(path)


def validate_kubernetes(doc: dict[str, Any], version: str) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(doc, version, strict=True)
