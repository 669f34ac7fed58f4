"""deploy/grafana/workflow-engine.json and deploy/prometheus/alerts.yaml: the dashboard imports
(its Prometheus data source is an input, ${DS_PROMETHEUS}, used by every panel), has the panels
operators look for, and every expression of it and of the alert rules reads only the metrics of
SPEC section 11, by their labels and label values (tests/deploy/promql.py); the rules are a
valid rule file and, wrapped as deploy/k8s/README.md shows, a valid PrometheusRule. Where
promtool is installed: it accepts the rules, the alerts fire on the situations they name and
stay quiet on a healthy system, and every dashboard expression returns data on series shaped
like the service's."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import promql
from tests.deploy.monitoring import problems
from tests.support.deploy import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "workflow-engine.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
K8S_README = ROOT / "deploy" / "k8s" / "README.md"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
# what Grafana puts in for its own variables when it queries (any value of a fitting kind)
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Prometheus) not installed")


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) of every query."""
    return [
        (panel["title"], target["expr"])
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
    ]


def datasources(node: Any) -> Iterator[Any]:
    """Every ``datasource`` value anywhere in the dashboard."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield value
            else:
                yield from datasources(value)
    elif isinstance(node, list):
        for item in node:
            yield from datasources(item)


def test_the_dashboard_imports_with_its_datasource_as_an_input(dashboard: dict[str, Any]) -> None:
    assert dashboard["__inputs"] == [
        {
            "name": "DS_PROMETHEUS",
            "label": "Prometheus",
            "description": dashboard["__inputs"][0]["description"],
            "type": "datasource",
            "pluginId": "prometheus",
            "pluginName": "Prometheus",
        }
    ]
    assert {"type": "datasource", "id": "prometheus"}.items() <= dashboard["__requires"][1].items()
    assert dashboard["id"] is None  # Grafana gives it one on import
    assert dashboard["uid"]
    assert dashboard["title"]
    builtin = {"type": "grafana", "uid": "-- Grafana --"}  # the built-in annotations' own
    assert [d for d in datasources(dashboard) if d not in (DATASOURCE, builtin)] == []
    queried = [p for p in panels(dashboard) if p["type"] != "row"]
    assert queried
    for panel in queried:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])


def test_the_dashboard_layout_holds(dashboard: dict[str, Any]) -> None:
    """Unique panel ids; every panel inside the 24-column grid, none overlapping another."""
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for panel in panels(dashboard):
        box = panel["gridPos"]
        assert 0 <= box["x"] < box["x"] + box["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(box["x"], box["x"] + box["w"])
            for y in range(box["y"], box["y"] + box["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_every_dashboard_query_reads_known_metrics(dashboard: dict[str, Any]) -> None:
    found = {
        f"{title}: {expr}": promql.problems(expr)
        for title, expr in expressions(dashboard)
        if promql.problems(expr)
    }
    assert found == {}


def test_the_dashboard_variable_reads_a_known_label(dashboard: dict[str, Any]) -> None:
    [variable] = dashboard["templating"]["list"]
    assert variable["datasource"] == DATASOURCE
    match = re.fullmatch(r"label_values\((\w+), *(\w+)\)", variable["query"]["query"])
    assert match, variable["query"]
    series, label = match.groups()
    assert label in promql.SERIES[series].labels
    assert variable["name"] == label
    assert variable["allValue"] == ".*"
    # every query of a queue-labelled series honours the selection
    for title, expr in expressions(dashboard):
        for matcher in promql.read(expr).matchers:
            if matcher.label == "queue" and "$" in matcher.value:
                assert (matcher.op, matcher.value) == ("=~", "$queue"), title


def find(dashboard: dict[str, Any], series: str, labels: set[str] = frozenset()) -> list[str]:
    """The expressions that read ``series`` and name these labels (grouping or matching)."""
    return [
        expr
        for _, expr in expressions(dashboard)
        if series in promql.read(expr).series and labels <= promql.read(expr).labels
    ]


def test_the_dashboard_has_the_operators_panels(dashboard: dict[str, Any]) -> None:
    # queue depth by queue and state
    assert find(dashboard, "wfe_queue_jobs", {"queue", "state"})
    # throughput by status
    assert any("rate(" in e for e in find(dashboard, "wfe_executions_total", {"status"}))
    # execution latency percentiles
    quantiles = {
        float(q)
        for expr in find(dashboard, "wfe_execution_duration_seconds_bucket", {"le"})
        for q in re.findall(r"histogram_quantile\(\s*([0-9.]+)", expr)
    }
    assert quantiles >= {0.5, 0.95, 0.99}
    # node failures by type
    failed = [
        expr
        for expr in find(dashboard, "wfe_node_duration_seconds_count", {"type"})
        if promql.Matcher("wfe_node_duration_seconds_count", "status", "=", "failed")
        in promql.read(expr).matchers
    ]
    assert failed
    # workers busy
    assert "sum(wfe_worker_active_executions)" in [e for _, e in expressions(dashboard)]
    # HTTP requests by route and status, LLM tokens by model and kind
    assert find(dashboard, "wfe_http_requests_total", {"route", "status"})
    assert find(dashboard, "wfe_llm_tokens_total", {"model", "kind"})
    # and every metric of SPEC section 11 somewhere
    used = {
        promql.SERIES[s].metric.name
        for _, e in expressions(dashboard)
        for s in promql.read(e).series
    }
    assert used == set(promql.METRICS)


@pytest.mark.parametrize(
    "expr",
    [
        "up",  # not ours
        "wfe_queue_depth",  # no such metric
        "sum(rate(wfe_executions_total{tenant='a'}[5m]))",  # no such label
        'max by (queue) (wfe_queue_jobs{state="wait"})',  # BullMQ says "waiting"
        'sum(rate(wfe_executions_total{queue="urgent"}[5m]))',  # no such queue class
        'sum(rate(wfe_llm_tokens_total{kind="input"}[5m]))',  # prompt or completion
        "sum by (foo) (rate(wfe_llm_tokens_total[5m]))",
        "rate(wfe_queue_jobs[5m])",  # a gauge
        "sum(wfe_executions_total)",  # a counter not through rate()
        "histogram_quantile(0.9, sum(rate(wfe_execution_duration_seconds_bucket[5m])))",  # no le
        "histogram_quantil(0.5, rate(wfe_store_commit_seconds_bucket[5m]))",
        "sum(rate(wfe_executions_total[5m])",
        "sum(rate(wfe_node_duration_seconds_count{state='failed'}[5m]))",
    ],
)
def test_the_query_checks_catch_mistakes(expr: str) -> None:
    assert promql.problems(expr), expr


def test_the_alert_rules_read_known_metrics(rules: list[dict[str, Any]]) -> None:
    assert rules
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert promql.problems(rule["expr"]) == [], rule["alert"]
        assert re.fullmatch(r"[0-9]+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert {"summary", "description"} <= rule["annotations"].keys()


def test_the_alerts_cover_backlog_failures_and_workers(rules: list[dict[str, Any]]) -> None:
    reads = {rule["alert"]: promql.read(rule["expr"]) for rule in rules}
    backlog = [
        name
        for name, usage in reads.items()
        if "wfe_queue_jobs" in usage.series
        and "delta" in usage.functions
        and any(m.label == "state" and "prioritized" in m.value for m in usage.matchers)
    ]
    assert backlog  # growing, waiting and prioritized
    failures = [
        name
        for name, usage in reads.items()
        if promql.Matcher("wfe_executions_total", "status", "=", "failed") in usage.matchers
    ]
    assert failures
    no_workers = [
        name
        for name, usage in reads.items()
        if usage.series == ["wfe_worker_active_executions"] and "absent" in usage.functions
    ]
    assert no_workers


def test_the_rules_wrapped_as_the_readme_shows_are_a_prometheus_rule() -> None:
    """deploy/k8s/README.md's command for the Prometheus Operator (run without its final
    kubectl) makes a valid PrometheusRule holding the rule file's groups."""
    [line] = [
        line.removeprefix("$ ")
        for line in K8S_README.read_text().splitlines()
        if "PrometheusRule" in line and line.startswith("$ ")
    ]
    command, _, apply = line.rpartition(" | ")
    assert apply == "kubectl apply -f -"
    made = subprocess.run(
        ["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, check=True, timeout=30
    ).stdout
    [rule] = yaml.safe_load_all(made)
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert problems([rule]) == []
    assert rule["spec"] == yaml.safe_load(ALERTS.read_text())


def test_the_monitoring_schema_catches_mistakes() -> None:
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "x"},
        "spec": {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "1", "for": "5m"}]}]},
    }
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "x"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "endpoints": [{"port": "metrics"}]},
    }
    assert problems([rule, monitor]) == []
    broken = [
        {
            **rule,
            "spec": {
                "groups": [{"name": "g", "rules": [{"alert": "A", "expr": "1", "for": "5 min"}]}]
            },
        },
        {**rule, "spec": {"groups": [{"name": "g", "rules": [{"expr": "1"}]}]}},
        {
            **monitor,
            "spec": {"selector": {}, "endpoints": [{"port": "metrics", "intervall": "5s"}]},
        },
        {**monitor, "spec": {"endpoints": [{"port": "metrics"}]}},
        {**monitor, "kind": "PodMonitor"},
    ]
    for doc in broken:
        assert problems([doc]), doc


