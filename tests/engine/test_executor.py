from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from tests.support.clock import FakeClock
from tests.support.nodes import Probe
from workflow_engine.engine.executor import Executor
from workflow_engine.engine.hooks import (
    ExecutionHooks,
    NodeFinished,
    NodeRetrying,
    NodeStarted,
    ProgressChanged,
)
from workflow_engine.errors import InputValidationError
from workflow_engine.nodes.base import NodeContext, NodeInputs, NodeType
from workflow_engine.vocabulary import ExecutionStatus, NodeResult, NodeStatus


def wf(
    nodes: list[dict[str, Any]], edges: list[tuple[str, str] | tuple[str, str, str]], **extra: Any
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


def node(node_id: str, type_: str = "count", **fields: Any) -> dict[str, Any]:
    return {"id": node_id, "type": type_, **fields}


def statuses(outcome: Any) -> dict[str, str]:
    return {n: str(r.status) for n, r in outcome.nodes.items()}


class Recorder(ExecutionHooks):
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.progress: list[dict[str, Any]] = []
        self.retries: list[NodeRetrying] = []

    async def on_node_start(self, event: NodeStarted) -> None:
        self.events.append(("start", event.node_id, "running"))

    async def on_node_retry(self, event: NodeRetrying) -> None:
        self.retries.append(event)

    async def on_node_complete(self, event: NodeFinished) -> None:
        self.events.append(("end", event.result.node_id, str(event.result.status)))

    async def on_progress(self, event: ProgressChanged) -> None:
        self.progress.append(event.progress.to_dict())


async def test_roots_start_together(executor: Executor, probe: Probe) -> None:
    plan = executor.compile(
        wf([node("a", "gate"), node("b", "gate"), node("j")], [("a", "j"), ("b", "j")])
    )
    run = executor.start(plan)
    task = asyncio.ensure_future(run.wait())
    async with asyncio.timeout(5):  # both roots are inside their gates at the same time
        await probe.entered["a"].wait()
        await probe.entered["b"].wait()
    assert probe.active == 2
    probe.release["a"].set()
    probe.release["b"].set()
    outcome = await task
    assert outcome.status is ExecutionStatus.COMPLETED
    assert probe.started == ["a", "b", "j"]


async def test_and_join_waits_for_every_incoming_edge(executor: Executor, probe: Probe) -> None:
    plan = executor.compile(
        wf([node("a", "gate"), node("b", "gate"), node("j")], [("a", "j"), ("b", "j")])
    )
    task = asyncio.ensure_future(executor.run(plan))
    async with asyncio.timeout(5):
        await probe.entered["a"].wait()
    probe.release["a"].set()
    for _ in range(20):  # give the join every chance to start early
        await asyncio.sleep(0)
    assert "j" not in probe.started
    probe.release["b"].set()
    outcome = await task
    assert probe.started[-1] == "j"
    assert probe.calls["j"] == 1
    assert outcome.nodes["j"].status is NodeStatus.COMPLETED


def branching(branch_value: int) -> dict[str, Any]:
    return wf(
        [
            node(
                "c", "condition", inputs={"branches": [{"name": "big", "when": "inputs.n > 100"}]}
            ),
            node("vip", "transform", inputs={"value": "vip"}),
            node("vip2", "transform", inputs={"value": "{{ nodes.vip.output }}!"}),
            node("std", "transform", inputs={"value": "std"}),
            node(
                "out",
                "output",
                inputs={
                    "value": "{{ nodes.vip2.output if nodes.vip2.status == 'completed' "
                    "else nodes.std.output }}"
                },
            ),
        ],
        [
            ("c", "vip", "big"),
            ("vip", "vip2"),
            ("c", "std", "else"),
            ("vip2", "out"),
            ("std", "out"),
        ],
        input_schema={"type": "object", "required": ["n"]},
    )


@pytest.mark.parametrize(
    ("n", "result", "skipped"), [(150, "vip!", {"std"}), (5, "std", {"vip", "vip2"})]
)
async def test_branch_selection_skip_propagation_and_rejoin(
    executor: Executor, n: int, result: str, skipped: set[str]
) -> None:
    outcome = await executor.run(executor.compile(branching(n)), {"n": n})
    assert outcome.status is ExecutionStatus.COMPLETED
    assert outcome.result == result
    assert {k for k, v in statuses(outcome).items() if v == "skipped"} == skipped
    assert outcome.nodes["c"].output == {"branch": "big" if n > 100 else "else"}
    assert outcome.nodes["out"].status is NodeStatus.COMPLETED


async def test_skip_propagates_through_a_chain_and_a_join_of_only_skipped_edges(
    executor: Executor,
) -> None:
    plan = executor.compile(
        wf(
            [
                node("c", "condition", inputs={"branches": [{"name": "yes", "when": "false"}]}),
                node("a"),
                node("b"),
                node("d"),
                node("e"),
                node("other"),
            ],
            [
                ("c", "a", "yes"),
                ("a", "b"),
                ("b", "d"),
                ("c", "e", "yes"),
                ("e", "d"),
                ("c", "other", "else"),
            ],
        )
    )
    outcome = await executor.run(plan)
    assert statuses(outcome) == {
        "c": "completed",
        "a": "skipped",
        "b": "skipped",
        "d": "skipped",
        "e": "skipped",
        "other": "completed",
    }
    assert outcome.result == {"other": "other"}


async def test_condition_edge_without_branch_is_always_taken(executor: Executor) -> None:
    plan = executor.compile(
        wf(
            [
                node("c", "condition", inputs={"branches": [{"name": "yes", "when": "false"}]}),
                node("always"),
            ],
            [("c", "always")],
        )
    )
    assert statuses(await executor.run(plan))["always"] == "completed"


async def test_max_parallel_bounds_concurrency(executor: Executor, probe: Probe) -> None:
    leaves = [node(f"l{i}", "gate", inputs={"gate": "all"}) for i in range(10)]
    plan = executor.compile(
        wf([node("root"), *leaves], [("root", f"l{i}") for i in range(10)], max_parallel=3)
    )
    task = asyncio.ensure_future(executor.run(plan))
    async with asyncio.timeout(5):
        await probe.entered["all"].wait()
    for _ in range(20):
        await asyncio.sleep(0)
    assert probe.active == 3
    probe.release["all"].set()
    outcome = await task
    assert outcome.status is ExecutionStatus.COMPLETED
    assert probe.max_active == 3


async def test_max_parallel_override_per_run(executor: Executor, probe: Probe) -> None:
    """All six must be inside their gates at once: none is released before every one entered."""
    plan = executor.compile(wf([node(f"l{i}", "gate") for i in range(6)], [], max_parallel=2))
    task = asyncio.ensure_future(executor.run(plan, max_parallel=6))
    async with asyncio.timeout(5):
        for i in range(6):
            await probe.entered[f"l{i}"].wait()
    for i in range(6):
        probe.release[f"l{i}"].set()
    await task
    assert probe.max_active == 6


async def test_node_timeout_fails_the_node(executor: Executor) -> None:
    plan = executor.compile(wf([node("slow", "gate", timeout=0.05)], []))
    outcome = await executor.run(plan)
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.nodes["slow"].error == {
        "message": "node 'slow' timed out after 0.05s",
        "type": "timeout",
    }
    assert outcome.error_dict == {
        "message": "node 'slow' timed out after 0.05s",
        "nodeId": "slow",
        "type": "timeout",
    }


async def test_retry_with_exponential_capped_backoff(
    fake_time_executor: Executor, clock: FakeClock, probe: Probe
) -> None:
    plan = fake_time_executor.compile(
        wf(
            [
                node(
                    "f",
                    "flaky",
                    inputs={"failures": 4},
                    retry={"attempts": 5, "backoff": 0.5, "max_backoff": 1.5},
                )
            ],
            [],
        )
    )
    hooks = Recorder()
    outcome = await fake_time_executor.run(plan, hooks=hooks)
    assert outcome.status is ExecutionStatus.COMPLETED
    assert clock.sleeps == [0.5, 1.0, 1.5, 1.5]
    assert outcome.nodes["f"].attempt == 5
    assert outcome.nodes["f"].output == {"calls": 5, "attempt": 5}
    assert [(r.attempt, r.delay, r.error["message"]) for r in hooks.retries] == [
        (1, 0.5, "failure 1"),
        (2, 1.0, "failure 2"),
        (3, 1.5, "failure 3"),
        (4, 1.5, "failure 4"),
    ]


async def test_retries_exhausted_fail_the_node(
    fake_time_executor: Executor, clock: FakeClock
) -> None:
    plan = fake_time_executor.compile(
        wf([node("f", "flaky", inputs={"failures": 9}, retry={"attempts": 3, "backoff": 2})], [])
    )
    outcome = await fake_time_executor.run(plan)
    assert outcome.status is ExecutionStatus.FAILED
    assert clock.sleeps == [2, 4]
    assert outcome.nodes["f"].attempt == 3
    assert outcome.nodes["f"].error == {"message": "failure 3", "type": "node_error"}


async def test_non_retryable_errors_are_not_retried(
    fake_time_executor: Executor, probe: Probe
) -> None:
    plan = fake_time_executor.compile(
        wf(
            [node("f", "flaky", inputs={"failures": 1, "retryable": False}, retry={"attempts": 3})],
            [],
        )
    )
    outcome = await fake_time_executor.run(plan)
    assert outcome.status is ExecutionStatus.FAILED
    assert probe.calls["f"] == 1


async def test_on_error_fail_stops_the_execution_and_cancels_the_rest(
    executor: Executor, probe: Probe
) -> None:
    plan = executor.compile(
        wf(
            [
                node("slow", "gate"),
                node("boom", "fail", inputs={"message": "kaput"}),
                node("after"),
                node("later"),
            ],
            [("boom", "after"), ("slow", "later")],
        )
    )
    outcome = await executor.run(plan)
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error_dict == {"message": "kaput", "nodeId": "boom", "type": "fail"}
    assert statuses(outcome) == {
        "slow": "cancelled",
        "boom": "failed",
        "after": "cancelled",
        "later": "cancelled",
    }
    assert "after" not in probe.started
    assert outcome.result is None


async def test_on_error_continue_keeps_edges_active_with_default_output(executor: Executor) -> None:
    plan = executor.compile(
        wf(
            [
                node("boom", "fail", on_error="continue", default_output={"fallback": True}),
                node(
                    "next",
                    "transform",
                    inputs={
                        "value": "{{ [nodes.boom.output, nodes.boom.status, "
                        "nodes.boom.error.message] }}"
                    },
                ),
            ],
            [("boom", "next")],
        )
    )
    outcome = await executor.run(plan)
    assert outcome.status is ExecutionStatus.COMPLETED
    assert outcome.result == {"next": [{"fallback": True}, "failed", "failed"]}
    assert outcome.nodes["boom"].status is NodeStatus.FAILED


@pytest.mark.parametrize(
    ("fails", "taken", "skipped"), [(True, "handler", "happy"), (False, "happy", "handler")]
)
async def test_on_error_branch_takes_only_error_edges_on_failure(
    executor: Executor, fails: bool, taken: str, skipped: str
) -> None:
    plan = executor.compile(
        wf(
            [
                node("risky", "flaky", inputs={"failures": 1 if fails else 0}, on_error="branch"),
                node("happy"),
                node("handler"),
            ],
            [("risky", "happy"), ("risky", "handler", "error")],
        )
    )
    outcome = await executor.run(plan)
    assert outcome.status is ExecutionStatus.COMPLETED
    assert statuses(outcome)[taken] == "completed"
    assert statuses(outcome)[skipped] == "skipped"


async def test_expression_failure_names_node_path_and_expression(executor: Executor) -> None:
    plan = executor.compile(
        wf([node("t", "transform", inputs={"value": {"deep": "{{ inputs.nope.x }}"}})], [])
    )
    outcome = await executor.run(plan)
    assert outcome.status is ExecutionStatus.FAILED
    error = outcome.nodes["t"].error
    assert error is not None
    assert error["type"] == "expression"
    assert error["message"].startswith(
        "node 't': input 'value.deep': expression '{{ inputs.nope.x }}' failed"
    )


async def test_rendered_inputs_are_validated_by_the_type_model(executor: Executor) -> None:
    plan = executor.compile(wf([node("d", "delay", inputs={"seconds": "{{ inputs.s }}"})], []))
    outcome = await executor.run(plan, {"s": "soon"})
    error = outcome.nodes["d"].error
    assert error is not None
    assert error["type"] == "invalid_input"
    assert "inputs.seconds" in error["message"]


async def test_inputs_are_checked_against_input_schema_before_anything_runs(
    executor: Executor, probe: Probe
) -> None:
    plan = executor.compile(branching(1))
    with pytest.raises(InputValidationError) as info:
        await executor.run(plan, {"m": 1})
    assert [(p.path, p.message) for p in info.value.problems] == [
        ("inputs", "'n' is a required property")
    ]
    assert probe.started == []


async def test_result_rule(executor: Executor) -> None:
    one = wf(
        [node("a"), node("o", "output", inputs={"value": [1, "{{ nodes.a.output }}"]})],
        [("a", "o")],
    )
    assert (await executor.run(executor.compile(one))).result == [1, "a"]
    two = wf(
        [node("o1", "output", inputs={"value": 1}), node("o2", "output", inputs={"value": 2})], []
    )
    assert (await executor.run(executor.compile(two))).result == {"o1": 1, "o2": 2}
    sinks = wf([node("a"), node("b"), node("c")], [("a", "b")])
    assert (await executor.run(executor.compile(sinks))).result == {"b": "b", "c": "c"}


async def test_cancel_stops_in_flight_nodes_and_nothing_runs_after(
    executor: Executor, probe: Probe
) -> None:
    plan = executor.compile(wf([node("a", "gate"), node("b")], [("a", "b")]))
    hooks = Recorder()
    run = executor.start(plan, hooks=hooks)
    task = asyncio.ensure_future(run.wait())
    async with asyncio.timeout(5):
        await probe.entered["a"].wait()
    run.cancel("user pressed stop")
    outcome = await task
    assert outcome.status is ExecutionStatus.CANCELLED
    assert outcome.error_dict == {
        "message": "user pressed stop",
        "nodeId": None,
        "type": "cancelled",
    }
    assert statuses(outcome) == {"a": "cancelled", "b": "cancelled"}
    assert probe.active == 0
    assert "b" not in probe.started
    assert ("end", "a", "cancelled") in hooks.events


async def test_cancelling_the_awaiting_task_cancels_node_tasks(
    executor: Executor, probe: Probe
) -> None:
    plan = executor.compile(wf([node("a", "gate"), node("b", "gate")], []))
    run = executor.start(plan)
    task = asyncio.ensure_future(run.wait())
    async with asyncio.timeout(5):
        await probe.entered["a"].wait()
        await probe.entered["b"].wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert probe.active == 0
    assert {r.status for r in run.results.values()} == {NodeStatus.CANCELLED}


async def test_execution_timeout(executor: Executor) -> None:
    plan = executor.compile(wf([node("a", "gate")], []))
    outcome = await executor.run(plan, timeout=0.05)
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error_dict == {
        "message": "execution timed out after 0.05s",
        "nodeId": "a",
        "type": "timeout",
    }
    assert outcome.nodes["a"].status is NodeStatus.CANCELLED


async def test_hooks_order_and_progress(executor: Executor) -> None:
    plan = executor.compile(branching(5))
    hooks = Recorder()
    await executor.run(plan, {"n": 5}, hooks=hooks)
    assert hooks.events == [
        ("start", "c", "running"),
        ("end", "c", "completed"),
        ("end", "vip", "skipped"),
        ("end", "vip2", "skipped"),
        ("start", "std", "running"),
        ("end", "std", "completed"),
        ("start", "out", "running"),
        ("end", "out", "completed"),
    ]
    assert [p["percentage"] for p in hooks.progress] == [60, 80, 100]
    assert hooks.progress[-1] == {
        "currentNode": "out",
        "completedNodes": ["c", "vip", "vip2", "std", "out"],
        "totalNodes": 5,
        "percentage": 100,
    }


async def test_node_results_carry_inputs_timing_and_attempt(executor: Executor) -> None:
    plan = executor.compile(
        wf([node("e", "echo", name="Echo it", inputs={"x": "{{ inputs.v }}"})], [])
    )
    outcome = await executor.run(plan, {"v": [1]})
    record = outcome.nodes["e"].to_dict()
    assert record["nodeId"] == "e"
    assert record["nodeType"] == "echo"
    assert record["name"] == "Echo it"
    assert record["input"] == {"x": [1]}
    assert record["output"] == {"x": [1]}
    assert record["attempt"] == 1
    assert record["startedAt"].endswith("Z")
    assert record["durationMs"] >= 0


async def test_restored_nodes_are_not_run_again(executor: Executor, probe: Probe) -> None:
    """Resume from a checkpoint: completed nodes keep their outputs, only the rest runs."""
    plan = executor.compile(
        wf(
            [
                node("a"),
                node("b", "transform", inputs={"value": "{{ nodes.a.output }}+b"}),
                node("c", "transform", inputs={"value": "{{ nodes.b.output }}+c"}),
            ],
            [("a", "b"), ("b", "c")],
        )
    )
    done = NodeResult("a", "count", None, NodeStatus.COMPLETED, output="from-checkpoint", attempt=1)
    outcome = await executor.run(plan, restored={"a": done})
    assert probe.calls["a"] == 0
    assert outcome.result == {"c": "from-checkpoint+b+c"}
    assert outcome.progress.percentage == 100


async def test_execution_variables_are_visible(executor: Executor) -> None:
    plan = executor.compile(
        wf(
            [
                node(
                    "o",
                    "output",
                    inputs={
                        "value": "{{ [execution.id, execution.workflow_id, execution.attempt, "
                        "execution.metadata.k] }}"
                    },
                )
            ],
            [],
        )
    )
    outcome = await executor.run(plan, execution_id="exec_x", attempt=2, metadata={"k": "v"})
    assert outcome.result == ["exec_x", "w", 2, "v"]


async def test_a_node_that_ignores_cancellation_is_abandoned(registry: Any, probe: Probe) -> None:
    async with Executor(registry, cancel_grace=0.05) as executor:
        plan = executor.compile(wf([node("s", "stubborn")], []))
        run = executor.start(plan)
        task = asyncio.ensure_future(run.wait())
        async with asyncio.timeout(5):
            await probe.entered["s"].wait()
        run.cancel()
        async with asyncio.timeout(5):  # bounded by the grace, not by the node
            outcome = await task
        assert outcome.status is ExecutionStatus.CANCELLED
        assert outcome.nodes["s"].status is NodeStatus.CANCELLED
        probe.release["s"].set()  # the node finally gives up: the outcome does not change
        for _ in range(10):
            await asyncio.sleep(0)
        assert outcome.nodes["s"].status is NodeStatus.CANCELLED
        assert outcome.nodes["s"].error is None


async def test_release_stops_the_run_and_says_it_was_released(
    executor: Executor, probe: Probe
) -> None:
    plan = executor.compile(wf([node("a", "gate"), node("b")], [("a", "b")]))
    run = executor.start(plan)
    task = asyncio.ensure_future(run.wait())
    async with asyncio.timeout(5):
        await probe.entered["a"].wait()
    run.release()
    outcome = await task
    assert outcome.released
    assert outcome.status is ExecutionStatus.CANCELLED
    assert statuses(outcome) == {"a": "cancelled", "b": "cancelled"}
    assert probe.active == 0
    run.release()  # after the end: nothing changes
    assert (await run.wait()).released


async def test_a_cancel_before_a_release_wins(executor: Executor, probe: Probe) -> None:
    plan = executor.compile(wf([node("a", "gate")], []))
    run = executor.start(plan)
    task = asyncio.ensure_future(run.wait())
    async with asyncio.timeout(5):
        await probe.entered["a"].wait()
    run.cancel("user pressed stop")
    run.release()
    outcome = await task
    assert not outcome.released
    assert outcome.error_dict == {
        "message": "user pressed stop",
        "nodeId": None,
        "type": "cancelled",
    }


async def test_a_failure_before_a_release_wins(executor: Executor, probe: Probe) -> None:
    """A release that comes once a node's failure is stopping the run: the run failed."""
    plan = executor.compile(
        wf([node("g", "gate"), node("f", "fail", inputs={"message": "kaput"})], [])
    )
    runs: list[Any] = []

    class ReleaseOnFailure(ExecutionHooks):
        async def on_node_complete(self, event: NodeFinished) -> None:
            if event.result.status is NodeStatus.FAILED:
                runs[0].release()

    runs.append(executor.start(plan, hooks=ReleaseOnFailure()))
    outcome = await runs[0].wait()
    assert outcome.status is ExecutionStatus.FAILED
    assert not outcome.released
    assert outcome.error_dict == {"message": "kaput", "nodeId": "f", "type": "fail"}


async def test_an_output_without_a_json_form_fails_the_node(executor: Executor) -> None:
    class Opaque(BaseModel):
        model_config = ConfigDict(arbitrary_types_allowed=True)
        thing: object

    @executor.registry.register
    class OpaqueNode(NodeType[NodeInputs]):
        type_name = "opaque"
        Inputs = NodeInputs

        async def run(self, ctx: NodeContext, inputs: NodeInputs) -> Any:
            return Opaque(thing=object())

    outcome = await executor.run(executor.compile(wf([node("o", "opaque")], [])))
    assert outcome.status is ExecutionStatus.FAILED
    error = outcome.nodes["o"].error
    assert error is not None
    assert error["type"] == "exception"
    assert "PydanticSerializationError" in error["message"]
    assert outcome.error is not None
    assert outcome.error.node_id == "o"
