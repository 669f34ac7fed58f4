"""deploy/k8s: every manifest validates against Kubernetes' schemas (KEDA's against ours), the
kustomizations cover every manifest, the shape is the seed's (API 3 replicas, workers 5, its
resources), the pods' configuration is accepted by the service, the worker's grace period
covers its drain, and KEDA watches the Redis list where a submitted job really waits."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import yaml

from tests.support.deploy import (
    ROOT,
    container_env,
    documents,
    problems,
    settings_from,
)
from workflow_engine.api.services import Services
from workflow_engine.config import QUEUE_NAMES, Settings
from workflow_engine.keys import Keys
from workflow_engine.queue.submit import Submission

K8S = ROOT / "deploy" / "k8s"
MANIFESTS = sorted(
    p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml"
)  # secret.example.yaml included: it must be a valid Secret too
VARIANTS = {"cpu": K8S, "keda": K8S / "keda"}
# what a cluster scales on (the drain is WFE_SHUTDOWN_GRACE_S; then hand-over and flush)
HAND_OVER_S = 10


def load(path: Path) -> list[dict[str, Any]]:
    return documents(path.read_text())


def kustomize(directory: Path) -> list[Path]:
    """The manifest files a kustomization directory takes in, recursively (as kustomize does)."""
    files: list[Path] = []
    config = yaml.safe_load((directory / "kustomization.yaml").read_text())
    for entry in config["resources"]:
        target = (directory / entry).resolve()
        assert target.exists(), f"{directory}/kustomization.yaml names a missing {entry}"
        files += kustomize(target) if target.is_dir() else [target]
    return files


def variant(name: str) -> list[dict[str, Any]]:
    return [doc for path in kustomize(VARIANTS[name]) for doc in load(path)]


def one(docs: list[dict[str, Any]], kind: str, component: str | None = None) -> dict[str, Any]:
    found = [
        d
        for d in docs
        if d["kind"] == kind
        and component in (None, d["metadata"]["labels"].get("app.kubernetes.io/component"))
    ]
    assert len(found) == 1, f"expected one {kind} {component or ''}, got {len(found)}"
    return found[0]


def example_secret() -> dict[str, str]:
    secret: dict[str, str] = load(K8S / "secret.example.yaml")[0]["stringData"]
    return secret


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(K8S)))
def test_every_manifest_validates(path: Path) -> None:
    docs = load(path)
    assert docs, f"{path} holds no object"
    assert problems(docs) == []


def test_the_validation_catches_mistakes() -> None:
    """The checks above can fail: a misspelt field, a wrong type, a KEDA trigger whose
    metadata is not all strings, an HPA behavior KEDA would hand on broken."""
    api = one(load(K8S / "base" / "api.yaml"), "Deployment")
    misspelt = copy.deepcopy(api)
    container = misspelt["spec"]["template"]["spec"]["containers"][0]
    container["livenesProbe"] = container.pop("livenessProbe")
    wrong_type = copy.deepcopy(api)
    wrong_type["spec"]["replicas"] = "3"
    scaled = one(load(K8S / "keda" / "worker-scaledobject.yaml"), "ScaledObject")
    number = copy.deepcopy(scaled)
    number["spec"]["triggers"][0]["metadata"]["listLength"] = 20
    behavior = copy.deepcopy(scaled)
    behavior["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"][
        "stabilizationWindowSeconds"
    ] = "5m"
    for broken in (misspelt, wrong_type, number, behavior):
        assert problems([broken]), f"not caught: {broken['kind']}"


def test_the_kustomizations_cover_every_manifest() -> None:
    used = {p for name in VARIANTS for p in kustomize(VARIANTS[name])}
    unused = {p.resolve() for p in MANIFESTS} - used
    assert unused == {(K8S / "secret.example.yaml").resolve()}  # placeholders: never applied
    cpu, keda = variant("cpu"), variant("keda")
    assert (
        sorted(d["kind"] for d in cpu if d["kind"].endswith("Autoscaler"))
        == ["HorizontalPodAutoscaler"] * 2
    )
    assert [d["kind"] for d in keda if d["kind"] == "HorizontalPodAutoscaler"] == [
        "HorizontalPodAutoscaler"
    ]  # the API's; KEDA makes the workers' own
    assert {d["kind"] for d in keda} >= {"ScaledObject", "TriggerAuthentication"}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not installed")
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_kubectl_kustomize_builds_the_same_objects(name: str) -> None:
    built = subprocess.run(
        ["kubectl", "kustomize", str(VARIANTS[name])],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    docs = documents(built)
    assert problems(docs) == []
    key = sorted((d["kind"], d["metadata"]["name"]) for d in docs)
    assert key == sorted((d["kind"], d["metadata"]["name"]) for d in variant(name))


def test_the_seed_shape() -> None:
    docs = variant("cpu")
    api, worker = one(docs, "Deployment", "api"), one(docs, "Deployment", "worker")
    assert api["spec"]["replicas"] == 3
    assert worker["spec"]["replicas"] == 5
    api_container = api["spec"]["template"]["spec"]["containers"][0]
    worker_container = worker["spec"]["template"]["spec"]["containers"][0]
    assert api_container["resources"] == {
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {"cpu": "500m", "memory": "512Mi"},
    }
    assert worker_container["resources"] == {
        "requests": {"cpu": "500m", "memory": "512Mi"},
        "limits": {"cpu": "1000m", "memory": "1Gi"},
    }
    assert api_container["args"] == ["api"]
    assert worker_container["args"] == ["worker"]
    # probes: liveness on /health, readiness on /ready, on the port the API listens on
    port = {p["name"]: p["containerPort"] for p in api_container["ports"]}["http"]
    assert container_env(api_container, example_secret())["WFE_PORT"] == str(port)
    assert api_container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert api_container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    service = one(docs, "Service", "api")
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["ports"][0]["port"] == 80
    assert service["spec"]["ports"][0]["targetPort"] == "http"


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_references_between_objects_hold(name: str) -> None:
    """Selectors select the pods, autoscalers target the Deployments, every Secret key read
    exists in the example Secret, and the pods use the ServiceAccount."""
    docs = variant(name)
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    secret_keys = set(example_secret())
    account = one(docs, "ServiceAccount")["metadata"]["name"]
    for deployment in deployments.values():
        pod = deployment["spec"]["template"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod["metadata"]["labels"].items()
        assert pod["spec"]["serviceAccountName"] == account
        for item in pod["spec"]["containers"][0]["env"]:
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in secret_keys
    for doc in docs:
        if doc["kind"] in {"Service", "PodDisruptionBudget"}:
            labels = doc["spec"]["selector"]
            labels = labels.get("matchLabels", labels)
            assert any(
                labels.items() <= d["spec"]["template"]["metadata"]["labels"].items()
                for d in deployments.values()
            ), f"{doc['kind']} {doc['metadata']['name']} selects no pod"
        if doc["kind"] in {"HorizontalPodAutoscaler", "ScaledObject"}:
            assert doc["spec"]["scaleTargetRef"]["name"] in deployments
        if doc["kind"] == "TriggerAuthentication":
            assert {r["key"] for r in doc["spec"]["secretTargetRef"]} <= secret_keys


def pod_settings(deployment: dict[str, Any]) -> Settings:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return settings_from(container_env(container, example_secret()))


def test_the_pods_configuration_is_accepted_by_the_service() -> None:
    docs = variant("cpu")
    api = pod_settings(one(docs, "Deployment", "api"))
    worker = pod_settings(one(docs, "Deployment", "worker"))
    assert api.host == "0.0.0.0"  # reachable by the Service (and so API keys are required)
    assert api.api_keys
    assert api.store_url == worker.store_url == example_secret()["store-url"]
    assert api.redis_url == worker.redis_url == example_secret()["redis-url"]
    assert api.queue_prefix == worker.queue_prefix
    assert worker.log_json
    assert api.log_json


def test_the_worker_is_given_the_time_to_drain() -> None:
    worker = one(variant("cpu"), "Deployment", "worker")
    grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= pod_settings(worker).shutdown_grace_s + HAND_OVER_S


def test_keda_triggers_name_the_queue_classes() -> None:
    docs = variant("keda")
    scaled = one(docs, "ScaledObject")
    auth = one(docs, "TriggerAuthentication")
    prefix = pod_settings(one(docs, "Deployment", "worker")).queue_prefix
    triggers = scaled["spec"]["triggers"]
    assert {t["type"] for t in triggers} == {"redis"}
    assert [t["metadata"]["listName"] for t in triggers] == [
        f"{prefix}:{queue}:wait" for queue in QUEUE_NAMES
    ]
    for trigger in triggers:
        assert int(trigger["metadata"]["listLength"]) > 0
        assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    # the redis scaler's connection parameters, from the Secret
    assert {r["parameter"] for r in auth["spec"]["secretTargetRef"]} == {"address", "password"}


async def test_keda_reads_the_list_where_a_submitted_job_waits(settings: Settings) -> None:
    """Submitted through the product's own path (record + BullMQ job), no worker running: the
    job waits in exactly the list the ScaledObject's trigger for its queue class reads."""
    scaled = one(variant("keda"), "ScaledObject")
    list_names = {t["name"]: t["metadata"]["listName"] for t in scaled["spec"]["triggers"]}
    deployed_prefix = pod_settings(one(variant("keda"), "Deployment", "worker")).queue_prefix
    services = await Services.open(settings)
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        definition = {"id": "one", "nodes": [{"id": "a", "type": "echo", "inputs": {}}]}
        for queue in QUEUE_NAMES:
            await services.submitter.submit(Submission(definition, queue=queue))
        for queue in QUEUE_NAMES:
            # the test runs under its own prefix: swap the deployment's for it
            key = settings.queue_prefix + list_names[queue].removeprefix(deployed_prefix)
            assert key.startswith(Keys(settings.queue_prefix).bullmq_prefix + ":")
            assert await client.llen(key) == 1, key
    finally:
        await client.aclose()
        await services.close()