# -- with promtool: Prometheus' own parser and rule evaluation --------------------------------


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


@needs_promtool
def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    body = ",".join(f'{k}="{v}"' for k, v in sorted({**labels, "instance": "pod-1"}.items()))
    return {"series": f"{name}{{{body}}}", "values": values}


def histogram(name: str, per_minute: dict[str, int], **labels: str) -> list[dict[str, str]]:
    """A histogram's series, growing by ``per_minute`` observations per bucket bound."""
    out = [series(f"{name}_bucket", f"0+{n}x60", le=le, **labels) for le, n in per_minute.items()]
    total = max(per_minute.values())
    return [
        *out,
        series(f"{name}_count", f"0+{total}x60", **labels),
        series(f"{name}_sum", f"0+{total}x60", **labels),
    ]


ALL_ALERTS = (
    "WorkflowEngineQueueBacklogGrowing",
    "WorkflowEngineHighFailureRatio",
    "WorkflowEngineNoWorkers",
    "WorkflowEngineWorkersIdleWithBacklog",
    "WorkflowEngineAPIErrors",
    "WorkflowEngineStoreCommitsSlow",
)
HEALTHY = [
    series("wfe_queue_jobs", "5x60", queue="workflow", state="prioritized"),
    series("wfe_worker_active_executions", "3x60"),
    series("wfe_executions_total", "0+30x60", queue="workflow", status="completed"),
    series("wfe_executions_total", "0+1x60", queue="workflow", status="failed"),
    series("wfe_http_requests_total", "0+50x60", route="/api/workflow/execute", status="202"),
    series("wfe_http_requests_total", "0+1x60", route="/api/workflow/execute", status="503"),
    *histogram("wfe_store_commit_seconds", {"0.01": 90, "0.5": 100, "+Inf": 100}),
]
# (what happens, input series, {alert: labels it fires with}) at 40 minutes
SITUATIONS: list[tuple[str, list[dict[str, str]], dict[str, dict[str, str]]]] = [
    ("healthy", HEALTHY, {}),
    (
        "backlog grows (reported by two API pods)",
        [
            *HEALTHY[1:],
            series("wfe_queue_jobs", "50+10x60", queue="workflow", state="prioritized"),
            {
                **series("wfe_queue_jobs", "50+10x60", queue="workflow", state="prioritized"),
                "series": 'wfe_queue_jobs{instance="pod-2",queue="workflow",state="prioritized"}',
            },
            series("wfe_queue_jobs", "500x60", queue="realtime", state="waiting"),  # steady
        ],
        {"WorkflowEngineQueueBacklogGrowing": {"queue": "workflow", "severity": "warning"}},
    ),
    (
        "executions fail",
        [
            *HEALTHY,
            series("wfe_executions_total", "0+6x60", queue="background", status="completed"),
            series("wfe_executions_total", "0+4x60", queue="background", status="failed"),
        ],
        {"WorkflowEngineHighFailureRatio": {"queue": "background", "severity": "warning"}},
    ),
    (
        "no worker",
        [h for h in HEALTHY if "worker" not in h["series"]],
        {"WorkflowEngineNoWorkers": {"severity": "critical"}},
    ),
    (
        "workers up but taking nothing",
        [
            series("wfe_queue_jobs", "5x60", queue="workflow", state="waiting"),
            series("wfe_worker_active_executions", "0x60"),
        ],
        {"WorkflowEngineWorkersIdleWithBacklog": {"severity": "critical"}},
    ),
    (
        "the API answers 503",
        [
            *HEALTHY,
            series("wfe_http_requests_total", "0+40x60", route="/api/workflow/stats", status="503"),
        ],
        {"WorkflowEngineAPIErrors": {"severity": "warning"}},
    ),
    (
        "store commits slow",
        [
            *HEALTHY[:-5],
            *histogram("wfe_store_commit_seconds", {"0.5": 50, "1.0": 100, "+Inf": 100}),
        ],
        {"WorkflowEngineStoreCommitsSlow": {"severity": "warning"}},
    ),
]


