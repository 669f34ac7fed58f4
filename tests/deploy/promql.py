"""A static reader of the PromQL in deploy/grafana and deploy/prometheus: which series, labels,
label values and functions an expression uses, checked against the metrics SPEC section 11
names. No evaluation (promtool, where installed, parses and evaluates: test_monitoring.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from workflow_engine.vocabulary import QUEUE_NAMES, ExecutionStatus, NodeStatus

Kind = Literal["counter", "gauge", "histogram"]
JOB_STATES = frozenset(
    {"waiting", "prioritized", "active", "delayed", "completed", "failed", "paused"}
)


@dataclass(frozen=True)
class Metric:
    """One metric of SPEC section 11 as Prometheus stores it: its labels and, where bounded,
    the values each label takes."""

    name: str
    kind: Kind
    labels: dict[str, frozenset[str] | None]  # None: any value (routes, models, node types)


METRICS = {
    m.name: m
    for m in (
        Metric(
            "wfe_executions_total",
            "counter",
            {"queue": frozenset(QUEUE_NAMES), "status": frozenset(ExecutionStatus)},
        ),
        Metric("wfe_execution_duration_seconds", "histogram", {"queue": frozenset(QUEUE_NAMES)}),
        Metric(
            "wfe_node_duration_seconds",
            "histogram",
            {"type": None, "status": frozenset(NodeStatus)},
        ),
        Metric("wfe_queue_jobs", "gauge", {"queue": frozenset(QUEUE_NAMES), "state": JOB_STATES}),
        Metric("wfe_worker_active_executions", "gauge", {}),
        Metric("wfe_http_requests_total", "counter", {"route": None, "status": None}),
        Metric("wfe_store_commit_seconds", "histogram", {}),
        Metric(
            "wfe_llm_tokens_total",
            "counter",
            {"model": None, "kind": frozenset({"prompt", "completion"})},
        ),
    )
}
# labels Prometheus (and the usual Kubernetes relabelling) puts on every scraped series
TARGET_LABELS = frozenset({"instance", "job", "namespace", "pod", "container", "service"})


@dataclass(frozen=True)
class Series:
    """A series name as scraped: a counter or gauge by its name, a histogram's three."""

    name: str
    metric: Metric
    cumulative: bool  # counters and histogram series: read through rate()/increase()
    labels: dict[str, frozenset[str] | None]


def _series() -> dict[str, Series]:
    out: dict[str, Series] = {}
    for metric in METRICS.values():
        if metric.kind == "histogram":
            out[f"{metric.name}_bucket"] = Series(
                f"{metric.name}_bucket", metric, True, {**metric.labels, "le": None}
            )
            for suffix in ("_count", "_sum"):
                out[metric.name + suffix] = Series(
                    metric.name + suffix, metric, True, metric.labels
                )
        else:
            out[metric.name] = Series(metric.name, metric, metric.kind == "counter", metric.labels)
    return out


SERIES = _series()

