"""Redis or the store unreachable: 503, nothing half-written, and recovery when they are back."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx

from tests.conftest import make_settings
from tests.support.services import free_port
from workflow_engine.api.app import create_app
from workflow_engine.api.services import Services
from workflow_engine.embedded_redis import EmbeddedRedis
from workflow_engine.store import open_store

EXAMPLE = json.loads(
    (Path(__file__).resolve().parents[2] / "examples" / "if_else.json").read_text()
)


async def test_redis_down_is_503_and_leaves_nothing_then_recovers(
    own_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    settings = make_settings(own_redis.url, f"sqlite:///{tmp_path}/wfe.db")
    services = await Services.open(settings)
    app = create_app(settings, services)
    body = {"workflowDefinition": EXAMPLE}
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api"
        ) as api:
            assert (await api.post("/api/workflow/execute", json=body)).status_code == 202
            own_redis.stop()
            started = time.monotonic()
            down = await api.post("/api/workflow/execute", json=body)
            assert down.status_code == 503
            assert time.monotonic() - started < 10  # an answer, not a hang
            assert down.headers["retry-after"] == "1"
            assert down.json()["error"] == {
                "code": "unavailable",
                "message": "Redis is unreachable; nothing was changed, retry later",
                "details": [],
            }
            assert (await services.store.count_by_status())["pending"] == 1  # no orphan row
            assert (await api.get("/ready")).status_code == 503
            assert (await api.get("/api/workflow/stats")).status_code == 503
            own_redis.start()
            again = await api.post("/api/workflow/execute", json=body)
            assert again.status_code == 202
            assert (await api.get("/ready")).status_code == 200
            assert (await services.store.count_by_status())["pending"] == 2
    finally:
        await services.close()


async def test_store_down_is_503(own_redis: EmbeddedRedis, tmp_path: Path) -> None:
    settings = make_settings(own_redis.url, f"postgresql://postgres@127.0.0.1:{free_port()}/gone")
    services = await Services.open(make_settings(own_redis.url, f"sqlite:///{tmp_path}/ok.db"))
    await services.store.close()
    services.store = open_store(settings.store_url)  # as if the database went away
    services.submitter.store = services.store
    app = create_app(settings, services)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api"
        ) as api:
            response = await api.post("/api/workflow/execute", json={"workflowDefinition": EXAMPLE})
            assert response.status_code == 503
            assert response.json()["error"]["message"] == (
                "the state store is unreachable; nothing was changed, retry later"
            )
            assert (await api.get("/api/workflow/status/exec_x")).status_code == 503
            assert (await services.queues.counts())["workflow"]["waiting"] == 0  # nothing enqueued
    finally:
        await services.close()


async def test_a_burst_of_submits_waits_for_redis_connections_instead_of_failing(
    api: httpx.AsyncClient, services: Services
) -> None:
    """More requests in flight than the Redis client has connections (redis-py caps a pool at
    100 and fails the 101st): every one is accepted."""
    body = {"workflowDefinition": EXAMPLE, "inputs": {"total": 1}}
    answers = await asyncio.gather(
        *(api.post("/api/workflow/execute", json=body) for _ in range(400))
    )
    assert [a.status_code for a in answers] == [202] * 400, {a.text for a in answers}
    counts = await services.store.count_by_status()
    assert counts["pending"] == 400