@needs_promtool
@pytest.mark.parametrize(
    ("situation", "inputs", "expected"), SITUATIONS, ids=[s[0] for s in SITUATIONS]
)
def test_the_alerts_fire_when_they_should(
    situation: str,
    inputs: list[dict[str, str]],
    expected: dict[str, dict[str, str]],
    tmp_path: Path,
) -> None:
    """promtool evaluates the rules (annotations left out: promtool compares them whole;
    ``check rules`` above checks their templates) on series of the situation."""
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    for group in groups:
        for rule in group["rules"]:
            rule.pop("annotations")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    test = {
        "rule_files": [str(tmp_path / "rules.yaml")],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": inputs,
                "alert_rule_test": [
                    {
                        "eval_time": "40m",
                        "alertname": name,
                        "exp_alerts": [{"exp_labels": expected[name]}] if name in expected else [],
                    }
                    for name in ALL_ALERTS
                ],
            }
        ],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test, sort_keys=False))
    result = promtool("test", "rules", tmp_path / "test.yaml")
    assert result.returncode == 0, f"{situation}:\n{result.stdout}{result.stderr}"


def service_shaped_series() -> list[dict[str, str]]:
    """Series of every metric of SPEC section 11, with the labels the service gives them."""
    buckets = {"0.1": 5, "1.0": 8, "+Inf": 10}
    out: list[dict[str, str]] = []
    for queue in ("workflow", "realtime"):
        for status in ("completed", "failed"):
            out.append(series("wfe_executions_total", "0+5x60", queue=queue, status=status))
        out += histogram("wfe_execution_duration_seconds", buckets, queue=queue)
        for state in sorted(promql.JOB_STATES):
            out.append(series("wfe_queue_jobs", "3x60", queue=queue, state=state))
    for status in ("completed", "failed"):
        out += histogram("wfe_node_duration_seconds", buckets, type="http", status=status)
    out.append(series("wfe_worker_active_executions", "2x60"))
    out.append(
        series("wfe_http_requests_total", "0+5x60", route="/api/workflow/execute", status="202")
    )
    out += histogram("wfe_store_commit_seconds", buckets)
    for kind in ("prompt", "completion"):
        out.append(series("wfe_llm_tokens_total", "0+100x60", model="gpt-4o", kind=kind))
    return out


