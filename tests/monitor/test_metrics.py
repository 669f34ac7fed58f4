"""The bounds on metric labels (SPEC section 11): model names past ``MAX_MODELS`` count as
``other``; a tenant is a label only in ``wfe_tenant_executions_total``, which exists once
``WFE_METRICS_TENANT_LABEL`` turns it on."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from workflow_engine.monitor import metrics


def series(name: str) -> list[dict[str, str]]:
    return [
        sample.labels
        for family in text_string_to_metric_families(metrics.render().decode())
        for sample in family.samples
        if sample.name == name
    ]


def test_model_names_past_the_bound_count_as_other(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "_models", set())
    for i in range(metrics.MAX_MODELS + 10):
        metrics.tokens_used(f"bound-test-{i}", 1, 1)
    models = {labels["model"] for labels in series("wfe_llm_tokens_total")}
    ours = {m for m in models if m.startswith("bound-test-")}
    assert len(ours) == metrics.MAX_MODELS
    assert metrics.OTHER in models


def test_the_tenant_is_a_label_only_when_asked_for() -> None:
    metrics.execution_ended("background", "completed", 0.5, "tenant-a")
    assert not series("wfe_tenant_executions_total")
    assert all("tenant" not in labels for labels in series("wfe_executions_total"))
    metrics.count_tenants(True)
    metrics.execution_ended("background", "completed", 0.5, "tenant-a")
    assert {"tenant": "tenant-a", "status": "completed"} in series("wfe_tenant_executions_total")
