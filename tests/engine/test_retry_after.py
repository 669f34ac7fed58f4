"""A node may say when its next attempt should come (``NodeError.retry_after``, a server's
``Retry-After``): the retry waits for the longer of that and the node's own backoff, bounded
like a backoff (one hour), and parks when it is longer than ``park_after``."""

from __future__ import annotations

from typing import Any

from tests.support.clock import FakeClock
from workflow_engine.engine.executor import Executor
from workflow_engine.engine.hooks import ExecutionHooks, NodeRetrying
from workflow_engine.errors import NodeError
from workflow_engine.nodes.base import NodeContext, NodeInputs, NodeType
from workflow_engine.nodes.registry import NodeRegistry
from workflow_engine.vocabulary import ExecutionStatus


class BusyInputs(NodeInputs):
    retry_after: list[float | None]
    """What each failed attempt asks for; the attempt after the last succeeds."""


class Busy(NodeType[BusyInputs]):
    type_name = "busy"
    Inputs = BusyInputs

    async def run(self, ctx: NodeContext, inputs: BusyInputs) -> Any:
        if ctx.attempt <= len(inputs.retry_after):
            raise NodeError("busy", retry_after=inputs.retry_after[ctx.attempt - 1])
        return ctx.attempt


class Retries(ExecutionHooks):
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def on_node_retry(self, event: NodeRetrying) -> None:
        self.delays.append(event.delay)


def busy_wf(retry_after: list[float | None], backoff: float) -> dict[str, Any]:
    node = {
        "id": "b",
        "type": "busy",
        "inputs": {"retry_after": retry_after},
        "retry": {"attempts": len(retry_after) + 1, "backoff": backoff},
    }
    return {"id": "busy", "nodes": [node]}


async def test_the_retry_waits_for_the_longer_of_retry_after_and_the_backoff(
    clock: FakeClock,
) -> None:
    async with Executor(NodeRegistry([Busy]), clock=clock) as executor:
        # backoffs 1, 2, 4, 8; the node asks for 5, nothing, 0.5 and two hours
        plan = executor.compile(busy_wf([5, None, 0.5, 7200], backoff=1))
        hooks = Retries()
        outcome = await executor.run(plan, hooks=hooks)
    assert outcome.status is ExecutionStatus.COMPLETED
    assert outcome.nodes["b"].output == 5
    assert clock.sleeps == [5, 2, 4, 3600]
    assert hooks.delays == [5, 2, 4, 3600]  # node.retrying says how long it waits


async def test_a_long_retry_after_parks_the_execution(clock: FakeClock) -> None:
    async with Executor(NodeRegistry([Busy]), clock=clock, park_after=10) as executor:
        parked = await executor.run(executor.compile(busy_wf([60], backoff=1)))
    assert parked.status is ExecutionStatus.WAITING
    assert parked.resume_at == clock.now() + 60
    assert clock.sleeps == []