def as_prometheus_sees_it(expr: str) -> str:
    """A dashboard query as Grafana sends it, every queue class selected."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    expr = expr.replace("$queue", ".*")
    assert "$" not in expr, expr
    return expr


@needs_promtool
def test_every_dashboard_query_returns_data(dashboard: dict[str, Any], tmp_path: Path) -> None:
    """Each query, as an alert on its absence, stays quiet on the service's series: Prometheus
    parses it and it finds what it reads (names, labels and values as the service has them)."""
    queries = expressions(dashboard)
    rules = [
        {"alert": f"Empty{i}", "expr": f"absent({as_prometheus_sees_it(expr)})"}
        for i, (_, expr) in enumerate(queries)
    ]
    (tmp_path / "rules.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]})
    )
    test = {
        "rule_files": [str(tmp_path / "rules.yaml")],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": service_shaped_series(),
                "alert_rule_test": [
                    {"eval_time": "30m", "alertname": rule["alert"], "exp_alerts": []}
                    for rule in rules
                ],
            }
        ],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test, sort_keys=False))
    result = promtool("test", "rules", tmp_path / "test.yaml")
    names = {
        rule["alert"]: f"{title}: {expr}"
        for rule, (title, expr) in zip(rules, queries, strict=True)
    }
    empty = [names[n] for n in re.findall(r"alertname: (Empty\d+)", result.stdout)]
    assert result.returncode == 0, f"{empty}\n{result.stdout}{result.stderr}"
