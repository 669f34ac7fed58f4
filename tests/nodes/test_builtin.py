from __future__ import annotations

from typing import Any

from tests.support.clock import FakeClock
from workflow_engine.engine.executor import Executor
from workflow_engine.vocabulary import ExecutionStatus


def single(type_: str, inputs: dict[str, Any]) -> dict[str, Any]:
    return {"id": "one", "nodes": [{"id": "n", "type": type_, "inputs": inputs}]}


async def test_transform_and_output_keep_native_values(executor: Executor) -> None:
    for type_ in ("transform", "output"):
        outcome = await executor.run(
            executor.compile(single(type_, {"value": {"a": "{{ inputs.x }}"}})), {"x": [1]}
        )
        assert outcome.nodes["n"].output == {"a": [1]}


async def test_echo_outputs_its_resolved_inputs(executor: Executor) -> None:
    outcome = await executor.run(
        executor.compile(single("echo", {"a": 1, "b": "{{ inputs.b }}"})), {"b": True}
    )
    assert outcome.nodes["n"].output == {"a": 1, "b": True}


async def test_fail_fails_with_its_message(executor: Executor) -> None:
    outcome = await executor.run(
        executor.compile(single("fail", {"message": "nope: {{ inputs.why }}"})), {"why": "x"}
    )
    assert outcome.nodes["n"].error == {"message": "nope: x", "type": "fail"}


async def test_delay_waits_on_the_clock(fake_time_executor: Executor, clock: FakeClock) -> None:
    outcome = await fake_time_executor.run(
        fake_time_executor.compile(single("delay", {"seconds": 2.5}))
    )
    assert outcome.nodes["n"].output == {"delayed": 2.5}
    assert clock.sleeps == [2.5]


async def test_condition_picks_the_first_true_branch_else_default(executor: Executor) -> None:
    inputs = {
        "branches": [
            {"name": "small", "when": "inputs.n < 10"},
            {"name": "medium", "when": "inputs.n < 100"},
        ],
        "default": "large",
    }
    plan = executor.compile(single("condition", inputs))
    for n, branch in ((5, "small"), (50, "medium"), (500, "large")):
        outcome = await executor.run(plan, {"n": n})
        assert outcome.nodes["n"].output == {"branch": branch}


async def test_condition_expression_error_fails_the_node(executor: Executor) -> None:
    plan = executor.compile(
        single("condition", {"branches": [{"name": "x", "when": "inputs.n > 1"}]})
    )
    outcome = await executor.run(plan, {"n": "text"})
    assert outcome.status is ExecutionStatus.FAILED
    error = outcome.nodes["n"].error
    assert error is not None
    assert "inputs.n > 1" in error["message"]
    assert "TypeError" in error["message"]
