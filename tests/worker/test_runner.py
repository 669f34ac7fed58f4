"""Workers in this process against the real Redis and store: ordering, delays, timeouts,
failures, resuming from recorded node results."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.conftest import make_settings
from tests.support.processes import wait_until
from workflow_engine.api.services import Services
from workflow_engine.config import Settings
from workflow_engine.queue.queues import JOB_NAME
from workflow_engine.queue.submit import Submission, job_data
from workflow_engine.store.records import ExecutionRecord
from workflow_engine.vocabulary import ExecutionError, ExecutionStatus, NodeResult, NodeStatus
from workflow_engine.worker.worker import WorkerService


def recording_workflow(
    settings: Settings, key: str, *, hold: float | None = None
) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [
        {"id": "rec", "type": "record", "inputs": {"redis_url": settings.redis_url, "key": key}},
        {"id": "out", "type": "output", "inputs": {"value": "{{ nodes.rec.output.pid > 0 }}"}},
    ]
    edges = [{"source": "rec", "target": "out"}]
    if hold is not None:
        nodes.insert(
            1,
            {
                "id": "hold",
                "type": "hold",
                "inputs": {"redis_url": settings.redis_url, "key": key, "seconds": hold},
            },
        )
        edges = [{"source": "rec", "target": "hold"}, {"source": "hold", "target": "out"}]
    return {"id": "recording", "nodes": nodes, "edges": edges}


async def records(settings: Settings, key: str) -> list[dict[str, Any]]:
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        return [json.loads(x) for x in await client.lrange(key, 0, -1)]
    finally:
        await client.aclose()


async def finished(services: Services, execution_id: str, timeout: float = 20) -> ExecutionRecord:
    async def check() -> ExecutionRecord | None:
        record = await services.store.get(execution_id)
        return record if record and record.status in {"completed", "failed", "cancelled"} else None

    result: ExecutionRecord = await wait_until(check, timeout, f"{execution_id} to finish")
    return result


@pytest.fixture
async def one_at_a_time(redis_server: Any, tmp_path: Path) -> AsyncIterator[Services]:
    settings = make_settings(
        redis_server.url,
        f"sqlite:///{tmp_path}/wfe.db",
        queues={"workflow": {"concurrency": 1}, "realtime": {"timeout_s": 0.3}},
    )
    opened = await Services.open(settings)
    yield opened
    await opened.close()


async def test_priority_orders_the_queue(one_at_a_time: Services) -> None:
    services, settings = one_at_a_time, one_at_a_time.settings
    key = f"{settings.queue_prefix}:order"
    definition = recording_workflow(settings, key)
    ids = {}
    for priority in (5, 1, 3, 2, 6, 4):  # submitted while no worker runs
        submitted = await services.submitter.submit(Submission(definition, priority=priority))
        ids[submitted.execution_id] = priority
    worker = WorkerService(settings, services.store, ["workflow"])
    await worker.start()
    try:
        for execution_id in ids:
            await finished(services, execution_id)
    finally:
        await worker.stop()
    order = [ids[r["executionId"]] for r in await records(settings, key)]
    assert order == [1, 2, 3, 4, 5, 6]


async def test_a_job_given_back_unstarted_is_not_counted_as_an_attempt(
    services: Services,
) -> None:
    """A stopping worker gives back what it fetches, not started (BullMQ counts each fetch
    as an attempt started); the run that does happen later is attempt 1 all the same."""
    settings = services.settings
    key = f"{settings.queue_prefix}:given"
    worker = WorkerService(settings, services.store, ["workflow"])
    worker.runner.stopping = True  # as after the grace period: whatever it fetches goes back
    await worker.start()
    try:
        submitted = await services.submitter.submit(Submission(recording_workflow(settings, key)))
        events = services.queues["workflow"].keys["events"]

        async def given_back_three_times() -> bool:
            entries = await services.redis.xrange(events)
            return (
                sum(
                    1
                    for _, fields in entries
                    if fields.get("event") == "delayed"
                    and fields.get("jobId") == submitted.execution_id
                )
                >= 3
            )

        await wait_until(given_back_three_times, 10, "the job to be given back three times")
        worker.runner.stopping = False
        record = await finished(services, submitted.execution_id)
    finally:
        await worker.stop()
    assert record.status is ExecutionStatus.COMPLETED, record.error
    assert record.attempts == 1
    assert [r["attempt"] for r in await records(settings, key)] == [1]


async def test_delayed_execution_does_not_start_early(
    services: Services, worker: WorkerService
) -> None:
    settings = services.settings
    submitted = await services.submitter.submit(
        Submission(recording_workflow(settings, f"{settings.queue_prefix}:d"), delay_ms=1500)
    )
    assert (await services.queues.counts())["workflow"]["delayed"] == 1
    record = await finished(services, submitted.execution_id)
    assert record.status is ExecutionStatus.COMPLETED, record.error
    assert record.started_at is not None
    assert record.started_at - record.created_at >= 1500


async def test_queue_timeout_fails_the_execution_and_cancels_the_node(
    one_at_a_time: Services,
) -> None:
    services, settings = one_at_a_time, one_at_a_time.settings
    definition = recording_workflow(settings, f"{settings.queue_prefix}:t", hold=30)
    submitted = await services.submitter.submit(Submission(definition, queue="realtime"))
    worker = WorkerService(settings, services.store, ["realtime"])
    await worker.start()
    try:
        record = await finished(services, submitted.execution_id)
    finally:
        await worker.stop()
    assert record.status is ExecutionStatus.FAILED
    assert record.error == {
        "message": "execution timed out after 0.3s",
        "nodeId": "hold",
        "type": "timeout",
    }
    nodes = {n.node_id: n.status for n in await services.store.node_results(submitted.execution_id)}
    assert nodes == {
        "rec": NodeStatus.COMPLETED,
        "hold": NodeStatus.CANCELLED,
        "out": NodeStatus.CANCELLED,
    }
    counts = (await services.queues.counts())["realtime"]
    assert (counts["failed"], counts["waiting"], counts["delayed"]) == (1, 0, 0)  # not retried


async def test_failed_execution_is_recorded_and_not_retried(
    services: Services, worker: WorkerService
) -> None:
    definition = {"id": "f", "nodes": [{"id": "boom", "type": "fail", "inputs": {"message": "no"}}]}
    submitted = await services.submitter.submit(Submission(definition))
    record = await finished(services, submitted.execution_id)
    assert record.status is ExecutionStatus.FAILED
    assert record.error == {"message": "no", "nodeId": "boom", "type": "fail"}
    assert record.attempts == 1

    async def job_failed() -> bool:
        counts = (await services.queues.counts())["workflow"]
        return counts["failed"] == 1 and counts["delayed"] == 0

    await wait_until(job_failed, 10, "the job to be failed")


async def test_a_resumed_execution_does_not_rerun_recorded_nodes(
    services: Services, worker: WorkerService
) -> None:
    """An earlier run recorded node ``rec`` and died: the next run restores it."""
    settings = services.settings
    key = f"{settings.queue_prefix}:resume"
    definition = recording_workflow(settings, key)
    record = ExecutionRecord(
        execution_id="exec_resumed",
        workflow_id="recording",
        tenant_id="t",
        queue="workflow",
        definition=definition,
        inputs={},
    )
    await services.store.create(record)
    await services.store.mark_running("exec_resumed", 1)  # the run that died
    earlier = NodeResult(
        "rec", "record", None, NodeStatus.COMPLETED, {}, {"pid": 1}, None, 1, 1.0, 2.0
    )
    await services.store.save_node("exec_resumed", earlier, 1)
    await services.queues["workflow"].add(JOB_NAME, job_data(record), {"jobId": "exec_resumed"})
    final = await finished(services, "exec_resumed")
    assert final.status is ExecutionStatus.COMPLETED
    assert final.result is True
    assert await records(settings, key) == []  # rec did not run again
    nodes = await services.store.node_results("exec_resumed")
    assert [(n.node_id, n.output) for n in nodes] == [("rec", {"pid": 1}), ("out", True)]


async def test_a_job_of_a_cancelled_execution_does_not_run(
    services: Services, worker: WorkerService
) -> None:
    settings = services.settings
    key = f"{settings.queue_prefix}:cancelled"
    record = ExecutionRecord(
        execution_id="exec_gone",
        workflow_id="recording",
        tenant_id="t",
        queue="workflow",
        definition=recording_workflow(settings, key),
        inputs={},
    )
    await services.store.create(record)
    await services.store.transition("exec_gone", ExecutionStatus.CANCELLED)
    await services.queues["workflow"].add(JOB_NAME, job_data(record), {"jobId": "exec_gone"})

    async def job_done() -> bool:
        return (await services.queues.counts())["workflow"]["completed"] == 1

    await wait_until(job_done, 10, "the job to be taken and dropped")
    assert await records(settings, key) == []
    assert (await services.store.get("exec_gone")).status is ExecutionStatus.CANCELLED  # type: ignore[union-attr]


async def test_a_run_whose_record_was_cancelled_elsewhere_is_stopped(
    services: Services, worker: WorkerService
) -> None:
    """The API cancelled the record without reaching the worker (pub/sub missed): the worker
    notices from the store, stops the run, and nothing after it runs."""
    settings = services.settings
    key = f"{settings.queue_prefix}:missed"
    submitted = await services.submitter.submit(
        Submission(recording_workflow(settings, key, hold=30))
    )
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)

    async def holding() -> bool:
        return int(await client.llen(f"{key}:entered")) > 0

    await wait_until(holding, 20, "the hold node to start")
    assert await services.store.transition(
        submitted.execution_id,
        ExecutionStatus.CANCELLED,
        expect=frozenset({ExecutionStatus.RUNNING}),
        error=ExecutionError("cancelled", "cancelled"),
    )

    async def stopped() -> bool:
        return submitted.execution_id not in worker.runner.active

    await wait_until(stopped, 10, "the worker to stop the run")
    record = await services.store.get(submitted.execution_id)
    assert record is not None
    assert record.status is ExecutionStatus.CANCELLED
    assert [r["nodeId"] for r in await records(settings, key)] == ["rec"]  # not "out"
    await client.aclose()