# fmt: off
AGGREGATIONS = frozenset({
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile",
})
COUNTER_FUNCTIONS = frozenset({"rate", "irate", "increase", "resets"})
FUNCTIONS = COUNTER_FUNCTIONS | {
    "abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min",
    "day_of_month", "day_of_week", "day_of_year", "days_in_month", "delta", "deriv", "exp",
    "floor", "histogram_quantile", "holt_winters", "hour", "idelta", "label_join",
    "label_replace", "ln", "log10", "log2", "minute", "month", "predict_linear", "round",
    "scalar", "sgn", "sort", "sort_desc", "sqrt", "time", "timestamp", "vector", "year",
    "avg_over_time", "min_over_time", "max_over_time", "sum_over_time", "count_over_time",
    "quantile_over_time", "stddev_over_time", "stdvar_over_time", "last_over_time",
    "present_over_time",
}
# fmt: on
GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "atan2", "Inf", "NaN", "inf", "nan"})

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|\#[^\n]*)
    |(?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
    |(?P<variable>\$\{[A-Za-z_][A-Za-z0-9_:]*\}|\$[A-Za-z_][A-Za-z0-9_]*)
    |(?P<duration>(?:[0-9]+(?:ms|[smhdwy]))+(?![A-Za-z0-9_]))
    |(?P<number>0[xX][0-9a-fA-F]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)
    |(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    |(?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=,:@])
    |(?P<open>[({\[])
    |(?P<close>[)}\]])
    """,
    re.VERBOSE,
)
_PAIRS = {"(": ")", "{": "}", "[": "]"}


class PromQLError(ValueError):
    pass


@dataclass(frozen=True)
class Matcher:
    series: str | None
    label: str
    op: str
    value: str


@dataclass
class Usage:
    """What one expression reads."""

    series: list[str] = field(default_factory=list)
    labels: set[str] = field(default_factory=set)  # in matchers and in by/without/on/ignoring
    matchers: list[Matcher] = field(default_factory=list)
    functions: set[str] = field(default_factory=set)
    # each series with the functions around it
    enclosing: list[tuple[str, frozenset[str]]] = field(default_factory=list)


def tokens(expr: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    position = 0
    while position < len(expr):
        match = _TOKEN.match(expr, position)
        if match is None:
            raise PromQLError(f"cannot read {expr[position : position + 20]!r}")
        assert match.lastgroup is not None
        if match.lastgroup != "space":
            out.append((match.lastgroup, match.group()))
        position = match.end()
    return out


def read(expr: str) -> Usage:
    """The series, labels, matchers and functions of ``expr``; ``PromQLError`` when it does
    not even tokenise or its brackets do not pair up."""
    usage = Usage()
    stack: list[tuple[str, str]] = []  # (bracket, role): call:<fn>, paren, labels, matchers...
    items = tokens(expr)
    pending_call: str | None = None  # a function or aggregation waiting for its "("
    grouping = False  # the next "(" opens a label list
    last_series: str | None = None  # the series a "{" right after it filters
    filtered: str | None = None  # the series of the matcher list being read
    index = 0
    while index < len(items):
        kind, text = items[index]
        role = stack[-1][1] if stack else ""
        if role == "range":  # [5m], [$__rate_interval], [1h:1m]: durations only
            if kind == "close":
                _close(stack, text)
            elif kind in {"open", "ident", "string"}:
                raise PromQLError(f"{text!r} in a range selector")
        elif role == "matchers":
            if kind == "close":
                _close(stack, text)
            elif kind == "ident":
                ops = items[index + 1 : index + 3]
                if len(ops) < 2 or ops[0][0] != "op" or ops[1][0] != "string":
                    raise PromQLError(f"bad label matcher at {text!r}")
                usage.labels.add(text)
                usage.matchers.append(Matcher(filtered, text, ops[0][1], ops[1][1][1:-1]))
                index += 2
            elif not (kind == "op" and text == ","):
                raise PromQLError(f"{text!r} in a label matcher list")
        elif role == "labels":
            if kind == "close":
                _close(stack, text)
            elif kind == "ident":
                usage.labels.add(text)
            elif not (kind == "op" and text == ","):
                raise PromQLError(f"{text!r} in a label list")
        elif kind == "open":
            if text == "{":
                stack.append(("{", "matchers"))
                filtered = last_series
            elif text == "[":
                stack.append(("[", "range"))
            elif grouping:
                stack.append(("(", "labels"))
                grouping = False
            elif pending_call is not None:
                stack.append(("(", f"call:{pending_call}"))
                pending_call = None
            else:
                stack.append(("(", "paren"))
            last_series = None
            index += 1
            continue
        elif kind == "close":
            _close(stack, text)
        elif kind == "ident":
            following = items[index + 1] if index + 1 < len(items) else ("", "")
            if text in GROUPING:
                grouping = following == ("open", "(")
            elif text in AGGREGATIONS or (following == ("open", "(") and text in FUNCTIONS):
                usage.functions.add(text)
                pending_call = text
            elif following == ("open", "("):
                raise PromQLError(f"unknown function {text}()")
            elif text not in KEYWORDS:
                usage.series.append(text)
                calls = frozenset(r[5:] for _, r in stack if r.startswith("call:"))
                usage.enclosing.append((text, calls))
                last_series = text
                index += 1
                continue
        last_series = None
        index += 1
    if stack:
        raise PromQLError(f"unclosed {stack[-1][0]!r}")
    return usage


def _close(stack: list[tuple[str, str]], text: str) -> None:
    if not stack or _PAIRS[stack[-1][0]] != text:
        raise PromQLError(f"unpaired {text!r}")
    stack.pop()


def _values(matcher: Matcher) -> list[str] | None:
    """The label values a matcher names: one for = and !=, the words of a plain alternation
    for =~ and !~; None when it holds a pattern or a Grafana variable."""
    if "$" in matcher.value:
        return None
    if matcher.op in {"=", "!="}:
        return [matcher.value]
    if re.fullmatch(r"[A-Za-z0-9_]+(\|[A-Za-z0-9_]+)*", matcher.value):
        return matcher.value.split("|")
    return None


def problems(expr: str) -> list[str]:
    """Everything wrong in ``expr`` for our metrics (empty: nothing found)."""
    try:
        usage = read(expr)
    except PromQLError as exc:
        return [str(exc)]
    found: list[str] = []
    if not usage.series:
        found.append("reads no series")
    known = [SERIES[s] for s in usage.series if s in SERIES]
    found += [f"unknown series {s}" for s in usage.series if s not in SERIES]
    allowed = set(TARGET_LABELS).union(*(s.labels for s in known))
    found += [f"unknown label {label}" for label in sorted(usage.labels - allowed)]
    for matcher in usage.matchers:
        if matcher.series is None or matcher.series not in SERIES:
            continue
        labels = SERIES[matcher.series].labels
        if matcher.label not in labels and matcher.label not in TARGET_LABELS:
            found.append(f"{matcher.series} has no label {matcher.label}")
            continue
        bounded = labels.get(matcher.label)
        values = _values(matcher)
        if bounded is not None and values is not None:
            found += [
                f"{matcher.series}: {matcher.label} is never {v!r}"
                for v in values
                if v not in bounded
            ]
    for name, calls in usage.enclosing:
        if name not in SERIES:
            continue
        if SERIES[name].cumulative and not calls & COUNTER_FUNCTIONS:
            found.append(f"{name} is cumulative: read it through rate() or increase()")
        if not SERIES[name].cumulative and calls & COUNTER_FUNCTIONS:
            found.append(f"{name} is a gauge: rate()/increase() do not apply")
    if "histogram_quantile" in usage.functions and (
        "le" not in usage.labels or not any(s.endswith("_bucket") for s in usage.series)
    ):
        found.append("histogram_quantile() needs _bucket series aggregated by le")
    return found
