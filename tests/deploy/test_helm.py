"""deploy/helm/workflow-engine rendered by Helm's own engine (the Helm v4 Go library bundled in
the ``helm-python-sdk`` wheel, offline: what ``helm template`` does) with default values and
with everything on; every object validates like the plain manifests, the chart renders the same
objects as deploy/k8s, the workers' metrics port and probes follow their value, the pods carry
Prometheus' scrape annotations unless ServiceMonitors (off by default) find them instead, and
values.schema.json refuses bad values."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from helm_python.chart import Chart, lint
from helm_python.errors import HelmRenderError, HelmValuesError

from tests.deploy.monitoring import (
    check_scrape_annotations,
    check_service_monitor,
    check_worker_probes,
    port_named,
    problems,
    scrape_annotations,
)
from tests.deploy.test_k8s import (
    HAND_OVER_S,
    check_keda_key_is_admin,
    check_keda_triggers,
    one,
    variant,
)
from tests.support.deploy import ROOT, container_env, documents, settings_from
from workflow_engine.api.auth import hash_key

CHART = ROOT / "deploy" / "helm" / "workflow-engine"
RELEASE = "workflow-engine"
NAMESPACE = "wfe"

TENANT_KEYS = "acme=sha256:" + "0" * 64
KEDA_KEY = "wfe_keda-key-for-tests"
SECRETS = {
    "store-url": "postgresql+asyncpg://wfe:pw@db.example:5432/wfe",
    "redis-url": "redis://:pw@redis.example:6379/0",
    # the chart adds KEDA's key, hashed, with the admin scope
    "api-keys": f"{TENANT_KEYS},keda:admin=sha256:{hash_key(KEDA_KEY)}",
    "keda-api-key": KEDA_KEY,
}
EVERYTHING_ON: dict[str, Any] = {
    "image": {"repository": "registry.example/wfe", "tag": "1.2.3"},
    "queuePrefix": "{wfe}",
    "secrets": {
        "create": True,
        "storeUrl": SECRETS["store-url"],
        "redisUrl": SECRETS["redis-url"],
        "apiKeys": TENANT_KEYS,
        "kedaApiKey": KEDA_KEY,
    },
    "env": {"WFE_RETENTION_DAYS": "14"},
    "api": {"autoscaling": {"enabled": True}, "service": {"type": "ClusterIP"}},
    "worker": {"keda": {"enabled": True}, "shutdownGraceSeconds": 100},
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    "ingress": {
        "enabled": True,
        "className": "nginx",
        "hosts": [{"host": "wfe.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}],
        "tls": [{"secretName": "wfe-tls", "hosts": ["wfe.example.com"]}],
    },
}
AUTOSCALED = {"api": {"autoscaling": {"enabled": True}}}
CPU_AUTOSCALING = {**AUTOSCALED, "worker": {"autoscaling": {"enabled": True}}}
KEDA = {**AUTOSCALED, "worker": {"keda": {"enabled": True}}}


@pytest.fixture(scope="module")
def chart() -> Iterator[Chart]:
    with Chart.load(CHART) as loaded:
        yield loaded


def render(chart: Chart, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    rendered = chart.render(values=values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return [
        doc
        for path, text in sorted(rendered.items())
        if path.endswith(".yaml")
        for doc in documents(text)
    ]


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def test_the_chart_lints_clean() -> None:
    for values in (None, EVERYTHING_ON):
        report = lint(CHART, values, strict=True, kube_version="v1.30.0")
        assert report["errors"] == []
        assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_default_values_render_valid_objects(chart: Chart) -> None:
    docs = render(chart)
    assert problems(docs) == []
    assert kinds(docs) == [
        "Deployment",
        "Deployment",
        "PodDisruptionBudget",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
    ]
    assert one(docs, "Deployment", "api")["spec"]["replicas"] == 3
    assert one(docs, "Deployment", "worker")["spec"]["replicas"] == 5


def test_everything_on_renders_valid_objects(chart: Chart) -> None:
    docs = render(chart, EVERYTHING_ON)
    assert problems(docs) == []
    assert kinds(docs) == [
        "Deployment",
        "Deployment",
        "HorizontalPodAutoscaler",  # the API's; KEDA makes the workers'
        "Ingress",
        "PodDisruptionBudget",
        "PodDisruptionBudget",
        "ScaledObject",
        "Secret",
        "Service",
        "Service",  # the workers' metrics, for their ServiceMonitor
        "ServiceAccount",
        "ServiceMonitor",
        "ServiceMonitor",
        "TriggerAuthentication",
    ]
    api, worker = one(docs, "Deployment", "api"), one(docs, "Deployment", "worker")
    assert "replicas" not in api["spec"]  # the autoscalers own the count
    assert "replicas" not in worker["spec"]
    assert worker["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.example/wfe:1.2.3"
    )
    check_keda_triggers(docs, NAMESPACE)
    ingress = one(docs, "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == one(docs, "Service", "api")["metadata"]["name"]
    secret = one(docs, "Secret")["stringData"]
    assert secret == SECRETS
    check_keda_key_is_admin(secret["api-keys"], secret["keda-api-key"])


def test_keda_with_an_existing_secret_reads_its_keda_key(chart: Chart) -> None:
    """secrets.create false: the triggers read keda-api-key from the Secret the API's keys
    come from (whose api-keys the operator gives the keda:admin entry, NOTES.txt says so);
    the URL follows the Service's port."""
    values = {
        **KEDA,
        "secrets": {"create": False, "name": "wfe-secrets"},
        "api": {"service": {"port": 8080}},
    }
    docs = render(chart, values)
    assert one(docs, "Service", "api")["spec"]["ports"][0]["port"] == 8080
    assert problems(docs) == []
    check_keda_triggers(docs, NAMESPACE)
    assert one(docs, "TriggerAuthentication")["spec"]["secretTargetRef"][0]["name"] == (
        "wfe-secrets"
    )


