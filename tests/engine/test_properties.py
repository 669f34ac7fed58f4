"""Property tests over random DAGs with conditions and error branches."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.nodes import Probe, make_registry
from workflow_engine.engine.executor import Executor
from workflow_engine.engine.hooks import ExecutionHooks, NodeFinished, NodeStarted
from workflow_engine.engine.results import ExecutionOutcome
from workflow_engine.vocabulary import FINAL_NODE_STATUSES, ExecutionStatus

KINDS = ("plain", "cond_yes", "cond_no", "fail_continue", "fail_branch")


def make_node(i: int, kind: str) -> dict[str, Any]:
    node_id = f"n{i}"
    if kind == "plain":
        return {"id": node_id, "type": "count"}
    if kind.startswith("cond"):
        when = "true" if kind == "cond_yes" else "false"
        return {
            "id": node_id,
            "type": "condition",
            "inputs": {"branches": [{"name": "yes", "when": when}]},
        }
    on_error = "continue" if kind == "fail_continue" else "branch"
    return {"id": node_id, "type": "fail", "on_error": on_error}


@st.composite
def dags(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(min_value=1, max_value=12))
    kinds = [draw(st.sampled_from(KINDS)) for _ in range(n)]
    edges = []
    for target in range(1, n):
        sources = draw(st.sets(st.integers(min_value=0, max_value=target - 1), max_size=3))
        for source in sorted(sources):
            kind = kinds[source]
            choices: list[str | None] = [None]
            if kind.startswith("cond"):
                choices += ["yes", "else"]
            elif kind == "fail_branch":
                choices += ["error"]
            branch = draw(st.sampled_from(choices))
            edge: dict[str, Any] = {"source": f"n{source}", "target": f"n{target}"}
            if branch is not None:
                edge["branch"] = branch
            edges.append(edge)
    return {
        "id": "random",
        "nodes": [make_node(i, k) for i, k in enumerate(kinds)],
        "edges": edges,
        "max_parallel": draw(st.integers(min_value=1, max_value=4)),
    }


class Trace(ExecutionHooks):
    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []

    async def on_node_start(self, event: NodeStarted) -> None:
        self.log.append(("start", event.node_id))

    async def on_node_complete(self, event: NodeFinished) -> None:
        self.log.append(("end", event.result.node_id))


def edge_is_active(
    edge: dict[str, Any], definition: dict[str, Any], outcome: ExecutionOutcome
) -> bool:
    """The rule of SPEC section 2, written out independently of the scheduler."""
    source = outcome.nodes[edge["source"]]
    spec = next(n for n in definition["nodes"] if n["id"] == edge["source"])
    branch = edge.get("branch")
    if source.status == "completed":
        if branch is None:
            return True
        return spec["type"] == "condition" and source.output == {"branch": branch}
    if source.status == "failed":
        if spec.get("on_error") == "branch":
            return branch == "error"
        return spec.get("on_error") == "continue" and branch is None
    return False


async def execute(definition: dict[str, Any]) -> tuple[ExecutionOutcome, Trace, Probe]:
    probe = Probe()
    trace = Trace()
    async with Executor(make_registry(probe)) as executor:
        outcome = await executor.run(executor.compile(definition), hooks=trace)
    return outcome, trace, probe


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags())
def test_random_dags_follow_the_graph_semantics(definition: dict[str, Any]) -> None:
    outcome, trace, _ = asyncio.run(execute(definition))
    assert outcome.status is ExecutionStatus.COMPLETED
    ids = [n["id"] for n in definition["nodes"]]

    # every node ends in exactly one final status
    ends = [node for kind, node in trace.log if kind == "end"]
    assert sorted(ends) == sorted(ids)
    assert all(outcome.nodes[n].status in FINAL_NODE_STATUSES for n in ids)
    assert all(outcome.nodes[n].status != "cancelled" for n in ids)

    # no node runs before all its upstream nodes are decided
    for position, (kind, node) in enumerate(trace.log):
        if kind == "start":
            decided = {n for k, n in trace.log[:position] if k == "end"}
            upstream = {e["source"] for e in definition["edges"] if e["target"] == node}
            assert upstream <= decided, (node, upstream - decided)

    # a node runs iff it is a root or one of its incoming edges is active
    for node in ids:
        incoming = [e for e in definition["edges"] if e["target"] == node]
        should_run = not incoming or any(edge_is_active(e, definition, outcome) for e in incoming)
        ran = ("start", node) in trace.log
        assert ran == should_run, node
        assert (outcome.nodes[node].status == "skipped") == (not should_run)
