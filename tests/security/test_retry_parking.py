"""Finding 5: a retry backoff longer than ``park_after`` parks the execution (no worker slot
held for the wait) and the next attempt runs when it is due, numbered on."""

from __future__ import annotations

from tests.engine.test_executor import node, wf
from tests.support.clock import FakeClock
from tests.support.nodes import Probe
from workflow_engine.engine.executor import Executor
from workflow_engine.nodes.registry import NodeRegistry
from workflow_engine.vocabulary import ExecutionStatus, NodeStatus, iso


async def test_a_long_retry_backoff_parks_and_the_next_attempt_runs_when_due(
    registry: NodeRegistry, clock: FakeClock, probe: Probe
) -> None:
    async with Executor(registry, clock=clock, park_after=10) as executor:
        plan = executor.compile(
            wf(
                [node("f", "flaky", inputs={"failures": 1}, retry={"attempts": 3, "backoff": 600})],
                [],
            )
        )
        parked = await executor.run(plan)
        assert parked.status is ExecutionStatus.WAITING
        assert parked.resume_at == clock.now() + 600
        assert clock.sleeps == []  # nothing held the run for the backoff
        waiting = parked.nodes["f"]
        assert waiting.status is NodeStatus.WAITING
        assert waiting.attempt == 1
        assert waiting.output == {
            "waitingFor": "retry",
            "retryAt": iso(clock.now() + 600),
            "error": {"message": "failure 1", "type": "node_error"},
        }
        clock.time += 600
        done = await executor.run(plan, restored=parked.nodes)
        assert done.status is ExecutionStatus.COMPLETED
        assert done.nodes["f"].attempt == 2
        assert probe.calls["f"] == 2


async def test_a_short_backoff_still_sleeps_in_the_run(
    registry: NodeRegistry, clock: FakeClock, probe: Probe
) -> None:
    async with Executor(registry, clock=clock, park_after=10) as executor:
        plan = executor.compile(
            wf(
                [node("f", "flaky", inputs={"failures": 1}, retry={"attempts": 2, "backoff": 5})],
                [],
            )
        )
        outcome = await executor.run(plan)
        assert outcome.status is ExecutionStatus.COMPLETED
        assert clock.sleeps == [5]