def test_the_chart_renders_what_deploy_k8s_holds(chart: Chart) -> None:
    """With the same autoscaling, the chart's objects carry the plain manifests' specs (names
    and Helm's labels aside)."""
    for values, plain in ((CPU_AUTOSCALING, variant("cpu")), (KEDA, variant("keda"))):
        docs = render(chart, values)
        assert kinds(docs) == kinds([d for d in plain if d["kind"] != "Secret"])
        for role in ("api", "worker"):
            ours = pod(one(docs, "Deployment", role))
            theirs = pod(one(plain, "Deployment", role))
            assert ours == theirs, role
            assert spec_of(one(docs, "PodDisruptionBudget", role)) == spec_of(
                one(plain, "PodDisruptionBudget", role)
            )
        for kind in ("HorizontalPodAutoscaler", "ScaledObject"):
            for doc in (d for d in docs if d["kind"] == kind):
                role = doc["metadata"]["labels"]["app.kubernetes.io/component"]
                assert spec_of(doc) == spec_of(one(plain, kind, role)), (kind, role)
        assert spec_of(one(docs, "Service", "api")) == spec_of(one(plain, "Service", "api"))
        for role in ("api", "worker"):
            ours, theirs = one(docs, "Deployment", role), one(plain, "Deployment", role)
            assert scrape_annotations(ours) == scrape_annotations(theirs), role


def pod(deployment: dict[str, Any]) -> dict[str, Any]:
    """A pod template's spec as comparable: no names, env by name (values of Secret refs by
    key), no checksum annotations."""
    spec = dict(deployment["spec"]["template"]["spec"])
    for key in ("serviceAccountName", "topologySpreadConstraints"):
        spec.pop(key)
    containers = []
    for container in spec.pop("containers"):
        container = dict(container)
        container.pop("image")
        env = container.pop("env")
        container["env"] = sorted(
            (e["name"], e.get("value") or e["valueFrom"].get("secretKeyRef", {}).get("key"))
            for e in env
        )
        containers.append(container)
    spec["containers"] = containers
    return spec


def spec_of(doc: dict[str, Any]) -> dict[str, Any]:
    """A spec without object names and selectors (names and labels differ by design)."""
    spec = {k: v for k, v in doc["spec"].items() if k not in {"selector", "scaleTargetRef"}}
    if doc["kind"] == "ScaledObject":  # the API Service's URL holds its name and namespace
        spec["triggers"] = [
            {
                **{k: v for k, v in t.items() if k != "authenticationRef"},
                "metadata": {k: v for k, v in t["metadata"].items() if k != "url"},
            }
            for t in spec["triggers"]
        ]
    return spec


def test_the_pods_configuration_is_accepted_by_the_service(chart: Chart) -> None:
    docs = render(chart, EVERYTHING_ON)
    for role in ("api", "worker"):
        container = one(docs, "Deployment", role)["spec"]["template"]["spec"]["containers"][0]
        settings = settings_from(container_env(container, SECRETS))
        assert settings.queue_prefix == "{wfe}"
        assert settings.retention_days == 14
        assert settings.store_url == SECRETS["store-url"]


def test_the_worker_grace_period_follows_the_drain_time(chart: Chart) -> None:
    for grace in (25, 100):
        docs = render(chart, {"worker": {"shutdownGraceSeconds": grace}})
        worker = one(docs, "Deployment", "worker")
        container = worker["spec"]["template"]["spec"]["containers"][0]
        drain = settings_from(container_env(container, SECRETS)).shutdown_grace_s
        assert drain == grace
        assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= (
            drain + HAND_OVER_S
        )


