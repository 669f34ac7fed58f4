"""The ``loop`` node (SPEC section 9): a body sub-graph per item, outputs in item order,
iteration results recorded as ``<loopId>[<index>].<bodyNodeId>``, restored without re-running."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.engine.test_durable_runs import parking_executor
from tests.engine.test_executor import Recorder, node, wf
from tests.support.clock import FakeClock
from tests.support.nodes import Probe
from workflow_engine.definition.validate import Limits
from workflow_engine.engine.executor import Executor
from workflow_engine.nodes.registry import NodeRegistry
from workflow_engine.vocabulary import ExecutionStatus, NodeResult, NodeStatus


def loop(
    items: Any,
    body_nodes: list[dict[str, Any]],
    body_edges: list[tuple[str, str]],
    output: str,
    node_id: str = "loop",
    **inputs: Any,
) -> dict[str, Any]:
    body = wf(body_nodes, body_edges)
    return node(
        node_id,
        "loop",
        inputs={
            "items": items,
            "body": {"nodes": body["nodes"], "edges": body["edges"], "output": output},
            **inputs,
        },
    )


async def test_outputs_keep_item_order_when_iterations_finish_out_of_order(
    executor: Executor, probe: Probe
) -> None:
    plan = executor.compile(
        wf(
            [
                loop(
                    ["a", "b", "c"],
                    [
                        node("hold", "gate", inputs={"gate": "{{ 'g' ~ index }}"}),
                        node("shape", "transform", inputs={"value": "{{ item }}{{ index }}"}),
                    ],
                    [("hold", "shape")],
                    "shape",
                    max_parallel=3,
                )
            ],
            [],
        )
    )
    task = asyncio.ensure_future(executor.run(plan))
    for gate in ("g2", "g1", "g0"):  # the last item finishes first
        async with asyncio.timeout(5):
            await probe.entered[gate].wait()
    assert probe.max_active == 3
    for gate in ("g2", "g1", "g0"):
        probe.release[gate].set()
        await asyncio.sleep(0.01)
    outcome = await task
    assert outcome.status is ExecutionStatus.COMPLETED
    assert outcome.result == {"loop": ["a0", "b1", "c2"]}
    assert probe.started == ["loop[0].hold", "loop[1].hold", "loop[2].hold"]


async def test_max_parallel_bounds_the_iterations_at_once(executor: Executor, probe: Probe) -> None:
    plan = executor.compile(
        wf(
            [
                loop(
                    [0, 1, 2, 3],
                    [node("hold", "gate", inputs={"gate": "g"})],
                    [],
                    "hold",
                    max_parallel=2,
                )
            ],
            [],
        )
    )
    task = asyncio.ensure_future(executor.run(plan))
    async with asyncio.timeout(5):
        await probe.entered["g"].wait()
    await asyncio.sleep(0.01)
    assert probe.active == 2
    probe.release["g"].set()
    outcome = await task
    assert outcome.status is ExecutionStatus.COMPLETED
    assert probe.max_active == 2


async def test_the_body_sees_item_index_inputs_vars_and_upstream_nodes(
    executor: Executor,
) -> None:
    plan = executor.compile(
        wf(
            [
                node("base", "transform", inputs={"value": 100}),
                loop(
                    "{{ inputs.xs }}",
                    [
                        node(
                            "calc",
                            "transform",
                            inputs={"value": "{{ item * 2 + index + nodes.base.output }}"},
                        ),
                        node(
                            "label",
                            "transform",
                            inputs={
                                "value": "{{ vars.tag }}-{{ nodes.calc.output }}-"
                                "{{ inputs.suffix }}"
                            },
                        ),
                    ],
                    [("calc", "label")],
                    "label",
                ),
                node("after", "transform", inputs={"value": "{{ nodes.loop.output | length }}"}),
            ],
            [("base", "loop"), ("loop", "after")],
            variables={"tag": "t"},
        )
    )
    hooks = Recorder()
    outcome = await executor.run(plan, {"xs": [1, 2, 3], "suffix": "s"}, hooks=hooks)
    assert outcome.status is ExecutionStatus.COMPLETED
    assert outcome.nodes["loop"].output == ["t-102-s", "t-105-s", "t-108-s"]
    assert outcome.result == {"after": 3}
    ended = [(n, s) for kind, n, s in hooks.events if kind == "end"]
    assert ("loop[1].calc", "completed") in ended
    assert ("loop[2].label", "completed") in ended
    assert ended.index(("loop[2].label", "completed")) < ended.index(("loop", "completed"))
    assert [p["currentNode"] for p in hooks.progress][-1] == "after"  # iterations add none


async def test_a_failing_iteration_fails_the_loop(executor: Executor, probe: Probe) -> None:
    plan = executor.compile(
        wf(
            [
                loop(
                    [0, 1, 2, 3],
                    [
                        node("step", "flaky", inputs={"failures": "{{ 1 if index == 1 else 0 }}"}),
                    ],
                    [],
                    "step",
                ),
                node("after"),
            ],
            [("loop", "after")],
        )
    )
    hooks = Recorder()
    outcome = await executor.run(plan, hooks=hooks)
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error is not None
    assert outcome.error.node_id == "loop"
    assert "iteration 1 failed at 'loop[1].step': failure 1" in outcome.error.message
    assert outcome.nodes["loop"].status is NodeStatus.FAILED
    assert outcome.nodes["after"].status is NodeStatus.CANCELLED
    assert dict(probe.calls) == {"loop[0].step": 1, "loop[1].step": 1}  # no later iteration
    assert ("end", "loop[1].step", "failed") in hooks.events


async def test_a_failing_iteration_cancels_the_ones_in_flight(
    executor: Executor, probe: Probe
) -> None:
    plan = executor.compile(
        wf(
            [
                loop(
                    [0, 1],
                    [node("hold", "gate", inputs={"gate": "g"}), node("boom", "fail")],
                    [],
                    "hold",
                    max_parallel=2,
                )
            ],
            [],
        )
    )
    hooks = Recorder()
    outcome = await executor.run(plan, hooks=hooks)
    assert outcome.status is ExecutionStatus.FAILED
    ended = {n: s for kind, n, s in hooks.events if kind == "end"}
    assert ended["loop[0].hold"] == "cancelled"
    assert ended["loop[1].hold"] == "cancelled"


async def test_on_error_continue_in_the_body_applies_first(executor: Executor) -> None:
    plan = executor.compile(
        wf(
            [
                loop(
                    [1, 2],
                    [
                        node(
                            "risky",
                            "fail",
                            inputs={"message": "no"},
                            on_error="continue",
                            default_output={"fallback": True},
                        ),
                        node("use", "transform", inputs={"value": "{{ nodes.risky.output }}"}),
                    ],
                    [("risky", "use")],
                    "use",
                )
            ],
            [],
        )
    )
    outcome = await executor.run(plan)
    assert outcome.status is ExecutionStatus.COMPLETED
    assert outcome.nodes["loop"].output == [{"fallback": True}, {"fallback": True}]


async def test_more_items_than_max_items_fail_the_node(executor: Executor, probe: Probe) -> None:
    plan = executor.compile(wf([loop([1, 2, 3], [node("c")], [], "c", max_items=2)], []))
    outcome = await executor.run(plan)
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.nodes["loop"].error == {
        "message": "node 'loop': 3 items exceed max_items (2)",
        "type": "limit",
    }
    assert not probe.calls
    plan = executor.compile(wf([loop([], [node("c")], [], "c")], []))
    assert (await executor.run(plan)).nodes["loop"].output == []


async def test_restored_iterations_are_not_run_again(executor: Executor, probe: Probe) -> None:
    plan = executor.compile(
        wf([loop([0, 1, 2], [node("a"), node("b")], [("a", "b")], "b", max_parallel=2)], [])
    )
    hooks = Recorder()
    first = await executor.run(plan, hooks=hooks)
    assert first.nodes["loop"].output == ["loop[0].b", "loop[1].b", "loop[2].b"]
    # a crash after iteration 0 finished and iteration 1's first node: only the rest runs
    recorded = {
        n: NodeResult(n, "count", None, NodeStatus.COMPLETED, output=n, attempt=1)
        for n in ("loop[0].a", "loop[0].b", "loop[1].a")
    }
    probe.calls.clear()
    resumed = await executor.run(plan, restored=recorded, prior_attempts={"loop[2].a": 1})
    assert resumed.status is ExecutionStatus.COMPLETED
    assert resumed.nodes["loop"].output == ["loop[0].b", "loop[1].b", "loop[2].b"]
    assert dict(probe.calls) == {"loop[1].b": 1, "loop[2].a": 1, "loop[2].b": 1}


async def test_nested_loops_record_nested_ids(executor: Executor, probe: Probe) -> None:
    inner = loop("{{ item }}", [node("c")], [], "c", node_id="inner")
    plan = executor.compile(wf([loop([[1, 2], [3]], [inner], [], "inner", node_id="outer")], []))
    outcome = await executor.run(plan)
    assert outcome.nodes["outer"].output == [
        ["outer[0].inner[0].c", "outer[0].inner[1].c"],
        ["outer[1].inner[0].c"],
    ]
    assert plan.is_pure("outer[1].inner[0].c") is False
    assert plan.is_pure("outer[1].nope") is False


async def test_all_loops_of_an_execution_share_one_bound_on_stored_results(
    registry: NodeRegistry, probe: Probe
) -> None:
    """Nested loops multiply (each under its own max_items): the execution's loops together
    record at most ``max_loop_results`` body results; a loop that would pass it fails before
    its first iteration."""
    inner = loop("{{ item }}", [node("c")], [], "c", node_id="inner")
    definition = wf([loop([[1, 2], [3, 4], [5]], [inner], [], "inner", node_id="outer")], [])
    # the outer loop takes 3 (one body node per item), its inner loops 2 + 2 + 1
    enough = Executor(registry, limits=Limits(max_loop_results=8))
    assert (await enough.run(enough.compile(definition))).status is ExecutionStatus.COMPLETED
    probe.calls.clear()
    short = Executor(registry, limits=Limits(max_loop_results=7))
    outcome = await short.run(short.compile(definition))
    assert outcome.status is ExecutionStatus.FAILED
    error = outcome.nodes["outer"].error
    assert error is not None
    assert error["type"] == "limit"
    assert "'outer[2].inner': its iterations would record 1 node results" in error["message"]
    assert "WFE_MAX_LOOP_RESULTS" in error["message"]
    assert "outer[2].inner[0].c" not in probe.calls  # nothing of the refused loop ran
    lonely = Executor(registry, limits=Limits(max_loop_results=2))
    outcome = await lonely.run(lonely.compile(definition))
    assert outcome.nodes["outer"].error == {
        "message": "node 'outer': its iterations would record 3 node results, more than the 2 "
        "this execution may still record (all its loops together may record 2; "
        "WFE_MAX_LOOP_RESULTS)",
        "type": "limit",
    }


async def test_a_waiting_iteration_parks_the_execution_and_resumes_there(
    registry: NodeRegistry, clock: FakeClock, probe: Probe
) -> None:
    async with parking_executor(registry, clock) as executor:
        plan = executor.compile(
            wf(
                [
                    loop(
                        [0, 1, 2],
                        [
                            node("pre"),
                            node(
                                "ask",
                                "wait_input",
                                inputs={"prompt": "item {{ item }}?"},
                            ),
                            node("post", "transform", inputs={"value": "{{ nodes.ask.output }}"}),
                        ],
                        [("pre", "ask"), ("ask", "post")],
                        "post",
                        max_parallel=3,
                    )
                ],
                [],
            )
        )
        parked = await executor.run(plan)
        assert parked.status is ExecutionStatus.WAITING
        ticket = parked.nodes["loop"].output
        assert ticket["waitingFor"] == "iterations"
        assert ticket["nodes"] == ["loop[0].ask", "loop[1].ask", "loop[2].ask"]

        # what the store would hold: the body results the hooks reported, answers added
        hooks = Recorder()
        recorded: dict[str, NodeResult] = {"loop": parked.nodes["loop"]}
        for i in range(3):
            recorded[f"loop[{i}].pre"] = NodeResult(
                f"loop[{i}].pre", "count", None, NodeStatus.COMPLETED, output="p", attempt=1
            )
            recorded[f"loop[{i}].ask"] = NodeResult(
                f"loop[{i}].ask",
                "wait_input",
                None,
                NodeStatus.WAITING,
                output={"waitingFor": "input", "answer": i * 10},
                attempt=1,
            )
        probe.calls.clear()
        done = await executor.run(plan, restored=recorded, hooks=hooks)
        assert done.status is ExecutionStatus.COMPLETED
        assert done.nodes["loop"].output == [0, 10, 20]
        assert not probe.calls  # the `pre` nodes were not run again


async def test_cancelling_the_execution_cancels_the_iterations_in_flight(
    executor: Executor, probe: Probe
) -> None:
    plan = executor.compile(
        wf(
            [
                loop(
                    [0, 1, 2],
                    [node("hold", "gate", inputs={"gate": "g"})],
                    [],
                    "hold",
                    max_parallel=2,
                )
            ],
            [],
        )
    )
    run = executor.start(plan)
    task = asyncio.ensure_future(run.wait())
    async with asyncio.timeout(5):
        await probe.entered["g"].wait()
    run.cancel()
    outcome = await task
    assert outcome.status is ExecutionStatus.CANCELLED
    assert outcome.nodes["loop"].status is NodeStatus.CANCELLED
    assert probe.active == 0
    assert probe.started == ["loop[0].hold", "loop[1].hold"]


async def test_the_loop_node_timeout_bounds_all_its_iterations(
    executor: Executor, probe: Probe
) -> None:
    definition = wf([loop([0, 1], [node("hold", "gate", inputs={"gate": "g"})], [], "hold")], [])
    definition["nodes"][0]["timeout"] = 0.05
    outcome = await executor.run(executor.compile(definition))
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.nodes["loop"].error == {
        "message": "node 'loop' timed out after 0.05s",
        "type": "timeout",
    }
    assert probe.active == 0
