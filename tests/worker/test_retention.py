"""Retention: finished executions past the retention period leave the store with their node
results, event streams and checkpoints; one worker at a time does it, once per interval."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from tests.support.processes import wait_until
from workflow_engine.api.services import Services
from workflow_engine.keys import Keys
from workflow_engine.store.records import ExecutionRecord
from workflow_engine.vocabulary import ExecutionStatus, NodeResult, NodeStatus, now_ms
from workflow_engine.worker.retention import Retention
from workflow_engine.worker.worker import WorkerService

DAY_MS = 86_400_000


async def finished_execution(services: Services, execution_id: str, age_days: float) -> None:
    store = services.store
    await store.create(
        ExecutionRecord(execution_id=execution_id, workflow_id="w", tenant_id="t", queue="workflow")
    )
    await store.mark_running(execution_id, 1)
    await store.save_node(
        execution_id, NodeResult("n", "echo", None, NodeStatus.COMPLETED, attempt=1)
    )
    await store.transition(
        execution_id, ExecutionStatus.COMPLETED, completed_at=now_ms() - int(age_days * DAY_MS)
    )
    await services.events.publish(execution_id, "execution.completed", {}, final=True)
    await services.events.checkpoint(execution_id, "n", {"status": "completed"})


async def test_one_of_two_workers_cleans_up_and_only_what_is_old(services: Services) -> None:
    await finished_execution(services, "exec_old", age_days=31)
    await finished_execution(services, "exec_new", age_days=1)
    keys = Keys(services.settings.queue_prefix)
    redis = aioredis.Redis.from_url(services.settings.redis_url, decode_responses=True)
    try:
        cleaners = [
            Retention(services.store, redis, keys, days=30, interval_s=3600, worker_id=f"w{i}")
            for i in range(2)
        ]
        outcomes = await asyncio.gather(*(c.run_once() for c in cleaners))
        assert sorted(outcomes, key=lambda o: o is None) == [["exec_old"], None]
        assert await services.store.get("exec_old") is None
        assert await services.store.node_results("exec_old") == []
        assert not await redis.exists(keys.events("exec_old"), keys.checkpoint("exec_old"))
        assert await services.store.get("exec_new") is not None
        assert await redis.exists(keys.events("exec_new"))
        # within the interval nobody cleans up again
        assert await cleaners[0].run_once() is None
        assert await cleaners[1].run_once() is None
    finally:
        await redis.aclose()


async def test_a_cleanup_still_running_elsewhere_is_not_started_again(
    services: Services,
) -> None:
    """The interval is over but the last cleanup is still running: the lock keeps a second
    one from starting; the lock is released when a cleanup ends."""
    await finished_execution(services, "exec_old", age_days=31)
    keys = Keys(services.settings.queue_prefix)
    lock_key = keys.maintenance("cleanup-lock")
    redis = aioredis.Redis.from_url(services.settings.redis_url, decode_responses=True)
    try:
        cleaner = Retention(services.store, redis, keys, days=30, interval_s=3600)
        running = redis.lock(lock_key, timeout=60)
        assert await running.acquire(blocking=False)
        assert await cleaner.run_once() is None
        assert await services.store.get("exec_old") is not None
        await running.release()
        await redis.delete(keys.maintenance("cleanup-due"))  # the next interval
        assert await cleaner.run_once() == ["exec_old"]
        assert not await redis.exists(lock_key)
    finally:
        await redis.aclose()


async def test_a_worker_runs_the_cleanup_by_itself(services: Services) -> None:
    await finished_execution(services, "exec_ancient", age_days=45)
    worker = WorkerService(services.settings, services.store)
    await worker.start()
    try:

        async def gone() -> bool:
            return await services.store.get("exec_ancient") is None

        await wait_until(gone, 10, "the worker's cleanup")
    finally:
        await worker.stop()
        await worker.executor.aclose()
