"""A Redis Cluster hash-tag prefix (``WFE_QUEUE_PREFIX={...}``, docs/deploy.md): executions,
a delayed one, a cancel, a schedule and a client subscription index all run, and every Redis key
the deployment made, BullMQ's and ours, hashes to one cluster slot — so BullMQ's multi-key Lua
scripts and our event script would run on a cluster. (The Redis here is not a cluster: the slot
is computed with redis-py's CRC16, as a cluster computes it.)"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from tests.conftest import make_settings
from tests.support.processes import wait_until
from tests.support.services import RedisServer
from workflow_engine.config import Settings
from workflow_engine.worker.worker import WorkerService

ROOT = Path(__file__).resolve().parents[2]
IF_ELSE = json.loads((ROOT / "examples" / "if_else.json").read_text())
TOKEN = f"c{uuid.uuid4().hex[:10]}"


@pytest.fixture
def settings(redis_server: RedisServer, tmp_path: Path) -> Settings:
    prefix = f"{{{TOKEN}}}"  # {c0123456789}: the hash tag is the whole prefix
    return make_settings(redis_server.url, f"sqlite:///{tmp_path}/wfe.db", queue_prefix=prefix)


async def test_every_key_of_a_hash_tag_prefix_shares_one_slot(
    api: httpx.AsyncClient, worker: WorkerService, settings: Settings
) -> None:
    async def finished(execution_id: str) -> bool:
        status = (await api.get(f"/api/workflow/status/{execution_id}")).json()
        return status["context"]["status"] in {"completed", "cancelled"}

    ids = []
    for body in (
        {"workflowDefinition": IF_ELSE, "inputs": {"total": 1}, "clientId": "tab"},
        {"workflowDefinition": IF_ELSE, "inputs": {"total": 500}, "type": "realtime"},
    ):
        response = await api.post("/api/workflow/execute", json=body)
        assert response.status_code == 202, response.text
        ids.append(response.json()["executionId"])
    delayed = await api.post(
        "/api/workflow/execute",
        json={"workflowDefinition": IF_ELSE, "inputs": {"total": 2}, "delay": 60_000},
    )
    cancelled = await api.post(f"/api/workflow/cancel/{delayed.json()['executionId']}")
    assert cancelled.status_code == 200
    schedule = await api.post(
        "/api/workflow/execute",
        json={"workflowDefinition": IF_ELSE, "inputs": {"total": 3}, "repeat": {"every": 60_000}},
    )
    assert schedule.status_code == 201, schedule.text
    for execution_id in ids:
        await wait_until(lambda e=execution_id: finished(e), 20, f"{execution_id} to finish")

    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"*{TOKEN}*", count=1000)]
    finally:
        await client.aclose()
    assert len(keys) > 20  # queues, jobs, events, client index, scheduler, markers...
    assert all(key.startswith(f"{{{TOKEN}}}:".encode()) for key in keys)
    assert {key_slot(key) for key in keys} == {key_slot(f"{{{TOKEN}}}".encode())}
