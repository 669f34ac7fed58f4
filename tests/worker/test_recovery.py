"""Recovery of executions whose job is gone or given up, found by one worker's sweep."""

from __future__ import annotations

import redis.asyncio as aioredis
import sqlalchemy as sa

from tests.worker.test_durable import chain
from tests.worker.test_runner import finished
from workflow_engine.api.services import Services
from workflow_engine.queue.queues import JOB_NAME
from workflow_engine.queue.submit import job_data
from workflow_engine.store.base import StateStore
from workflow_engine.store.records import ExecutionRecord
from workflow_engine.store.schema import executions
from workflow_engine.store.sql import SqlStore
from workflow_engine.vocabulary import ExecutionStatus, NodeResult, NodeStatus, now_ms
from workflow_engine.worker.recovery import Recovery
from workflow_engine.worker.worker import WorkerService


def recovery_of(services: Services, store: StateStore | None = None) -> Recovery:
    """The sweep as a worker runs it: executions unchanged for a minute are looked at (in
    ``store``, by default the services')."""
    return Recovery(
        store or services.store,
        services.queues,
        services.redis,
        services.redis_keys,
        services.events,
        interval_s=300,
        stale_s=60,
    )


async def stale(services: Services, execution_id: str, status: ExecutionStatus) -> ExecutionRecord:
    """An execution last touched ten minutes ago."""
    settings = services.settings
    record = ExecutionRecord(
        execution_id=execution_id,
        workflow_id="chain",
        tenant_id="t",
        queue="workflow",
        definition=chain(settings, f"{settings.queue_prefix}:{execution_id}"),
        inputs={},
    )
    await services.store.create(record)
    if status is not ExecutionStatus.PENDING:
        await services.store.mark_running(execution_id, 1)
    store = services.store
    assert isinstance(store, SqlStore)
    async with store.engine.begin() as conn:  # (the clock of the store, turned back)
        await conn.execute(
            sa.update(executions)
            .where(executions.c.execution_id == execution_id)
            .values(updated_at=now_ms() - 600_000)
        )
    return record


async def test_the_sweep_fails_given_up_jobs_and_requeues_lost_started_ones(
    services: Services,
) -> None:
    settings = services.settings
    given_up = await stale(services, "exec_given_up", ExecutionStatus.RUNNING)
    queue = services.queues["workflow"]
    await queue.add(JOB_NAME, job_data(given_up), {"jobId": "exec_given_up", "attempts": 1})
    # BullMQ gave the job up (what the stalled check does after max_stalled_count)
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    prefix = f"{settings.queue_prefix}:workflow"
    await client.lrem(f"{prefix}:wait", 0, "exec_given_up")
    await client.zadd(f"{prefix}:failed", {"exec_given_up": now_ms()})
    await client.aclose()
    await stale(services, "exec_lost_running", ExecutionStatus.RUNNING)  # no job at all
    await stale(services, "exec_lost_pending", ExecutionStatus.PENDING)

    recovery = recovery_of(services)
    found = await recovery.run_once()
    assert found is not None
    assert sorted(found.failed) == ["exec_given_up", "exec_lost_pending"]
    assert found.requeued == ["exec_lost_running"]
    assert await recovery.run_once() is None  # once per interval, across workers

    for execution_id in found.failed:
        record = await services.store.get(execution_id)
        assert record is not None
        assert record.status is ExecutionStatus.FAILED
        assert record.error is not None
        assert record.error["type"] == "lost"
    worker = WorkerService(settings, services.store)
    await worker.start()
    try:  # the requeued one runs (resumed: it had started) and completes
        record = await finished(services, "exec_lost_running")
    finally:
        await worker.stop()
        await worker.executor.aclose()
    assert record.status is ExecutionStatus.COMPLETED


async def test_the_sweep_wakes_a_parent_whose_childs_outcome_was_lost(
    services: Services,
) -> None:
    """A child ended while the store or Redis was down: its outcome never reached its parked
    parent, whose job sits delayed with nothing to wake it. The sweep delivers the outcome and
    promotes the parent's job; a parent whose child still runs is left alone."""
    store, queue = services.store, services.queues["workflow"]
    for parent_id, child_id, child_status in (
        ("exec_parent", "exec_child", ExecutionStatus.COMPLETED),
        ("exec_patient", "exec_running_child", ExecutionStatus.RUNNING),
    ):
        parent = ExecutionRecord(parent_id, "parent", "t", "workflow", definition={}, inputs={})
        child = ExecutionRecord(child_id, "child", "t", "workflow")
        for record in (parent, child):
            await store.create(record)
            await store.mark_running(record.execution_id, 1)
        ticket = {"waitingFor": "child", "childExecutionId": child_id}
        waiting = NodeResult("call", "workflow", None, NodeStatus.WAITING, output=ticket)
        await store.save_node(parent_id, waiting)
        assert await store.transition(parent_id, ExecutionStatus.WAITING)
        if child_status is ExecutionStatus.COMPLETED:
            assert await store.finish(child_id, child_status, result={"x": 1})
        await queue.add(JOB_NAME, job_data(parent), {"jobId": parent_id, "delay": 86_400_000})
        assert isinstance(store, SqlStore)
        async with store.engine.begin() as conn:  # parked ten minutes ago
            await conn.execute(
                sa.update(executions)
                .where(executions.c.execution_id == parent_id)
                .values(updated_at=now_ms() - 600_000)
            )
    found = await recovery_of(services, store).sweep()
    assert found.woken == ["exec_parent"]
    assert (found.failed, found.requeued) == ([], [])
    [answered] = await store.node_results("exec_parent")
    assert answered.output["answer"] == {"status": "completed", "result": {"x": 1}, "error": None}
    assert await queue.getJobState("exec_parent") in ("waiting", "prioritized")
    assert await queue.getJobState("exec_patient") == "delayed"
    [untouched] = await store.node_results("exec_patient")
    assert "answer" not in untouched.output


async def test_the_sweep_goes_on_past_an_execution_of_a_queue_it_does_not_know(
    services: Services,
) -> None:
    """An execution of a named queue this process is not configured with (another process's,
    or one removed from WFE_NAMED_QUEUES): its lookup raised KeyError, which ended every sweep
    before the executions after it were recovered."""
    other = await stale(services, "exec_other_queue", ExecutionStatus.RUNNING)
    store = services.store
    assert isinstance(store, SqlStore)
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.update(executions)
            .where(executions.c.execution_id == other.execution_id)
            .values(queue="billing", updated_at=now_ms() - 700_000)  # (first in the sweep)
        )
    await stale(services, "exec_lost_pending", ExecutionStatus.PENDING)
    recovery = recovery_of(services)
    found = await recovery.sweep()
    assert found.failed == ["exec_lost_pending"]
    record = await services.store.get("exec_other_queue")
    assert record is not None
    assert record.status is ExecutionStatus.RUNNING  # left to a process that knows its queue
