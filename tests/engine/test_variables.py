"""Execution variables (SPEC section 9): a node's ``vars`` are the defaults overlaid with the
writes of the ``set_variables`` nodes upstream of it, in the plan's topological order."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from tests.support.nodes import Probe
from workflow_engine.engine.executor import Executor
from workflow_engine.engine.hooks import ExecutionHooks, NodeFinished
from workflow_engine.vocabulary import ExecutionStatus, NodeResult, NodeStatus


def wf(
    nodes: list[dict[str, Any]],
    edges: list[tuple[str, str] | tuple[str, str, str]],
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": "w",
        "nodes": nodes,
        "edges": [
            {"source": e[0], "target": e[1], **({"branch": e[2]} if len(e) == 3 else {})}
            for e in edges
        ],
        **extra,
    }


def setter(node_id: str, **values: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "set_variables", "inputs": {"values": values}}


def reader(node_id: str) -> dict[str, Any]:
    return {"id": node_id, "type": "transform", "inputs": {"value": "{{ vars }}"}}


def outputs(outcome: Any) -> dict[str, Any]:
    return {n: r.output for n, r in outcome.nodes.items()}


async def test_a_chain_of_setters_and_the_output_of_each(executor: Executor) -> None:
    plan = executor.compile(
        wf(
            [
                setter("s1", count="{{ vars.count + 1 }}"),
                setter("s2", count="{{ vars.count * 10 }}", tag="done"),
                reader("r"),
            ],
            [("s1", "s2"), ("s2", "r")],
            variables={"count": 1, "tag": None, "untouched": [1]},
        )
    )
    outcome = await executor.run(plan)
    assert outcome.status is ExecutionStatus.COMPLETED
    assert outputs(outcome) == {
        "s1": {"count": 2, "tag": None, "untouched": [1]},  # the variables after its update
        "s2": {"count": 20, "tag": "done", "untouched": [1]},
        "r": {"count": 20, "tag": "done", "untouched": [1]},
    }
    assert outcome.variables == {"count": 20, "tag": "done", "untouched": [1]}
    assert outcome.to_dict(nodes=False)["variables"] == outcome.variables


async def test_a_reader_sees_only_the_setters_upstream_of_it(executor: Executor) -> None:
    """``before`` runs after ``s`` (it waits on a slow node) but is not downstream of it."""
    plan = executor.compile(
        wf(
            [
                setter("s", x="set"),
                {"id": "slow", "type": "delay", "inputs": {"seconds": 0.05}},
                reader("before"),
                reader("after"),
            ],
            [("slow", "before"), ("s", "after")],
            variables={"x": "default"},
        )
    )
    outcome = await executor.run(plan)
    assert outcome.nodes["before"].output == {"x": "default"}
    assert outcome.nodes["after"].output == {"x": "set"}
    assert outcome.variables == {"x": "set"}


async def test_parallel_branches_do_not_see_each_others_writes(executor: Executor) -> None:
    plan = executor.compile(
        wf(
            [
                setter("root", a=0, b=0),
                setter("left", a=1, both="left"),
                setter("right", b=2, both="right"),
                reader("left_reader"),
                reader("right_reader"),
                reader("join"),
            ],
            [
                ("root", "left"),
                ("root", "right"),
                ("left", "left_reader"),
                ("right", "right_reader"),
                ("left_reader", "join"),
                ("right_reader", "join"),
            ],
            variables={"a": None, "b": None, "both": None},
        )
    )
    outcome = await executor.run(plan)
    assert outcome.nodes["left_reader"].output == {"a": 1, "b": 0, "both": "left"}
    assert outcome.nodes["right_reader"].output == {"a": 0, "b": 2, "both": "right"}
    # the join sees both; of the two writes of `both`, the later setter in topological order
    # (definition order between parallel nodes) wins, whichever finished last
    assert plan.setters == ("root", "left", "right")
    assert outcome.nodes["join"].output == {"a": 1, "b": 2, "both": "right"}
    assert outcome.variables == {"a": 1, "b": 2, "both": "right"}


class _Finished(ExecutionHooks):
    def __init__(self) -> None:
        self.done: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)

    async def on_node_complete(self, event: NodeFinished) -> None:
        self.done[event.result.node_id].set()


async def test_the_order_of_parallel_writes_does_not_depend_on_timing(
    executor: Executor, probe: Probe
) -> None:
    """``late`` comes after ``early`` in the plan's order but finishes first: ``late`` still
    wins. The order is the definition's, not the clock's."""
    plan = executor.compile(
        wf(
            [
                {"id": "g1", "type": "gate"},
                {"id": "g2", "type": "gate"},
                setter("early", v="early"),
                setter("late", v="late"),
                reader("join"),
            ],
            [("g1", "early"), ("g2", "late"), ("early", "join"), ("late", "join")],
            variables={"v": None},
        )
    )
    assert plan.setters == ("early", "late")
    hooks = _Finished()
    run = executor.start(plan, hooks=hooks)
    task = asyncio.ensure_future(run.wait())
    async with asyncio.timeout(5):
        probe.release["g2"].set()
        await hooks.done["late"].wait()
        probe.release["g1"].set()
        outcome = await task
    assert outcome.progress.completed_nodes[-2:] == ("early", "join")
    assert outcome.nodes["join"].output == {"v": "late"}
    assert outcome.variables == {"v": "late"}


async def test_a_skipped_or_failed_setter_writes_nothing(executor: Executor) -> None:
    plan = executor.compile(
        wf(
            [
                {
                    "id": "c",
                    "type": "condition",
                    "inputs": {"branches": [{"name": "yes", "when": "vars.flag"}]},
                },
                setter("taken", flag="{{ vars.flag }}", seen="else"),
                setter("not_taken", seen="yes"),
                {**setter("broken", seen="{{ 1 / 0 }}"), "on_error": "continue"},
                reader("r"),
            ],
            [
                ("c", "not_taken", "yes"),
                ("c", "taken", "else"),
                ("taken", "broken"),
                ("broken", "r"),
                ("not_taken", "r"),
            ],
            variables={"flag": False, "seen": None},
        )
    )
    outcome = await executor.run(plan)
    assert outcome.nodes["not_taken"].status is NodeStatus.SKIPPED
    assert outcome.nodes["broken"].status is NodeStatus.FAILED
    assert outcome.nodes["r"].output == {"flag": False, "seen": "else"}
    assert outcome.variables == {"flag": False, "seen": "else"}


async def test_a_condition_reads_the_variables_of_its_setters(executor: Executor) -> None:
    plan = executor.compile(
        wf(
            [
                setter("s", n="{{ inputs.n }}"),
                {
                    "id": "c",
                    "type": "condition",
                    "inputs": {"branches": [{"name": "big", "when": "vars.n > 10"}]},
                },
                {"id": "big", "type": "transform", "inputs": {"value": "big"}},
                {"id": "small", "type": "transform", "inputs": {"value": "small"}},
            ],
            [("s", "c"), ("c", "big", "big"), ("c", "small", "else")],
            variables={"n": 0},
        )
    )
    assert (await executor.run(plan, {"n": 50})).result == {"big": "big"}
    assert (await executor.run(plan, {"n": 5})).result == {"small": "small"}


async def test_a_resumed_run_sees_the_writes_of_restored_setters(
    executor: Executor, probe: Probe
) -> None:
    """The setter ran before the crash: its restored result (its output) is all the resumed
    run needs; it does not run again."""
    plan = executor.compile(
        wf(
            [
                {"id": "a", "type": "count"},
                setter("s", total="{{ vars.total + 1 }}"),
                setter("t", label="{{ vars.total }} items"),
                reader("r"),
            ],
            [("a", "s"), ("s", "t"), ("t", "r")],
            variables={"total": 0, "label": ""},
        )
    )
    first = await executor.run(plan)
    assert first.variables == {"total": 1, "label": "1 items"}
    restored = {
        "a": first.nodes["a"],
        # (as a checkpoint has it: its output says what it wrote)
        "s": NodeResult.from_dict({**first.nodes["s"].to_dict(), "output": {"total": 41}}),
    }
    calls = probe.calls["a"]
    resumed = await executor.run(plan, restored=restored)
    assert probe.calls["a"] == calls
    assert resumed.nodes["s"].output == {"total": 41}
    assert resumed.nodes["r"].output == {"total": 41, "label": "41 items"}
    assert resumed.variables == {"total": 41, "label": "41 items"}


async def test_without_variables_nothing_is_derived(executor: Executor) -> None:
    plan = executor.compile(
        wf(
            [{"id": "a", "type": "transform", "inputs": {"value": "{{ vars }}"}}],
            [],
        )
    )
    assert plan.setters == ()
    assert all(not p.upstream_setters for p in plan.nodes.values())
    outcome = await executor.run(plan)
    assert outcome.result == {"a": {}}
    assert outcome.variables is None
    assert "variables" not in outcome.to_dict()


async def test_declared_variables_without_setters_are_the_defaults(executor: Executor) -> None:
    plan = executor.compile(wf([reader("r")], [], variables={"k": [1, 2]}))
    outcome = await executor.run(plan)
    assert outcome.result == {"r": {"k": [1, 2]}}
    assert outcome.variables == {"k": [1, 2]}
