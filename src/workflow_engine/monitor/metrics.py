"""Prometheus metrics (SPEC section 11), one set per process: the API serves them on its own
``/metrics``, each worker on ``WFE_METRICS_PORT`` (``worker/probes.py``).

Label values are bounded: queue classes, statuses, node types (the registry's), routes (the
API's path templates, never a raw path), token kinds; model names are kept up to
``MAX_MODELS`` (then ``other``). No execution id is ever a label, and the tenant is one only
in ``wfe_tenant_executions_total``, which exists when ``WFE_METRICS_TENANT_LABEL`` is on.

A process that forks workers (uvicorn ``--workers``, gunicorn) sets ``PROMETHEUS_MULTIPROC_DIR``
(an empty directory, as ``prometheus_client`` documents): each process then writes its
values there and ``render`` adds them up."""

from __future__ import annotations

import hmac
import os
import threading
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import SecretStr

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
MAX_MODELS: Final = 64
"""Distinct model names counted apart; later ones count as ``other``."""
OTHER: Final = "other"
DURATION_BUCKETS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    1800.0,
)

REGISTRY: Final = CollectorRegistry(auto_describe=True)

EXECUTIONS = Counter(
    "wfe_executions",
    "Executions that ended, by queue class and final status.",
    ["queue", "status"],
    registry=REGISTRY,
)
EXECUTION_SECONDS = Histogram(
    "wfe_execution_duration_seconds",
    "Time from an execution's start to its end (waits included), by queue class.",
    ["queue"],
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
NODE_SECONDS = Histogram(
    "wfe_node_duration_seconds",
    "Time a node ran, by node type and final status.",
    ["type", "status"],
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
QUEUE_JOBS = Gauge(
    "wfe_queue_jobs",
    "BullMQ jobs by queue class and state, as the API read them at the scrape.",
    ["queue", "state"],
    registry=REGISTRY,
    multiprocess_mode="mostrecent",
)
ACTIVE_EXECUTIONS = Gauge(
    "wfe_worker_active_executions",
    "Executions this worker process is running now.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
HTTP_REQUESTS = Counter(
    "wfe_http_requests",
    "HTTP requests the API answered, by route template and status code.",
    ["route", "status"],
    registry=REGISTRY,
)
STORE_COMMIT_SECONDS = Histogram(
    "wfe_store_commit_seconds",
    "Time one group commit of writes to the store took.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=REGISTRY,
)
LLM_TOKENS = Counter(
    "wfe_llm_tokens",
    "Tokens model servers reported, by model and kind (prompt, completion).",
    ["model", "kind"],
    registry=REGISTRY,
)

_tenant_executions: Counter | None = None
_models: set[str] = set()
_lock = threading.Lock()


def count_tenants(enabled: bool) -> None:
    """``WFE_METRICS_TENANT_LABEL``: add ``wfe_tenant_executions_total{tenant,status}``."""
    global _tenant_executions
    with _lock:
        if enabled and _tenant_executions is None:
            _tenant_executions = Counter(
                "wfe_tenant_executions",
                "Executions that ended, by tenant and final status.",
                ["tenant", "status"],
                registry=REGISTRY,
            )


def execution_ended(queue: str, status: str, seconds: float | None, tenant: str) -> None:
    EXECUTIONS.labels(queue, status).inc()
    if seconds is not None and seconds >= 0:
        EXECUTION_SECONDS.labels(queue).observe(seconds)
    if _tenant_executions is not None:
        _tenant_executions.labels(tenant, status).inc()


def node_ended(node_type: str, status: str, seconds: float | None) -> None:
    if seconds is not None and seconds >= 0:
        NODE_SECONDS.labels(node_type, status).observe(seconds)


def tokens_used(model: str, prompt: int, completion: int) -> None:
    """A model answer's usage; a model name past the first ``MAX_MODELS`` counts as other."""
    with _lock:
        if model not in _models and len(_models) < MAX_MODELS:
            _models.add(model)
        label = model if model in _models else OTHER
    if prompt > 0:
        LLM_TOKENS.labels(label, "prompt").inc(prompt)
    if completion > 0:
        LLM_TOKENS.labels(label, "completion").inc(completion)


def render() -> bytes:
    """This process's metrics in Prometheus' text format (every process's when
    ``PROMETHEUS_MULTIPROC_DIR`` is set)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def scrape_allowed(authorization: str | None, token: SecretStr | None) -> bool:
    """Whether a scrape may read the metrics: always without ``WFE_METRICS_TOKEN``, else only
    with ``Authorization: Bearer <token>``."""
    if token is None:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    expected = token.get_secret_value()
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), expected.encode()
    )
