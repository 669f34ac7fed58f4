"""The executor's side of durability: it waits for the checkpoint before dependants start,
continues attempt numbers after a crash, and parks (``waiting``) instead of holding a run."""

from __future__ import annotations

import asyncio

from tests.engine.test_executor import node, wf
from tests.support.clock import FakeClock
from tests.support.nodes import Probe
from workflow_engine.engine.executor import Executor
from workflow_engine.engine.hooks import ExecutionHooks, NodeFinished, NodeStarted
from workflow_engine.nodes.registry import NodeRegistry
from workflow_engine.vocabulary import ExecutionStatus, NodeStatus


class SlowCheckpoint(ExecutionHooks):
    """A checkpoint that completes only when the test says so."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.finished: list[str] = []
        self.asked = asyncio.Event()
        self.written = asyncio.Event()

    async def on_node_start(self, event: NodeStarted) -> None:
        self.started.append(event.node_id)

    async def on_node_complete(self, event: NodeFinished) -> None:
        self.finished.append(event.result.node_id)

    async def checkpoint(self) -> None:
        self.asked.set()
        await self.written.wait()


async def test_dependants_start_only_after_the_checkpoint(executor: Executor) -> None:
    plan = executor.compile(wf([node("a"), node("b")], [("a", "b")]))
    hooks = SlowCheckpoint()
    task = asyncio.ensure_future(executor.run(plan, hooks=hooks))
    async with asyncio.timeout(5):
        await hooks.asked.wait()
    for _ in range(20):  # let every ready task run: b must still not start
        await asyncio.sleep(0)
    assert hooks.finished == ["a"]
    assert hooks.started == ["a"]
    hooks.written.set()
    outcome = await task
    assert outcome.status is ExecutionStatus.COMPLETED
    assert hooks.started == ["a", "b"]


async def test_an_interrupted_node_goes_on_with_its_attempt_numbers(
    executor: Executor, probe: Probe
) -> None:
    plan = executor.compile(
        wf(
            [
                node("retried", "flaky", inputs={"failures": 0}, retry={"attempts": 3}),
                node("once", "flaky", inputs={"failures": 0}),
            ],
            [],
        )
    )
    outcome = await executor.run(plan, prior_attempts={"retried": 1, "once": 1})
    assert outcome.nodes["retried"].attempt == 2
    assert outcome.nodes["once"].attempt == 2  # its single attempt was cut short: one more
    assert probe.calls == {"retried": 1, "once": 1}


async def test_an_interrupted_node_keeps_only_its_remaining_retries(
    executor: Executor, probe: Probe
) -> None:
    plan = executor.compile(
        wf([node("f", "flaky", inputs={"failures": 5}, retry={"attempts": 3, "backoff": 0})], [])
    )
    outcome = await executor.run(plan, prior_attempts={"f": 2})
    assert outcome.status is ExecutionStatus.FAILED
    assert probe.calls["f"] == 1  # attempt 3 of 3
    assert outcome.nodes["f"].attempt == 3


def parking_executor(registry: NodeRegistry, clock: FakeClock) -> Executor:
    return Executor(registry, clock=clock, park_after=10)


async def test_a_long_delay_parks_while_other_branches_run(
    registry: NodeRegistry, clock: FakeClock, probe: Probe
) -> None:
    async with parking_executor(registry, clock) as executor:
        plan = executor.compile(
            wf(
                [
                    node("wait", "delay", inputs={"seconds": 60}),
                    node("after"),
                    node("side"),
                    node("short", "delay", inputs={"seconds": 5}),
                ],
                [("wait", "after")],
            )
        )
        start = clock.now()
        outcome = await executor.run(plan)
        assert outcome.status is ExecutionStatus.WAITING
        assert outcome.resume_at == start + 60
        assert outcome.parked == {"wait": start + 60}
        assert outcome.nodes["wait"].status is NodeStatus.WAITING
        assert outcome.nodes["wait"].output["waitingFor"] == "time"
        assert outcome.nodes["after"].status is NodeStatus.PENDING  # not cancelled: it waits
        assert outcome.nodes["side"].status is NodeStatus.COMPLETED
        assert outcome.nodes["short"].status is NodeStatus.COMPLETED  # short waits just sleep
        assert clock.sleeps == [5]

        clock.time += 61  # the delayed job wakes the execution up
        resumed = await executor.run(plan, restored=outcome.nodes)
        assert resumed.status is ExecutionStatus.COMPLETED
        assert resumed.nodes["wait"].output == {"delayed": 60}
        assert probe.calls == {"side": 1, "after": 1}  # side was not run again


async def test_an_early_wake_up_parks_again_or_sleeps_the_rest(
    registry: NodeRegistry, clock: FakeClock
) -> None:
    async with parking_executor(registry, clock) as executor:
        plan = executor.compile(wf([node("wait", "delay", inputs={"seconds": 60})], []))
        first = await executor.run(plan)
        clock.time += 20  # woken early (40 s left): parks again
        second = await executor.run(plan, restored=first.nodes)
        assert second.status is ExecutionStatus.WAITING
        assert second.resume_at == first.resume_at
        clock.time += 35  # 5 s left: under park_after, it sleeps them
        third = await executor.run(plan, restored=second.nodes)
        assert third.status is ExecutionStatus.COMPLETED
        assert clock.sleeps == [5]


async def test_wait_input_resumes_with_the_answer_or_fails_after_its_timeout(
    registry: NodeRegistry, clock: FakeClock
) -> None:
    async with parking_executor(registry, clock) as executor:
        plan = executor.compile(
            wf([node("ask", "wait_input", inputs={"prompt": "ok?", "timeout": 30})], [])
        )
        parked = await executor.run(plan)
        assert parked.status is ExecutionStatus.WAITING
        assert parked.resume_at == clock.now() + 30  # woken at the timeout
        answered = parked.nodes["ask"]
        answered.output = {**answered.output, "answer": {"ok": True}}
        done = await executor.run(plan, restored={"ask": answered})
        assert done.result == {"ask": {"ok": True}}  # the sink outputs, by node

        unanswered = await executor.run(plan)
        clock.time += 31
        late = await executor.run(plan, restored=unanswered.nodes)
        assert late.status is ExecutionStatus.FAILED
        assert late.nodes["ask"].error == {
            "message": "node 'ask': no input within 30s",
            "type": "timeout",
        }


async def test_without_parking_a_delay_sleeps_and_wait_input_fails(
    fake_time_executor: Executor, clock: FakeClock
) -> None:
    plan = fake_time_executor.compile(wf([node("wait", "delay", inputs={"seconds": 600})], []))
    outcome = await fake_time_executor.run(plan)
    assert outcome.status is ExecutionStatus.COMPLETED
    assert clock.sleeps == [600]
    plan = fake_time_executor.compile(wf([node("ask", "wait_input")], []))
    outcome = await fake_time_executor.run(plan)
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.nodes["ask"].error["type"] == "cannot_park"


async def test_dependants_of_a_pure_node_do_not_wait_for_its_checkpoint(
    executor: Executor,
) -> None:
    """A pure node (no effect outside the run) can simply run again after a crash."""
    plan = executor.compile(
        wf([node("t", "transform", inputs={"value": 1}), node("b")], [("t", "b")])
    )
    hooks = SlowCheckpoint()  # never written: a wait would hang
    async with asyncio.timeout(5):
        outcome = await executor.run(plan, hooks=hooks)
    assert outcome.status is ExecutionStatus.COMPLETED
    assert not hooks.asked.is_set()
