"""Recursive edges (``edges[].recursive``: FastGPT's, SPEC section 13): an active one runs its
target again, and the nodes after it, within the definition's ``max_run_times``."""

from __future__ import annotations

from typing import Any

import pytest

from workflow_engine.engine.executor import Executor
from workflow_engine.engine.hooks import ExecutionHooks, NodeStarted
from workflow_engine.errors import DefinitionError
from workflow_engine.vocabulary import ExecutionStatus, NodeStatus


def counting(limit: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": "count",
        "variables": {"n": 0},
        "nodes": [
            {"id": "inc", "type": "set_variables", "inputs": {"values": {"n": "{{ vars.n + 1 }}"}}},
            {
                "id": "check",
                "type": "condition",
                "inputs": {"branches": [{"name": "again", "when": f"vars.n < {limit}"}]},
            },
            {"id": "done", "type": "output", "inputs": {"value": "{{ vars.n }}"}},
        ],
        "edges": [
            {"source": "inc", "target": "check"},
            {"source": "check", "target": "inc", "branch": "again", "recursive": True},
            {"source": "check", "target": "done", "branch": "else"},
        ],
        **extra,
    }


class Starts(ExecutionHooks):
    def __init__(self) -> None:
        self.started: list[str] = []

    async def on_node_start(self, event: NodeStarted) -> None:
        self.started.append(event.node_id)


async def test_an_active_recursive_edge_runs_the_cycle_again(executor: Executor) -> None:
    hooks = Starts()
    outcome = await executor.run(executor.compile(counting(3)), hooks=hooks)
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    assert outcome.result == 3
    assert hooks.started == ["inc", "check"] * 3 + ["done"]
    assert outcome.nodes["done"].status is NodeStatus.COMPLETED


async def test_max_run_times_bounds_a_cycle(executor: Executor) -> None:
    hooks = Starts()
    outcome = await executor.run(executor.compile(counting(1000, max_run_times=7)), hooks=hooks)
    assert outcome.status is ExecutionStatus.COMPLETED
    assert len(hooks.started) == 7  # each run takes one: nothing more starts
    assert outcome.nodes["done"].status is not NodeStatus.COMPLETED


async def test_a_cycle_not_marked_recursive_is_still_an_error(executor: Executor) -> None:
    plain = counting(3)
    del plain["edges"][1]["recursive"]
    with pytest.raises(DefinitionError) as refused:
        executor.compile(plain)
    assert [p.code for p in refused.value.problems] == ["cycle"]
