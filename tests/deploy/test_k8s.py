"""deploy/k8s: every manifest validates against Kubernetes' schemas (KEDA's against ours), the
kustomizations cover every manifest, the shape is the seed's (API 3 replicas, workers 5, its
resources), the pods' configuration is accepted by the service, the worker's grace period
covers its drain, the worker serves its metrics and probes on its own port, both pods carry
Prometheus' scrape annotations, and KEDA's triggers read, from the API's own
/api/workflow/stats with an admin key of the example Secret, the figure that counts a submitted
job of their queue class, waiting or prioritized."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from tests.conftest import make_settings
from tests.deploy.monitoring import check_scrape_annotations, check_worker_probes, port_named
from tests.support.deploy import (
    ROOT,
    container_env,
    documents,
    problems,
    settings_from,
)
from tests.support.services import RedisServer
from workflow_engine.api.app import create_app
from workflow_engine.api.auth import KeyRing, hash_key
from workflow_engine.api.services import Services
from workflow_engine.config import QUEUE_NAMES, Settings
from workflow_engine.queue.submit import Submission

K8S = ROOT / "deploy" / "k8s"
MANIFESTS = sorted(
    p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml"
)  # secret.example.yaml included: it must be a valid Secret too
VARIANTS = {"cpu": K8S, "keda": K8S / "keda"}
# what a cluster scales on (the drain is WFE_SHUTDOWN_GRACE_S; then hand-over and flush)
HAND_OVER_S = 10
# KEDA's metrics-api triggers: the API's queue figures, per queue class
STATS_PATH = "/api/workflow/stats"
TARGETS = {"realtime": 20, "workflow": 50, "scheduled": 50, "background": 10}
KEDA_TENANT = "keda"


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
    number["spec"]["triggers"][0]["metadata"]["targetValue"] = 20
    parameter = copy.deepcopy(scaled)  # a metrics-api parameter KEDA does not know
    metadata = parameter["spec"]["triggers"][0]["metadata"]
    metadata["valuelocation"] = metadata.pop("valueLocation")
    mode = copy.deepcopy(scaled)
    mode["spec"]["triggers"][0]["metadata"]["authMode"] = "Bearer"
    behavior = copy.deepcopy(scaled)
    behavior["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"][
        "stabilizationWindowSeconds"
    ] = "5m"
    for broken in (misspelt, wrong_type, number, parameter, mode, behavior):
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


def test_the_worker_serves_metrics_and_probes_on_its_port() -> None:
    """The worker's container port ``metrics`` is its WFE_METRICS_PORT, bound on every
    interface (the kubelet probes the pod's address), with its probes on it."""
    for name in VARIANTS:
        worker = one(variant(name), "Deployment", "worker")
        settings = pod_settings(worker)
        assert settings.metrics_port == port_named(worker, "metrics")
        assert settings.host == "0.0.0.0"
        check_worker_probes(worker, settings.lock_duration_ms / 1000)


def test_the_pods_carry_prometheus_scrape_annotations() -> None:
    docs = variant("cpu")
    check_scrape_annotations(one(docs, "Deployment", "api"), "http")
    check_scrape_annotations(one(docs, "Deployment", "worker"), "metrics")


def value_at(body: Any, location: str) -> Any:
    """What KEDA's metrics-api scaler reads at ``valueLocation`` in a JSON body: a GJSON path;
    ours are plain dotted keys (anything GJSON would treat specially is refused here)."""
    assert re.fullmatch(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*", location), location
    for key in location.split("."):
        assert isinstance(body, dict), f"{location}: {key!r} in a non-object"
        assert key in body, f"{location}: no {key!r}"
        body = body[key]
    return body


def check_stats_url(trigger: dict[str, Any], service: dict[str, Any], namespace: str) -> str:
    """The trigger calls the API Service by its in-cluster name (KEDA's operator runs in its
    own namespace, so the name carries the Service's), on the Service's port: the path."""
    url = urlsplit(trigger["metadata"]["url"])
    assert url.scheme == "http"
    assert url.hostname == f"{service['metadata']['name']}.{namespace}.svc"
    assert url.port == service["spec"]["ports"][0]["port"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"  # the API container's port
    assert url.path == STATS_PATH
    return url.path + (f"?{url.query}" if url.query else "")


def check_keda_triggers(docs: list[dict[str, Any]], namespace: str) -> None:
    """One metrics-api trigger per queue class, each on its class's waiting figure (BullMQ's
    waiting + prioritized + paused jobs, as /api/workflow/stats adds them up), with the
    per-queue targets, Bearer auth from the Secret's KEDA key."""
    scaled = one(docs, "ScaledObject")
    auth = one(docs, "TriggerAuthentication")
    service = one(docs, "Service", "api")
    triggers = scaled["spec"]["triggers"]
    assert [t["name"] for t in triggers] == list(QUEUE_NAMES)
    assert {t["type"] for t in triggers} == {"metrics-api"}
    for trigger in triggers:
        metadata = trigger["metadata"]
        assert metadata["valueLocation"] == f"queues.{trigger['name']}.waiting"
        assert int(metadata["targetValue"]) == TARGETS[trigger["name"]]
        assert "activationTargetValue" not in metadata  # the redis triggers had none
        assert metadata["authMode"] == "bearer"
        assert metadata.get("format", "json") == "json"
        assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
        check_stats_url(trigger, service, namespace)
    # the bearer token, and nothing else, from the Secret's KEDA key
    assert auth["spec"] == {
        "secretTargetRef": [
            {"parameter": "token", "name": secret_name(docs), "key": "keda-api-key"}
        ]
    }


def secret_name(docs: list[dict[str, Any]]) -> str:
    """The Secret the API's keys come from."""
    api = one(docs, "Deployment", "api")["spec"]["template"]["spec"]["containers"][0]
    refs = [e["valueFrom"]["secretKeyRef"] for e in api["env"] if e["name"] == "WFE_API_KEYS"]
    assert len(refs) == 1
    assert refs[0]["key"] == "api-keys"
    name: str = refs[0]["name"]
    return name


def keda_entry(api_keys: str) -> str:
    """The one WFE_API_KEYS entry of KEDA's tenant: with the admin scope."""
    entries = [e.strip() for e in api_keys.split(",") if e.strip().startswith(f"{KEDA_TENANT}:")]
    assert len(entries) == 1, api_keys
    assert entries[0].startswith(f"{KEDA_TENANT}:admin="), entries[0]
    return entries[0]


def check_keda_key_is_admin(api_keys: str, keda_key: str) -> None:
    """The API, with these keys, takes KEDA's token as the admin of tenant ``keda``."""
    ring = KeyRing(keda_entry(api_keys))
    caller = ring.authenticate(f"Bearer {keda_key}")
    assert (caller.tenant_id, caller.admin) == (KEDA_TENANT, True)


def test_keda_triggers_name_the_queue_classes() -> None:
    check_keda_triggers(variant("keda"), "default")  # the manifests name no namespace


def test_the_keda_key_is_an_admin_key_of_the_api() -> None:
    """The Secret's keda-api-key (KEDA's token) is in the API's keys with the admin scope, the
    scope /api/workflow/stats answers the queue figures to."""
    secret = example_secret()
    docs = variant("keda")
    api = one(docs, "Deployment", "api")["spec"]["template"]["spec"]["containers"][0]
    assert container_env(api, secret)["WFE_API_KEYS"] == secret["api-keys"]
    check_keda_key_is_admin(secret["api-keys"], secret["keda-api-key"])


@asynccontextmanager
async def stats_api(
    redis_server: RedisServer, tmp_path: Path, tenant_key: str
) -> AsyncIterator[tuple[httpx.AsyncClient, Services]]:
    """The API in process, with the example Secret's KEDA entry and a tenant's key."""
    settings = make_settings(
        redis_server.url,
        f"sqlite:///{tmp_path}/wfe.db",
        api_keys=f"acme=sha256:{hash_key(tenant_key)},{keda_entry(example_secret()['api-keys'])}",
    )
    services = await Services.open(settings)
    transport = httpx.ASGITransport(app=create_app(settings, services))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as api:
            yield api, services
    finally:
        await services.close()


async def trigger_values(api: httpx.AsyncClient, docs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each trigger's figure: its GET, with the example Secret's KEDA key, at valueLocation."""
    token = {"Authorization": f"Bearer {example_secret()['keda-api-key']}"}
    service = one(docs, "Service", "api")
    values: dict[str, Any] = {}
    for trigger in one(docs, "ScaledObject")["spec"]["triggers"]:
        response = await api.get(check_stats_url(trigger, service, "default"), headers=token)
        assert response.status_code == 200, response.text
        values[trigger["name"]] = value_at(response.json(), trigger["metadata"]["valueLocation"])
    return values


DEFINITION = {"id": "one", "nodes": [{"id": "a", "type": "echo", "inputs": {}}]}


async def test_keda_reads_the_figure_that_counts_a_submitted_job(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Submitted through the product's own path (record + BullMQ job, with its fairness
    priority), no worker running: each trigger's GET on the API, with the example Secret's
    KEDA key, finds its queue class's job at its valueLocation."""
    tenant_key = "acme-key"
    async with stats_api(redis_server, tmp_path, tenant_key) as (api, services):
        for queue in QUEUE_NAMES:
            await services.submitter.submit(Submission(DEFINITION, tenant_id="acme", queue=queue))
        values = await trigger_values(api, variant("keda"))
        assert all(type(v) is int for v in values.values())  # KEDA takes an unquoted integer
        assert values == dict.fromkeys(QUEUE_NAMES, 1)
        # a tenant's key gets no queue figures: KEDA's key must be the admin one
        tenant = await api.get(STATS_PATH, headers={"Authorization": f"Bearer {tenant_key}"})
        assert tenant.status_code == 200
        assert "queues" not in tenant.json()


async def test_keda_counts_waiting_and_prioritized_jobs(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """BullMQ keeps a job with a priority in a sorted set of its own (``prioritized``), apart
    from the ``wait`` list of jobs without one; the product's submissions all carry one (the
    tenant fairness rank). Each trigger's figure counts both sets: one job in each, 2."""
    async with stats_api(redis_server, tmp_path, "acme-key") as (api, services):
        for queue in QUEUE_NAMES:
            await services.submitter.submit(Submission(DEFINITION, tenant_id="acme", queue=queue))
            await services.queues[queue].add("no-priority", {}, {})  # as a plain producer does
            counts = await services.queues[queue].getJobCounts("wait", "prioritized")
            assert (counts["wait"], counts["prioritized"]) == (1, 1), counts
        assert await trigger_values(api, variant("keda")) == dict.fromkeys(QUEUE_NAMES, 2)