def test_the_worker_serves_metrics_and_probes_on_its_port(chart: Chart) -> None:
    for port in (9464, 9500):
        docs = render(chart, {"worker": {"metricsPort": port}})
        worker = one(docs, "Deployment", "worker")
        settings = settings_from(
            container_env(worker["spec"]["template"]["spec"]["containers"][0], SECRETS)
        )
        assert settings.metrics_port == port_named(worker, "metrics") == port
        assert settings.host == "0.0.0.0"  # the kubelet probes the pod's address
        check_worker_probes(worker, settings.lock_duration_ms / 1000)
        check_scrape_annotations(worker, "metrics")
        check_scrape_annotations(one(docs, "Deployment", "api"), "http")


def test_service_monitors_only_when_enabled(chart: Chart) -> None:
    """Off by default (no CRD needed); on: one ServiceMonitor per role, the workers' through a
    headless Service on their metrics port that keeps not-ready workers, with the labels a
    Prometheus selects on, and no scrape annotations (one discovery, not two)."""
    for off in (None, KEDA):
        docs = render(chart, off)
        assert "ServiceMonitor" not in kinds(docs)
        assert [s["metadata"]["name"] for s in docs if s["kind"] == "Service"] == [f"{RELEASE}-api"]
    values = {
        "worker": {"metricsPort": 9500},
        "api": {"port": 8080},
        "metrics": {
            "serviceMonitor": {
                "enabled": True,
                "interval": "15s",
                "scrapeTimeout": "5s",
                "labels": {"release": "prometheus"},
            }
        },
    }
    docs = render(chart, values)
    assert problems(docs) == []
    assert kinds(docs).count("ServiceMonitor") == 2
    for role, port_name in (("api", "http"), ("worker", "metrics")):
        monitor = one(docs, "ServiceMonitor", role)
        assert monitor["metadata"]["labels"]["release"] == "prometheus"
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
        [endpoint] = monitor["spec"]["endpoints"]
        assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("15s", "5s")
        check_service_monitor(monitor, docs, role, port_name)
        assert scrape_annotations(one(docs, "Deployment", role)) == {}
    headless = check_service_monitor(
        one(docs, "ServiceMonitor", "worker"), docs, "worker", "metrics"
    )
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert headless["spec"]["ports"] == [
        {"name": "metrics", "port": 9500, "targetPort": "metrics", "protocol": "TCP"}
    ]


@pytest.mark.parametrize(
    "values",
    [
        {"api": {"replicaCount": "three"}},
        {"wokers": {"replicaCount": 2}},
        {"worker": {"queues": ["urgent"]}},
        {"queuePrefix": "wfe:prod"},
        {"secrets": {"create": True, "storeUrl": "mysql://db/wfe"}},
        {"ingress": {"enabled": True, "hosts": [{"host": "x", "paths": [{"path": "/"}]}]}},
        {"api": {"resources": {"limits": {"cpu": "lots"}}}},
        {"worker": {"keda": {"listLength": {"workflow": 50}}}},  # now targetValue
        {"secrets": {"redisAddress": "redis:6379"}},  # KEDA no longer reads Redis
        {"secrets": {"kedaApiKey": "a key"}},
        {"worker": {"metricsPort": 0}},
        {"worker": {"metricsPort": "9464"}},
        {"metrics": {"serviceMonitor": {"enabled": "yes"}}},
        {"metrics": {"serviceMonitor": {"enabled": True, "interval": "30 seconds"}}},
        {"metrics": {"podMonitor": {"enabled": True}}},
    ],
)
def test_the_values_schema_refuses_bad_values(chart: Chart, values: dict[str, Any]) -> None:
    with pytest.raises(HelmValuesError):
        chart.render(values=values, name=RELEASE)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"worker": {"keda": {"enabled": True}, "autoscaling": {"enabled": True}}},
            "alternatives",
        ),
        ({"secrets": {"create": True}}, "secrets.storeUrl is required"),
        (
            {
                "worker": {"keda": {"enabled": True}},
                "secrets": {
                    "create": True,
                    "storeUrl": SECRETS["store-url"],
                    "redisUrl": SECRETS["redis-url"],
                    "apiKeys": TENANT_KEYS,
                },
            },
            "secrets.kedaApiKey is required",
        ),
    ],
)
def test_contradictions_fail_the_render(chart: Chart, values: dict[str, Any], message: str) -> None:
    with pytest.raises(HelmRenderError, match=message):
        chart.render(values=values, name=RELEASE)
