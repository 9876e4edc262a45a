"""Every command, variable, port, path and name the files in deploy/ use, checked against
the code: the parser of engine/cli.py, the variables the settings code reads, the routes (and
query parameters) of the API and sandbox apps, the stream names of engine/event_queue.py, how
REDIS_URL is read; and every stop grace period against HOOKRULES_SHUTDOWN_WAIT.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conftest import ROOT
from deploy_code import api_routes, check_api_path, cli_commands, known_variables, sandbox_routes, settings_read, shutdown_wait_s
from deploy_files import (
    DEPLOY,
    HAND_BACK_S,
    K8S,
    UNITS,
    compose_raw,
    dockerfile_env,
    duration_s,
    env_file_names,
    healthcheck_module,
    hookrules_containers,
    hookrules_services,
    manifest,
    pod_spec,
    stages,
    unit,
    unit_env,
    unit_value,
)

# Variables set for hookrules processes that are not hookrules settings.
NOT_SETTINGS = {"PATH", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PIP_NO_CACHE_DIR", "PIP_DISABLE_PIP_VERSION_CHECK"}


# --- commands --------------------------------------------------------------------------------

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


# --- variables -------------------------------------------------------------------------------

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


# --- ports, probe and check paths, stream names ----------------------------------------------

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


def test_queue_names_agree_with_the_code() -> None:
    from engine import store
    from engine.event_queue import GROUP, STREAM

    assert (STREAM, GROUP) == (store.EVENT_STREAM, store.EVENT_GROUP) == ("hookrules:events:stream", "workers")
    keda = (K8S / "autoscaling" / "keda.yaml").read_text()
    assert f'stream: "{STREAM}"' in keda


# --- stop grace periods and the systemd units ------------------------------------------------

def test_compose_workers_stop_gracefully() -> None:
    worker = compose_raw()["services"]["worker"]
    assert worker.get("stop_signal", "SIGTERM") == "SIGTERM"
    assert duration_s(worker["stop_grace_period"]) >= shutdown_wait_s() + HAND_BACK_S


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
