"""Issue 14, finding 18: fairness between tenants (SPEC section 8). A tenant's cap on executions
in flight and its submit rate answer 429 with Retry-After; another tenant is not affected; and
a tenant's flood delays another tenant's realtime execution by one job slot at most."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import make_settings
from tests.support.processes import wait_until
from tests.support.services import RedisServer
from workflow_engine.api.app import create_app
from workflow_engine.api.services import Services
from workflow_engine.queue.submit import Submission
from workflow_engine.store.records import ExecutionRecord
from workflow_engine.vocabulary import ExecutionStatus
from workflow_engine.worker.worker import WorkerService

KEYS = "a=key-a,b=key-b"
A = {"Authorization": "Bearer key-a"}
B = {"Authorization": "Bearer key-b"}
SIMPLE = {"id": "simple", "nodes": [{"id": "out", "type": "output", "inputs": {"value": 1}}]}


@pytest.fixture
async def open_services(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[list[Services]]:
    opened: list[Services] = []
    yield opened
    for services in opened:
        await services.close()


async def service_with(opened: list[Services], redis_url: str, tmp: Path, **extra: Any) -> Services:
    settings = make_settings(redis_url, f"sqlite:///{tmp}/wfe.db", api_keys=KEYS, **extra)
    services = await Services.open(settings)
    opened.append(services)
    return services


def client_of(services: Services) -> httpx.AsyncClient:
    app = create_app(services.settings, services)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


async def execute(api: httpx.AsyncClient, who: dict[str, str]) -> httpx.Response:
    return await api.post("/api/workflow/execute", json={"workflowDefinition": SIMPLE}, headers=who)


def rate_limited(response: httpx.Response) -> str:
    """The 429 of SPEC section 8: the error shape and a Retry-After of whole seconds."""
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["code"] == "rate_limited"
    retry_after = response.headers["retry-after"]
    assert int(retry_after) >= 1
    message: str = error["message"]
    return message


async def test_a_tenant_over_its_cap_gets_429_and_the_other_tenant_does_not(
    open_services: list[Services], redis_server: RedisServer, tmp_path: Path
) -> None:
    services = await service_with(open_services, redis_server.url, tmp_path, tenant_max_active=2)
    async with client_of(services) as api:
        first = [await execute(api, A) for _ in range(2)]  # no worker: both stay queued
        assert [r.status_code for r in first] == [202, 202]
        message = rate_limited(await execute(api, A))
        assert "2 executions queued or running" in message
        assert "limit 2" in message
        assert (await execute(api, B)).status_code == 202
        # an execution that ends (here: cancelled) frees its place at once
        cancelled = first[0].json()["executionId"]
        answer = await api.post(f"/api/workflow/cancel/{cancelled}", headers=A)
        assert answer.status_code == 200, answer.text
        assert (await execute(api, A)).status_code == 202
        rate_limited(await execute(api, A))
    refused = await services.store.list_executions("a", limit=50)
    assert len(refused.items) == 3  # a refused submit stored nothing


async def test_a_tenant_over_its_rate_gets_429_with_when_to_retry(
    open_services: list[Services], redis_server: RedisServer, tmp_path: Path
) -> None:
    services = await service_with(open_services, redis_server.url, tmp_path, tenant_rate=0.5)
    async with client_of(services) as api:
        assert (await execute(api, A)).status_code == 202  # the bucket holds one submit
        answer = await execute(api, A)
        assert "faster than 0.5 per second" in rate_limited(answer)
        assert int(answer.headers["retry-after"]) == 2  # a token every 2 s
        assert (await execute(api, B)).status_code == 202


async def test_executions_a_worker_finishes_leave_the_count(
    open_services: list[Services], redis_server: RedisServer, tmp_path: Path
) -> None:
    services = await service_with(open_services, redis_server.url, tmp_path, tenant_max_active=1)
    worker = WorkerService(services.settings, services.store)
    await worker.start()
    try:
        async with client_of(services) as api:
            for _ in range(3):  # one at a time: each is accepted once the one before ended
                answer = await execute(api, A)
                assert answer.status_code == 202, answer.text
                await finished(services, answer.json()["executionId"])
    finally:
        await worker.stop(grace=5)
        await worker.executor.aclose()


async def test_an_end_that_was_never_counted_is_found_at_the_cap(
    open_services: list[Services], redis_server: RedisServer, tmp_path: Path
) -> None:
    """A worker that died between its store write and its final event left the execution in
    the tenant's count: at the cap, members not confirmed for a while are looked up in the
    store, and finished ones stop counting."""
    services = await service_with(open_services, redis_server.url, tmp_path, tenant_max_active=1)
    key = services.redis_keys.tenant_active("a")
    async with client_of(services) as api:
        first = (await execute(api, A)).json()["executionId"]
        await services.store.mark_running(first, 1)  # a worker ran it and recorded its end
        assert await services.store.finish(first, ExecutionStatus.COMPLETED, result={"v": 1})
        rate_limited(await execute(api, A))  # counted: confirmed a moment ago
        await services.redis.zadd(key, {first: 0})  # as if added long ago
        answer = await execute(api, A)
        assert answer.status_code == 202, answer.text
        assert await services.redis.zrange(key, 0, -1) == [answer.json()["executionId"]]


async def finished(services: Services, execution_id: str) -> ExecutionRecord:
    async def check() -> ExecutionRecord | None:
        record = await services.store.get(execution_id)
        return record if record is not None and record.status == "completed" else None

    done: ExecutionRecord = await wait_until(check, 30, f"{execution_id} to complete")
    return done


FLOOD = 2000
SLOTS = 2


async def test_a_flood_delays_another_tenants_realtime_execution_by_one_job_slot(
    open_services: list[Services], redis_server: RedisServer, tmp_path: Path
) -> None:
    """Tenant A queues 2,000 realtime executions; tenant B's one runs as soon as a slot is
    free: of A's queued executions, at most the ones the busy slots were already taking start
    before it (in arrival order, all 2,000 would)."""
    services = await service_with(
        open_services,
        redis_server.url,
        tmp_path,
        queues={"realtime": {"concurrency": SLOTS}},
    )
    runs = f"{services.settings.queue_prefix}:runs"

    def recording(seconds: float) -> dict[str, Any]:
        node = {"redis_url": services.settings.redis_url, "key": runs, "seconds": seconds}
        return {"id": "rec", "nodes": [{"id": "rec", "type": "record", "inputs": node}]}

    flood = Submission(recording(0.02), tenant_id="a", queue="realtime")
    for start in range(0, FLOOD, 100):
        await asyncio.gather(*(services.submitter.submit(flood) for _ in range(start, start + 100)))
    worker = WorkerService(services.settings, services.store, ["realtime"])
    await worker.start()
    try:

        async def started(count: int) -> bool:
            return await services.redis.llen(runs) >= count

        await wait_until(lambda: started(SLOTS * 3), 30, "tenant A's flood to run")
        before = await services.redis.llen(runs)
        submitted = await services.submitter.submit(
            Submission(recording(0), tenant_id="b", queue="realtime")
        )
        await finished(services, submitted.execution_id)
        order = [json.loads(x)["executionId"] for x in await services.redis.lrange(runs, 0, -1)]
    finally:
        await worker.stop(grace=5)
        await worker.executor.aclose()
    overtaken_by = order.index(submitted.execution_id) - before
    assert 0 <= overtaken_by <= SLOTS, f"{overtaken_by} of A's executions started first"
    assert len(order) < FLOOD / 2  # the flood was still queued when B's execution ran
