"""The Kubernetes manifests in deploy/kubernetes/ beyond their schemas (test_deploy_validators.py
checks those): listed in the kustomization and namespace-agnostic, pods locked down, the
ConfigMaps as the pods see them (rules loaded and reloaded through the kubelet's layout, the
sources file, redis.conf word for word), Secrets that are examples only, a durable Redis that
REDIS_URL points at, and the two autoscaling alternatives (KEDA, an HPA on an exported gauge).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from conftest import ROOT
from deploy_files import (
    DEPLOY,
    IMAGE,
    K8S,
    K8S_VERSIONS,
    hookrules_containers,
    manifest,
    manifests,
    pod_spec,
    stages,
    validate_kubernetes,
    yaml_docs,
)

PLACEHOLDER = "CHANGE-ME"


# --- layout and security ---------------------------------------------------------------------

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


# --- ConfigMaps and Secrets ------------------------------------------------------------------

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


def test_kubernetes_redis_conf_is_deploy_redis_conf() -> None:
    assert manifest("ConfigMap", "hookrules-redis-config")["data"]["redis.conf"] == (DEPLOY / "redis.conf").read_text()


def test_kubernetes_secrets_are_examples_only() -> None:
    kinds = [(path.name, doc["kind"]) for path, doc in manifests() if doc["kind"] == "Secret"]
    assert kinds and all(name == "secret.example.yaml" for name, _ in kinds)
    for _, doc in manifests():
        if doc["kind"] == "Secret":
            assert "data" not in doc  # stringData only: what you read is what it holds
            for key, value in doc["stringData"].items():
                assert PLACEHOLDER in value, f"{doc['metadata']['name']}.{key} must be a placeholder"


# --- Redis -----------------------------------------------------------------------------------

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


# --- autoscaling -----------------------------------------------------------------------------

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
