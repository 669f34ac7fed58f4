"""Checks shared by the deploy tests for metrics and probes: Prometheus Operator objects
validated against tests/deploy/schemas/monitoring-v1.json (the rest as tests/support/deploy.py
validates them), the pods' scrape annotations, the worker's probes, and which Service and
pods a ServiceMonitor reaches."""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from typing import Any

import jsonschema

from tests.support.deploy import SCHEMAS, name_of
from tests.support.deploy import problems as kubernetes_problems

MONITORING = "monitoring.coreos.com/"
METRICS_PATH = "/metrics"
SCRAPE = ("prometheus.io/scrape", "prometheus.io/port", "prometheus.io/path")


@cache
def _monitoring_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / "monitoring-v1.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def problems(docs: Iterable[dict[str, Any]]) -> list[str]:
    """Every schema problem of these objects, ServiceMonitors and PrometheusRules included."""
    docs = list(docs)
    found = kubernetes_problems(
        d for d in docs if not str(d.get("apiVersion", "")).startswith(MONITORING)
    )
    for doc in docs:
        if str(doc.get("apiVersion", "")).startswith(MONITORING):
            found += [
                f"{name_of(doc)}: {'.'.join(str(p) for p in e.absolute_path)}: {e.message}"
                for e in _monitoring_validator().iter_errors(doc)
            ]
    return found


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return found


def port_named(deployment: dict[str, Any], name: str) -> int:
    ports = {p["name"]: p["containerPort"] for p in container(deployment).get("ports", [])}
    assert name in ports, f"{deployment['metadata']['name']}: no container port {name!r}"
    return int(ports[name])


def scrape_annotations(deployment: dict[str, Any]) -> dict[str, str]:
    annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
    return {k: v for k, v in annotations.items() if k.startswith("prometheus.io/")}


def check_scrape_annotations(deployment: dict[str, Any], port_name: str) -> None:
    """The pod template tells an annotation-discovering Prometheus where /metrics is: the
    container port of that name (annotations are strings)."""
    assert scrape_annotations(deployment) == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port_named(deployment, port_name)),
        "prometheus.io/path": METRICS_PATH,
    }


def check_worker_probes(worker: dict[str, Any], lock_duration_s: float) -> None:
    """Liveness on /health and readiness on /ready, on the worker's metrics port; a startup
    probe first; liveness gives up only after BullMQ's lock has expired (a worker whose loop
    is blocked that long has lost its jobs to other workers already)."""
    spec = container(worker)
    port_named(worker, "metrics")
    assert spec["startupProbe"]["httpGet"] == {"path": "/health", "port": "metrics"}
    assert spec["livenessProbe"]["httpGet"] == {"path": "/health", "port": "metrics"}
    assert spec["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "metrics"}
    liveness = spec["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= lock_duration_s
    for probe in ("livenessProbe", "readinessProbe"):
        # /ready waits up to 2 s per check (Redis, the store, concurrently)
        assert spec[probe]["timeoutSeconds"] > 2, probe


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def check_service_monitor(
    monitor: dict[str, Any], docs: list[dict[str, Any]], role: str, port_name: str
) -> dict[str, Any]:
    """The ServiceMonitor selects exactly one Service, whose port it names, which sends that
    port to the role's pods on their container port ``port_name``: the Service."""
    spec = monitor["spec"]
    services = [
        d
        for d in docs
        if d["kind"] == "Service"
        and selects(spec["selector"]["matchLabels"], d["metadata"].get("labels", {}))
    ]
    assert len(services) == 1, [s["metadata"]["name"] for s in services]
    service = services[0]
    [endpoint] = spec["endpoints"]
    assert endpoint["path"] == METRICS_PATH
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert endpoint["port"] in ports
    deployments = [
        d
        for d in docs
        if d["kind"] == "Deployment"
        and selects(service["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
    ]
    assert len(deployments) == 1
    deployment = deployments[0]
    assert deployment["metadata"]["labels"]["app.kubernetes.io/component"] == role
    assert ports[endpoint["port"]]["targetPort"] == port_name
    port_named(deployment, port_name)
    return service
