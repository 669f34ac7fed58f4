"""Worker processes as a user runs them (``wfe worker``): sharing a batch, SIGTERM, ``kill -9``."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from typing import Any

import redis.asyncio as aioredis

from tests.support.processes import start_worker, wait_until
from tests.worker.test_runner import finished, recording_workflow, records
from workflow_engine.api.services import Services
from workflow_engine.config import Settings
from workflow_engine.queue.submit import Submission
from workflow_engine.vocabulary import ExecutionStatus


async def redis_list_length(settings: Settings, key: str) -> int:
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        return int(await client.llen(key))
    finally:
        await client.aclose()


async def push(settings: Settings, key: str, value: str = "go") -> None:
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        await client.rpush(key, value)
    finally:
        await client.aclose()


async def wait_entered(settings: Settings, key: str, count: int = 1, timeout: float = 30) -> None:
    async def entered() -> bool:
        return await redis_list_length(settings, f"{key}:entered") >= count

    await wait_until(entered, timeout, f"{count} hold node(s) to start")


def slow_recording_workflow(settings: Settings, key: str) -> dict[str, Any]:
    definition = recording_workflow(settings, key)
    definition["nodes"].insert(1, {"id": "pause", "type": "delay", "inputs": {"seconds": 0.02}})
    definition["edges"] = [
        {"source": "rec", "target": "pause"},
        {"source": "pause", "target": "out"},
    ]
    return definition


async def test_two_workers_split_a_batch_and_run_each_execution_once(services: Services) -> None:
    settings = services.settings
    key = f"{settings.queue_prefix}:batch"
    workers = [
        await asyncio.to_thread(start_worker, settings, WFE_WORKER_ID=f"w{i}") for i in range(2)
    ]
    try:
        definition = slow_recording_workflow(settings, key)
        ids = [
            (await services.submitter.submit(Submission(definition))).execution_id
            for _ in range(200)
        ]

        async def all_done() -> bool:
            counts = await services.store.count_by_status()
            return counts["completed"] + counts["failed"] == 200

        await wait_until(all_done, 120, "200 executions to finish")
    finally:
        for w in workers:
            await asyncio.to_thread(w.stop)
    counts = await services.store.count_by_status()
    assert counts["completed"] == 200
    ran = await records(settings, key)
    per_execution = Counter(r["executionId"] for r in ran)
    assert set(per_execution) == set(ids)
    assert set(per_execution.values()) == {1}  # each exactly once
    pids = Counter(r["pid"] for r in ran)
    assert len(pids) == 2, pids  # both workers took part
    assert [w.proc.returncode for w in workers] == [0, 0]


async def test_sigterm_lets_the_active_execution_finish(services: Services) -> None:
    settings = services.settings
    key = f"{settings.queue_prefix}:term"
    worker = await asyncio.to_thread(start_worker, settings, WFE_SHUTDOWN_GRACE_S="30")
    submitted = await services.submitter.submit(
        Submission(recording_workflow(settings, key, hold=30))
    )
    await wait_entered(settings, key)
    worker.signal(signal.SIGTERM)
    await asyncio.to_thread(worker.wait_for, "worker stopping")
    await push(settings, f"{key}:release")  # the node finishes within the grace period
    assert await asyncio.to_thread(worker.wait_exit, 30) == 0  # it exits on its own
    record = await finished(services, submitted.execution_id, timeout=5)
    assert record.status is ExecutionStatus.COMPLETED
    assert record.attempts == 1
    logged = [line for line in worker.lines if line.startswith("20")]
    assert logged
    assert all("workerId=" in line for line in logged)  # WORKER_ID on every log line


async def test_sigterm_past_the_grace_period_releases_the_execution_to_another_worker(
    services: Services,
) -> None:
    settings = services.settings
    key = f"{settings.queue_prefix}:release"
    first = await asyncio.to_thread(start_worker, settings, WFE_SHUTDOWN_GRACE_S="0.2")
    submitted = await services.submitter.submit(
        Submission(recording_workflow(settings, key, hold=30))
    )
    await wait_entered(settings, key)
    first.signal(signal.SIGTERM)
    assert await asyncio.to_thread(first.stop) == 0
    await asyncio.to_thread(first.wait_for, "execution released to the queue")
    running = await services.store.get(submitted.execution_id)
    assert running is not None
    assert running.status is ExecutionStatus.RUNNING  # released, not failed, not lost
    second = await asyncio.to_thread(start_worker, settings)
    try:
        await wait_entered(settings, key, count=2)
        await push(settings, f"{key}:release")
        record = await finished(services, submitted.execution_id)
    finally:
        await asyncio.to_thread(second.stop)
    assert record.status is ExecutionStatus.COMPLETED
    assert record.attempts == 2
    ran = await records(settings, key)
    assert [r["nodeId"] for r in ran] == ["rec"]  # recorded before the release: not run again


async def test_kill_9_mid_run_the_stalled_job_completes_on_another_worker(
    services: Services,
) -> None:
    settings = services.settings
    key = f"{settings.queue_prefix}:kill"
    doomed = await asyncio.to_thread(start_worker, settings)
    submitted = await services.submitter.submit(
        Submission(recording_workflow(settings, key, hold=30))
    )
    await wait_entered(settings, key)
    await asyncio.to_thread(doomed.kill)
    survivor = await asyncio.to_thread(start_worker, settings)
    try:
        await wait_entered(settings, key, count=2)  # the lock expired; the survivor took it
        await push(settings, f"{key}:release")
        record = await finished(services, submitted.execution_id)
    finally:
        await asyncio.to_thread(survivor.stop)
    assert record.status is ExecutionStatus.COMPLETED
    assert record.result is True
    nodes = {n.node_id: n.status for n in await services.store.node_results(submitted.execution_id)}
    assert set(nodes.values()) == {"completed"}
