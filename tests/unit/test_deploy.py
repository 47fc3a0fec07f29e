"""deploy/k8s: every kustomization renders, is valid Kubernetes, and agrees with the code.

Rendering needs ``kubectl`` (with its built-in kustomize) or ``kustomize`` on PATH; without either
the render tests are skipped with that reason. Built-in resources are validated offline against the Kubernetes
schemas of KUBERNETES_VERSION (kubernetes-validate, strict: unknown fields fail); custom
resources (KEDA, Strimzi, Prometheus Operator) get the required-field checks written here.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib.util
import ipaddress
import json
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from dispatcher import DispatcherConfig
from dispatcher._apps import AppRegistry
from pushline.config import (
    LIBRDKAFKA_PREFIX,
    KafkaConfig,
    SchemaRegistryConfig,
    TopicsConfig,
)
from pushline.emulators._tls import generate_apns_credentials, generate_fcm_credentials
from pushline.ops import OpsConfig
from pushline.topics import topic_specs
from receipts import FallbackConfig, ReceiptsApiConfig, ReconcilerConfig
from schemas.receipt_token import ReceiptTokenConfig

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.30"


def _render_command() -> list[str] | None:
    """``kubectl kustomize DIR``, else a standalone ``kustomize build DIR``."""
    if kubectl := shutil.which("kubectl"):
        return [kubectl, "kustomize"]
    if kustomize := shutil.which("kustomize"):
        return [kustomize, "build"]
    return None


RENDER_COMMAND = _render_command()

OVERLAYS = ("dev", "prod")
KUSTOMIZATIONS = (
    "base",
    "overlays/dev",
    "overlays/prod",
    "overlays/dev/kafka-topics",
    "overlays/prod/kafka-topics",
    "secret-templates",
)
CUSTOM_GROUPS = ("keda.sh", "kafka.strimzi.io", "monitoring.coreos.com")

#: The configuration classes whose env_field settings a ConfigMap or Secret may carry.
CONFIG_CLASSES: tuple[type, ...] = (
    KafkaConfig,
    SchemaRegistryConfig,
    TopicsConfig,
    OpsConfig,
    DispatcherConfig,
    ReconcilerConfig,
    ReceiptsApiConfig,
    FallbackConfig,
    ReceiptTokenConfig,
)
#: Read outside the env_field classes (dispatcher/_apps.py: AppRegistry.from_env).
OTHER_ENV = {"PUSHLINE_APPS_DIR", "PUSHLINE_APPS_FILE"}

#: component -> (config class, drain-timeout field); the reconciler has no drain setting.
DRAIN: dict[str, tuple[type, str] | None] = {
    "dispatcher": (DispatcherConfig, "drain_timeout_s"),
    "receipts-api": (ReceiptsApiConfig, "drain_timeout_s"),
    "fallback-sender": (FallbackConfig, "drain_timeout_s"),
    "reconciler": None,
}
GRACE_SLACK_S = 5  # flush, commit and leaving the group after the drain itself

requires_kubectl = pytest.mark.skipif(
    RENDER_COMMAND is None,
    reason="neither kubectl (with built-in kustomize) nor kustomize is on PATH: the "
    "kustomizations cannot be rendered, so the deploy/k8s render tests are skipped",
)


# --------------------------------------------------------------------------- helpers


@functools.cache
def render(kustomization: str) -> tuple[dict[str, Any], ...]:
    assert RENDER_COMMAND is not None
    proc = subprocess.run(
        [*RENDER_COMMAND, str(K8S / kustomization)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"rendering {kustomization} failed:\n{proc.stderr}"
    return tuple(d for d in yaml.safe_load_all(proc.stdout) if d)


def of_kind(docs: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def config_env(docs: tuple[dict[str, Any], ...]) -> dict[str, str]:
    """The data of the rendered pushline-config ConfigMap (its name carries a hash suffix)."""
    maps = [
        d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].startswith("pushline-config")
    ]
    assert len(maps) == 1
    return dict(maps[0]["data"])


def component(deployment: Mapping[str, Any]) -> str:
    return str(deployment["metadata"]["labels"]["app.kubernetes.io/component"])


def pod_spec(deployment: Mapping[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A label selector (matchLabels / matchExpressions, or a plain Service map) against labels."""
    match = selector.get("matchLabels", selector if "matchExpressions" not in selector else {})
    if not all(labels.get(k) == v for k, v in match.items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def env_field_defaults() -> dict[str, Any]:
    """Every env var an env_field names (all its comma-separated names) -> the field's default."""
    names: dict[str, Any] = {}
    for cls in CONFIG_CLASSES:
        for f in dataclasses.fields(cls):
            for name in f.metadata.get("env", "").split(","):
                if name:
                    names[name] = f.default
    return names


def drain_timeout_s(component_name: str, env: Mapping[str, str]) -> float:
    setting = DRAIN[component_name]
    if setting is None:
        return 0.0
    cls, field_name = setting
    f = next(f for f in dataclasses.fields(cls) if f.name == field_name)
    env_name = f.metadata["env"].split(",")[0]
    return float(env.get(env_name, f.default))


def secret_refs(docs: tuple[dict[str, Any], ...]) -> dict[str, set[str]]:
    """Secret name -> the keys a rendered overlay reads from it ("*" for a whole-Secret envFrom)."""
    refs: dict[str, set[str]] = {}
    for dep in of_kind(docs, "Deployment"):
        spec = pod_spec(dep)
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    refs.setdefault(source["secretRef"]["name"], set()).add("*")
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.setdefault(ref["name"], set()).add(ref["key"])
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                items = volume["secret"].get("items") or [{"key": "*"}]
                refs.setdefault(volume["secret"]["secretName"], set()).update(
                    i["key"] for i in items
                )
            for source in volume.get("projected", {}).get("sources", []):
                if "secret" in source:
                    items = source["secret"].get("items") or [{"key": "*"}]
                    refs.setdefault(source["secret"]["name"], set()).update(i["key"] for i in items)
    for auth in of_kind(docs, "TriggerAuthentication"):
        for ref in auth["spec"].get("secretTargetRef", []):
            refs.setdefault(ref["name"], set()).add(ref["key"])
    return refs


# --------------------------------------------------------------------------- custom resources


def _require(doc: Mapping[str, Any], paths: list[str]) -> list[str]:
    problems = []
    for path in paths:
        node: Any = doc
        for part in path.split("."):
            if (
                not isinstance(node, Mapping)
                or part not in node
                or node[part] in (None, "", [], {})
            ):
                problems.append(f"missing {path}")
                break
            node = node[part]
    return problems


def check_scaled_object(doc: Mapping[str, Any]) -> list[str]:
    problems = _require(doc, ["metadata.name", "spec.scaleTargetRef.name", "spec.triggers"])
    spec = doc.get("spec", {})
    lo, hi = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
    if not (isinstance(lo, int) and isinstance(hi, int) and 0 <= lo <= hi):
        problems.append(f"bad replica range {lo}..{hi}")
    for trigger in spec.get("triggers", []):
        if not trigger.get("type"):
            problems.append("trigger without type")
        if trigger.get("type") == "kafka":
            problems += [
                f"kafka trigger: {p}"
                for p in _require(
                    trigger,
                    [
                        "metadata.bootstrapServers",
                        "metadata.consumerGroup",
                        "metadata.topic",
                        "metadata.lagThreshold",
                    ],
                )
            ]
            # KEDA reads every metadata value as a string
            for key, value in trigger.get("metadata", {}).items():
                if not isinstance(value, str):
                    problems.append(f"kafka trigger metadata {key} is not a string")
    return problems


def check_trigger_authentication(doc: Mapping[str, Any]) -> list[str]:
    problems = _require(doc, ["metadata.name", "spec.secretTargetRef"])
    for ref in doc.get("spec", {}).get("secretTargetRef", []):
        problems += [f"secretTargetRef: {p}" for p in _require(ref, ["parameter", "name", "key"])]
    return problems


def check_kafka_topic(doc: Mapping[str, Any]) -> list[str]:
    problems = _require(doc, ["metadata.name", "spec"])
    # The Topic Operator only reconciles topics labelled with its Kafka cluster.
    if not doc.get("metadata", {}).get("labels", {}).get("strimzi.io/cluster"):
        problems.append("missing metadata.labels[strimzi.io/cluster]")
    spec = doc.get("spec", {})
    for key in ("partitions", "replicas"):
        if not isinstance(spec.get(key), int) or spec[key] < 1:
            problems.append(f"spec.{key} must be a positive integer")
    if not all(isinstance(v, str | int) for v in spec.get("config", {}).values()):
        problems.append("spec.config values must be strings or numbers")
    return problems


def check_service_monitor(doc: Mapping[str, Any]) -> list[str]:
    problems = _require(doc, ["metadata.name", "spec.selector", "spec.endpoints"])
    for endpoint in doc.get("spec", {}).get("endpoints", []):
        if not endpoint.get("port") and not endpoint.get("targetPort"):
            problems.append("endpoint without port")
    return problems


def check_prometheus_rule(doc: Mapping[str, Any]) -> list[str]:
    problems = _require(doc, ["metadata.name", "spec.groups"])
    for group in doc.get("spec", {}).get("groups", []):
        problems += [f"group: {p}" for p in _require(group, ["name", "rules"])]
        for rule in group.get("rules", []):
            if not rule.get("expr") or not (rule.get("alert") or rule.get("record")):
                problems.append(f"rule without expr or alert/record: {rule}")
    return problems


CUSTOM_CHECKS = {
    "ScaledObject": check_scaled_object,
    "TriggerAuthentication": check_trigger_authentication,
    "KafkaTopic": check_kafka_topic,
    "ServiceMonitor": check_service_monitor,
    "PrometheusRule": check_prometheus_rule,
}


def validate(doc: dict[str, Any]) -> list[str]:
    group = doc["apiVersion"].split("/")[0] if "/" in doc["apiVersion"] else ""
    if group in CUSTOM_GROUPS:
        check = CUSTOM_CHECKS.get(doc["kind"])
        return [f"no check for custom kind {doc['kind']}"] if check is None else check(doc)
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{exc.message} at {'.'.join(str(p) for p in exc.path)}"]
    return []


# --------------------------------------------------------------------------- rendering + schemas


@requires_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_renders_and_every_resource_is_valid(kustomization: str) -> None:
    docs = render(kustomization)
    assert docs, f"{kustomization} renders nothing"
    problems = {
        f"{d['kind']}/{d['metadata']['name']}": p for d in docs if (p := validate(copy.deepcopy(d)))
    }
    assert problems == {}


@requires_kubectl
def test_schema_validation_catches_mistakes() -> None:
    """The validators are not vacuous: typical manifest mistakes fail them."""
    docs = render("overlays/prod")
    dep = copy.deepcopy(one(docs, "Deployment", "pushline-dispatcher"))
    pod_spec(dep)["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/healthz"
    assert validate(dep)
    dep = copy.deepcopy(one(docs, "Deployment", "pushline-dispatcher"))
    pod_spec(dep)["terminationGracePeriodSeconds"] = "45"
    assert validate(dep)

    scaled = copy.deepcopy(one(docs, "ScaledObject", "pushline-dispatcher"))
    del scaled["spec"]["triggers"][0]["metadata"]["consumerGroup"]
    assert validate(scaled) == ["kafka trigger: missing metadata.consumerGroup"]
    scaled = copy.deepcopy(one(docs, "ScaledObject", "pushline-dispatcher"))
    scaled["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 100
    assert validate(scaled) == ["kafka trigger metadata lagThreshold is not a string"]

    topic = copy.deepcopy(render("overlays/prod/kafka-topics")[0])
    del topic["metadata"]["labels"]["strimzi.io/cluster"]
    topic["spec"]["partitions"] = 0
    assert len(validate(topic)) == 2
    monitor = copy.deepcopy(one(docs, "ServiceMonitor", "pushline"))
    monitor["spec"]["endpoints"] = [{"path": "/metrics"}]
    assert validate(monitor) == ["endpoint without port"]
    rule = copy.deepcopy(one(docs, "PrometheusRule", "pushline"))
    del rule["spec"]["groups"][0]["rules"][0]["expr"]
    assert len(validate(rule)) == 1


# --------------------------------------------------------------------------- configuration


@requires_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_map_parses_with_the_real_config_classes(overlay: str) -> None:
    docs = render(f"overlays/{overlay}")
    env = config_env(docs)
    known = set(env_field_defaults()) | OTHER_ENV
    unknown = {k for k in env if k not in known and not k.startswith(LIBRDKAFKA_PREFIX)}
    assert unknown == set(), "settings no config class reads (typos?)"
    # Each parses (types, ranges): a bad value would stop the pods at start.
    KafkaConfig.from_env(env)
    SchemaRegistryConfig.from_env(env)
    TopicsConfig.from_env(env)
    OpsConfig.from_env(env)
    DispatcherConfig.from_env(env)
    ReconcilerConfig.from_env(env)
    FallbackConfig.from_env(env)
    # Secret values come from the Secrets' envFrom: only their key names are checked here.
    for name, keys in secret_refs(docs).items():
        template = one(render("secret-templates"), "Secret", name)
        data = set(template.get("stringData", {})) | set(template.get("data", {}))
        if "*" in keys:
            env_keys = {k for k in data if k.isupper()}
            assert env_keys <= known, f"{name}: keys no config class reads: {env_keys - known}"


@requires_kubectl
def test_prod_topic_settings() -> None:
    topics = TopicsConfig.from_env(config_env(render("overlays/prod")))
    assert (topics.prefix, topics.partitions, topics.replication_factor) == ("", 12, 3)
    assert topics.min_insync_replicas == 2
    dev = TopicsConfig.from_env(config_env(render("overlays/dev")))
    assert (dev.prefix, dev.partitions, dev.min_insync_replicas) == ("dev.", 3, None)


# --------------------------------------------------------------------------- deployments


@requires_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_component_is_deployed_production_shaped(overlay: str) -> None:
    docs = render(f"overlays/{overlay}")
    env = config_env(docs)
    deployments = {component(d): d for d in of_kind(docs, "Deployment")}
    assert set(deployments) == set(DRAIN)
    ops_port = OpsConfig.from_env(env).port
    receipts_port = int(env.get("PUSHLINE_RECEIPTS_PORT", "8080"))
    image_names = {
        i["newName"]
        for i in yaml.safe_load((K8S / "overlays" / overlay / "kustomization.yaml").read_text())[
            "images"
        ]
    }

    for name, dep in deployments.items():
        spec = pod_spec(dep)
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert selects(dep["spec"]["selector"], labels)
        assert len(spec["containers"]) == 1
        container = spec["containers"][0]
        assert container["args"] == [name], "the container runs `pushline <component>`"
        assert container["image"].split(":")[0] in image_names

        # probes on the port that serves them
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        expected_port = receipts_port if name == "receipts-api" else ops_port
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            http = container[probe]["httpGet"]
            assert http["path"] == path, f"{name} {probe}"
            assert ports[http["port"]] == expected_port, f"{name} {probe} port"

        resources = container["resources"]
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources[kind]), f"{name} {kind}"

        pod_security = spec["securityContext"]
        security = container["securityContext"]
        assert pod_security["runAsNonRoot"] is True and pod_security["runAsUser"] > 0
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert spec["automountServiceAccountToken"] is False

        # the ConfigMap it reads is the rendered one (hash suffix resolved)
        config_refs = [
            s["configMapRef"]["name"] for s in container["envFrom"] if "configMapRef" in s
        ]
        assert config_refs == [m["metadata"]["name"] for m in of_kind(docs, "ConfigMap")]

        # graceful termination: the grace period outlasts preStop + drain + flush/commit
        pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {})
        needed = pre_stop.get("seconds", 0) + drain_timeout_s(name, env) + GRACE_SLACK_S
        assert spec["terminationGracePeriodSeconds"] >= needed, name

        budgets = [
            p
            for p in of_kind(docs, "PodDisruptionBudget")
            if selects(p["spec"]["selector"], labels)
        ]
        assert len(budgets) == 1, f"{name}: {len(budgets)} PodDisruptionBudgets select it"
        other = [d for d in deployments.values() if d is not dep]
        for o in other:
            assert not selects(
                budgets[0]["spec"]["selector"], o["spec"]["template"]["metadata"]["labels"]
            )


@requires_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_consumers_never_surge_past_the_partition_count(overlay: str) -> None:
    """A consumer beyond the partition count never gets an assignment, so never turns ready: a
    surging rollout at full scale would stall. Consumers roll by replacing, not surging."""
    docs = render(f"overlays/{overlay}")
    partitions = TopicsConfig.from_env(config_env(docs)).partitions
    for dep in of_kind(docs, "Deployment"):
        if component(dep) == "receipts-api":
            continue
        assert dep["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0, component(dep)
        assert dep["spec"].get("replicas", 1) <= partitions


# --------------------------------------------------------------------------- scaling


@requires_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_dispatcher_autoscaling_is_capped_at_the_partition_count(overlay: str) -> None:
    docs = render(f"overlays/{overlay}")
    env = config_env(docs)
    topics = TopicsConfig.from_env(env)
    scaled = of_kind(docs, "ScaledObject")
    hpas = of_kind(docs, "HorizontalPodAutoscaler")
    targets = [s["spec"]["scaleTargetRef"]["name"] for s in scaled] + [
        h["spec"]["scaleTargetRef"]["name"] for h in hpas
    ]
    # KEDA creates its own HPA: one autoscaler per Deployment, never both kinds on one target
    assert targets == ["pushline-dispatcher"]
    assert "replicas" not in one(docs, "Deployment", "pushline-dispatcher")["spec"]

    for s in scaled:
        assert s["spec"]["maxReplicaCount"] <= topics.partitions
        (trigger,) = s["spec"]["triggers"]
        assert trigger["type"] == "kafka"
        meta = trigger["metadata"]
        assert meta["topic"] == topics.requests
        assert meta["consumerGroup"] == DispatcherConfig.from_env(env).group_id
        assert meta["bootstrapServers"] == KafkaConfig.from_env(env).bootstrap_servers
        assert int(meta["lagThreshold"]) > 0
        one(docs, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    for h in hpas:
        assert h["spec"]["maxReplicas"] <= topics.partitions


@requires_kubectl
def test_prod_scales_with_keda_and_dev_with_the_hpa_component() -> None:
    prod = render("overlays/prod")
    assert one(prod, "ScaledObject", "pushline-dispatcher")["spec"]["maxReplicaCount"] == 12
    assert of_kind(prod, "HorizontalPodAutoscaler") == []
    dev = render("overlays/dev")
    assert of_kind(dev, "ScaledObject") == []
    assert (
        one(dev, "HorizontalPodAutoscaler", "pushline-dispatcher")["apiVersion"] == "autoscaling/v2"
    )


# --------------------------------------------------------------------------- topics


@requires_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kafka_topics_match_topics_ensure(overlay: str) -> None:
    """The Strimzi KafkaTopics are exactly what `pushline topics ensure` would create with the
    overlay's settings: names, partitions, replicas and every topic config."""
    env = config_env(render(f"overlays/{overlay}"))
    wanted = {
        s.name: (s.partitions, s.replication_factor, s.config)
        for s in topic_specs(TopicsConfig.from_env(env))
    }
    topics = render(f"overlays/{overlay}/kafka-topics")
    assert {d["kind"] for d in topics} == {"KafkaTopic"}
    actual = {
        d["spec"]["topicName"]: (
            d["spec"]["partitions"],
            d["spec"]["replicas"],
            {k: str(v) for k, v in d["spec"]["config"].items()},
        )
        for d in topics
    }
    assert actual == wanted
    # the cluster the Topic Operator reconciles them into is the one the components use
    cluster = {d["metadata"]["labels"]["strimzi.io/cluster"] for d in topics}
    (name,) = cluster
    assert KafkaConfig.from_env(env).bootstrap_servers.startswith(f"{name}-kafka-bootstrap.")


def test_generated_files_are_current() -> None:
    spec = importlib.util.spec_from_file_location("deploy_generate", DEPLOY / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    files: dict[Path, str] = module.generated_files()
    assert len(files) == 3
    stale = [str(p.relative_to(ROOT)) for p, text in files.items() if p.read_text() != text]
    assert stale == [], "run `.venv/bin/python deploy/generate.py`"


# --------------------------------------------------------------------------- secrets


@requires_kubectl
def test_prod_renders_no_secret_and_every_referenced_secret_has_a_template() -> None:
    assert of_kind(render("overlays/prod"), "Secret") == [], (
        "placeholders would overwrite real secrets"
    )
    templates = {s["metadata"]["name"]: s for s in render("secret-templates")}
    for overlay in OVERLAYS:
        for name, keys in secret_refs(render(f"overlays/{overlay}")).items():
            assert name in templates, f"{overlay} reads Secret {name}, which has no template"
            data = set(templates[name].get("stringData", {}))
            assert keys - {"*"} <= data, f"{name}: keys {keys - {'*'} - data} not in the template"
    # and nothing unused is templated
    used = set(secret_refs(render("overlays/prod"))) | set(secret_refs(render("overlays/dev")))
    assert set(templates) == used


#: Template values that are settings, not secrets (KEDA's mode switches, the active key id).
NOT_SECRET = {"sasl", "tls", "PUSHLINE_RECEIPT_TOKEN_ACTIVE_KID"}


@requires_kubectl
def test_secret_templates_hold_only_placeholders() -> None:
    for secret in render("secret-templates"):
        assert "data" not in secret, "templates use readable stringData"
        for key, value in secret["stringData"].items():
            if key in NOT_SECRET:
                continue
            assert "REPLACE_ME" in value, f"{secret['metadata']['name']}.{key} is not a placeholder"
            assert "-----BEGIN" not in value, "a real PEM block in a template"


@requires_kubectl
def test_apps_volume_is_the_layout_the_dispatcher_reads(tmp_path: Path) -> None:
    """Materialise the dispatcher's projected "apps" volume from the templates, with generated
    keys in place of the placeholders, and load it with the dispatcher's own AppRegistry."""
    docs = render("overlays/prod")
    env = config_env(docs)
    container = pod_spec(one(docs, "Deployment", "pushline-dispatcher"))["containers"][0]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == env["PUSHLINE_APPS_DIR"]]
    (volume,) = [
        v
        for v in pod_spec(one(docs, "Deployment", "pushline-dispatcher"))["volumes"]
        if v["name"] == mount["name"]
    ]
    templates = {s["metadata"]["name"]: s["stringData"] for s in render("secret-templates")}
    apns = generate_apns_credentials(tmp_path / "creds", topic="com.example.app")
    fcm = generate_fcm_credentials(tmp_path / "creds", token_uri="https://127.0.0.1:1/token")
    root = tmp_path / "apps"
    (root / "..data").mkdir(parents=True)  # the kubelet's bookkeeping entries are skipped
    app_ids = set()
    for source in volume["projected"]["sources"]:
        data = templates[source["secret"]["name"]]
        for item in source["secret"]["items"]:
            target = root / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            app_ids.add(item["path"].split("/")[0])
            if item["key"] == "apns.json":
                config = json.loads(data["apns.json"])
                config.update(team_id=apns.team_id, key_id=apns.key_id)
                target.write_text(json.dumps(config))
            elif item["key"] == "apns.p8":
                shutil.copy(apns.key_file, target)
            elif item["key"] == "fcm-service-account.json":
                assert set(json.loads(data[item["key"]])) >= {"type", "client_email", "private_key"}
                shutil.copy(fcm.service_account_file, target)
            else:
                target.write_text(data[item["key"]])
    registry = AppRegistry.from_env({"PUSHLINE_APPS_DIR": str(root)})
    assert set(registry.app_ids) == app_ids == {"example"}
    assert registry.apns("example") is not None and registry.fcm("example") is not None


# --------------------------------------------------------------------------- network + monitoring


def _policy_ports(rule: Mapping[str, Any]) -> set[int]:
    return {int(p["port"]) for p in rule.get("ports", [])}


def allowed(
    docs: tuple[dict[str, Any], ...], labels: Mapping[str, str], direction: str
) -> list[tuple[dict[str, Any], set[int]]]:
    """(peer, ports) pairs the NetworkPolicies allow a pod with ``labels`` in ``direction``."""
    pairs = []
    key, peers = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    for policy in of_kind(docs, "NetworkPolicy"):
        if direction not in policy["spec"]["policyTypes"]:
            continue
        if not selects(policy["spec"]["podSelector"], labels):
            continue
        for rule in policy["spec"].get(key, []):
            for peer in rule.get(peers, [{}]):
                pairs.append((peer, _policy_ports(rule)))
    return pairs


def _ports_to_namespace(pairs: list[tuple[dict[str, Any], set[int]]], namespace: str) -> set[int]:
    return {
        port
        for peer, ports in pairs
        if peer.get("namespaceSelector", {})
        .get("matchLabels", {})
        .get("kubernetes.io/metadata.name")
        == namespace
        for port in ports
    }


def _ports_to_internet(pairs: list[tuple[dict[str, Any], set[int]]]) -> set[int]:
    public = ipaddress.ip_address("17.188.0.1")  # an address of APNs' range: public, not private
    return {
        port
        for peer, ports in pairs
        if "ipBlock" in peer
        and public in ipaddress.ip_network(peer["ipBlock"]["cidr"])
        and not any(public in ipaddress.ip_network(e) for e in peer["ipBlock"].get("except", []))
        for port in ports
    }


@requires_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_allow_exactly_what_the_components_need(overlay: str) -> None:
    docs = render(f"overlays/{overlay}")
    env = config_env(docs)
    kafka_hosts = KafkaConfig.from_env(env).bootstrap_servers.split(",")
    kafka_ports = {int(h.rsplit(":", 1)[1]) for h in kafka_hosts}
    kafka_namespaces = {h.rsplit(":", 1)[0].split(".")[1] for h in kafka_hosts}
    registry = urlsplit(SchemaRegistryConfig.from_env(env).url)
    registry_port = registry.port or (443 if registry.scheme == "https" else 80)
    ops_port = OpsConfig.from_env(env).port
    receipts_port = int(env["PUSHLINE_RECEIPTS_PORT"])

    for dep in of_kind(docs, "Deployment"):
        name = component(dep)
        labels = dep["spec"]["template"]["metadata"]["labels"]
        # default deny: some policy selects the pod for both directions with no rules
        assert any(
            selects(p["spec"]["podSelector"], labels)
            and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
            and not p["spec"].get("ingress")
            and not p["spec"].get("egress")
            for p in of_kind(docs, "NetworkPolicy")
        ), name
        egress = allowed(docs, labels, "Egress")
        ingress = allowed(docs, labels, "Ingress")
        for namespace in kafka_namespaces:
            assert kafka_ports | {registry_port} <= _ports_to_namespace(egress, namespace), name
        assert 53 in _ports_to_namespace(egress, "kube-system")
        internet = _ports_to_internet(egress)
        if name == "dispatcher":
            assert internet == {443, 2197}  # APNs (443, or 2197), FCM and Google OAuth2
        elif name == "fallback-sender":
            assert internet == {25, 465, 587, 443}  # SMTP submission and the SMS API
        else:
            assert internet == set(), f"{name} needs no internet access"
        metrics_port = receipts_port if name == "receipts-api" else ops_port
        assert metrics_port in _ports_to_namespace(ingress, "monitoring"), name
        from_ingress = _ports_to_namespace(ingress, "ingress-nginx")
        assert from_ingress == ({receipts_port} if name == "receipts-api" else set()), name


@requires_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_monitor_scrapes_every_component(overlay: str) -> None:
    docs = render(f"overlays/{overlay}")
    env = config_env(docs)
    (monitor,) = of_kind(docs, "ServiceMonitor")
    endpoint_ports = {
        e["port"] for e in monitor["spec"]["endpoints"] if e.get("path", "/metrics") == "/metrics"
    }
    services = [
        s
        for s in of_kind(docs, "Service")
        if selects(monitor["spec"]["selector"], s["metadata"]["labels"])
    ]
    for dep in of_kind(docs, "Deployment"):
        name = component(dep)
        labels = dep["spec"]["template"]["metadata"]["labels"]
        container = pod_spec(dep)["containers"][0]
        container_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        metrics_port = (
            int(env["PUSHLINE_RECEIPTS_PORT"])
            if name == "receipts-api"
            else OpsConfig.from_env(env).port
        )
        scraped = {
            container_ports.get(p["targetPort"], p["targetPort"])
            for s in services
            if selects(s["spec"]["selector"], labels)
            for p in s["spec"]["ports"]
            if p["name"] in endpoint_ports
        }
        assert scraped == {metrics_port}, (
            f"{name}: /metrics is on {metrics_port}, scraped {scraped}"
        )


@requires_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingress_publishes_only_the_device_routes(overlay: str) -> None:
    docs = render(f"overlays/{overlay}")
    (ingress,) = of_kind(docs, "Ingress")
    service = one(docs, "Service", "pushline-receipts-api")
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] in ingress["spec"]["tls"][0]["hosts"]
    paths = {p["path"] for p in rule["http"]["paths"]}
    assert paths == {"/v1/receipts", "/openapi.json"}
    for path in rule["http"]["paths"]:
        backend = path["backend"]["service"]
        assert backend["name"] == service["metadata"]["name"]
        assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}


def _walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, Mapping):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


@requires_kubectl
def test_prometheus_rule_in_base_carries_the_rules_file() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "pushline-rules.yaml").read_text())
    rule = one(render("base"), "PrometheusRule", "pushline")
    assert rule["spec"]["groups"] == rules["groups"]
    assert any(isinstance(n, Mapping) and "alert" in n for n in _walk(rule))
