"""Queues by business type (issue 21): a named queue declared in the configuration is a BullMQ
queue of its own with its class's defaults; an execution chooses it by ``queue``; a worker
process told to serve only it runs its executions and nobody else's; stats, metrics, admin and
the CLI cover it. The API over a real socket, the worker a ``wfe worker`` process."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import make_settings
from tests.support.processes import WFE, Process, settings_env, start_worker, wait_until
from tests.support.served import served
from tests.support.services import RedisServer
from workflow_engine.api.app import create_app
from workflow_engine.api.services import Services
from workflow_engine.events.model import decode_entry

NAMED = {"billing": {"class": "realtime", "concurrency": 2}, "reports": {"class": "background"}}
ECHO = {"id": "echo", "nodes": [{"id": "a", "type": "echo", "inputs": {"value": 7}}]}


@dataclass
class Deployment:
    http: httpx.AsyncClient
    services: Services
    worker: Process

    async def submit(self, **extra: Any) -> httpx.Response:
        return await self.http.post(
            "/api/workflow/execute", json={"workflowDefinition": ECHO, **extra}
        )

    async def context(self, execution_id: str) -> dict[str, Any]:
        found = await self.http.get(f"/api/workflow/status/{execution_id}")
        assert found.status_code == 200, found.text
        context: dict[str, Any] = found.json()["context"]
        return context


@pytest.fixture
async def deployment(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[Deployment]:
    settings = make_settings(redis_server.url, f"sqlite:///{tmp_path}/wfe.db", named_queues=NAMED)
    # the worker serves the named queue `billing` only
    worker = await asyncio.to_thread(
        start_worker, settings, "--queues", "billing", WFE_NAMED_QUEUES=json.dumps(NAMED)
    )
    services = await Services.open(settings)
    try:
        async with (
            served(create_app(settings, services)) as address,
            httpx.AsyncClient(base_url=f"http://{address}", timeout=30) as http,
        ):
            yield Deployment(http, services, worker)
    finally:
        await services.close()
        await asyncio.to_thread(worker.stop)


async def test_an_execution_runs_on_the_named_queue_it_chose(deployment: Deployment) -> None:
    billed = await deployment.submit(queue="billing", clientId="till-1")
    assert billed.status_code == 202, billed.text
    billed_id = billed.json()["executionId"]
    # a `workflow` execution: no worker serves that queue here, so it stays queued there
    plain = await deployment.submit()
    assert plain.status_code == 202, plain.text
    plain_id = plain.json()["executionId"]

    async def billed_done() -> bool:
        return (await deployment.context(billed_id))["status"] == "completed"

    await wait_until(billed_done, 30, "the billing execution to complete")
    context = await deployment.context(billed_id)
    assert (context["type"], context["queue"]) == ("realtime", "billing")
    queued = await deployment.context(plain_id)
    assert (queued["status"], queued["type"], queued["queue"]) == (
        "pending",
        "workflow",
        "workflow",
    )
    counts = await deployment.services.queues.counts()
    assert counts["workflow"]["waiting"] == 1
    assert counts["billing"]["completed"] == 1
    # the first event names both, as the status does
    services = deployment.services
    entries = await services.redis.xrange(services.redis_keys.events(billed_id))
    first = decode_entry(billed_id, *entries[0])
    assert first.type == "execution.queued"
    assert (first.data["type"], first.data["queue"]) == ("realtime", "billing")


async def test_stats_metrics_and_admin_cover_named_queues(deployment: Deployment) -> None:
    submitted = await deployment.submit(queue="reports")  # no worker serves `reports`
    assert submitted.status_code == 202, submitted.text
    stats = (await deployment.http.get("/api/workflow/stats")).json()
    assert set(stats["queues"]) == {
        "realtime",
        "workflow",
        "scheduled",
        "background",
        "billing",
        "reports",
    }
    assert stats["queues"]["reports"]["waiting"] == 1
    metrics = (await deployment.http.get("/metrics")).text
    # (the tenant's rank makes a queued job a prioritized one in BullMQ's terms)
    assert 'wfe_queue_jobs{queue="reports",state="prioritized"} 1.0' in metrics
    listed = (await deployment.http.get("/api/admin/queues")).json()["queues"]
    by_name = {q["name"]: q for q in listed}
    assert by_name["billing"]["workers"] >= 1
    assert by_name["reports"]["workers"] == 0
    paused = await deployment.http.post("/api/admin/queues/billing/pause")
    assert paused.json() == {"name": "billing", "paused": True}
    held = await deployment.submit(queue="billing")
    held_id = held.json()["executionId"]
    assert (await deployment.services.queues.counts())["billing"]["waiting"] == 1
    url = str(deployment.http.base_url).rstrip("/")
    resumed = await asyncio.to_thread(
        subprocess.run,
        [WFE, "queues", "resume", "billing", "--url", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr

    async def done() -> bool:
        return (await deployment.context(held_id))["status"] == "completed"

    await wait_until(done, 30, "the held billing execution to complete after resume")


async def test_a_queue_that_is_not_declared_or_of_another_class_is_a_422(
    deployment: Deployment,
) -> None:
    unknown = await deployment.submit(queue="payroll")
    assert unknown.status_code == 422
    error = unknown.json()["error"]
    assert error["details"][0]["path"] == "queue"
    assert "no queue 'payroll'" in error["message"]
    assert "billing" in error["message"]
    mismatch = await deployment.submit(queue="billing", type="background")
    assert mismatch.status_code == 422
    assert mismatch.json()["error"]["details"][0]["path"] == "type"
    assert "of class 'realtime'" in mismatch.json()["error"]["message"]
    same = await deployment.submit(queue="billing", type="realtime")
    assert same.status_code == 202, same.text
    # a class is a queue too
    classed = await deployment.submit(queue="background")
    assert classed.status_code == 202
    assert (await deployment.context(classed.json()["executionId"]))["queue"] == "background"
    stored = await deployment.services.store.count_by_status()
    assert sum(stored.values()) == 2  # the refused ones left nothing behind


async def test_a_schedule_on_a_named_queue_ticks_there(deployment: Deployment) -> None:
    created = await deployment.submit(queue="billing", repeat={"every": 1000, "limit": 1})
    assert created.status_code == 201, created.text
    schedule_id = created.json()["scheduleId"]
    shown = (await deployment.http.get(f"/api/workflow/schedules/{schedule_id}")).json()
    assert (shown["type"], shown["queue"]) == ("realtime", "billing")

    async def ticked() -> list[dict[str, Any]]:
        page = (await deployment.http.get("/api/workflow/executions")).json()
        return [c for c in page["items"] if c["status"] == "completed"]

    ran = await wait_until(ticked, 30, "the schedule's tick to run on billing")
    assert ran[0]["queue"] == "billing"


def test_a_worker_refuses_a_queue_it_does_not_know(tmp_path: Path) -> None:
    env = settings_env(make_settings("redis://127.0.0.1:1", f"sqlite:///{tmp_path}/wfe.db"))
    refused = subprocess.run(
        [WFE, "worker", "--queues", "billing"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2
    assert "unknown queue(s): billing" in refused.stderr


async def test_a_process_without_the_named_queue_answers_503_naming_it(
    deployment: Deployment, redis_server: RedisServer
) -> None:
    """An API whose configuration lacks a named queue another process declared: touching an
    execution of that queue is a 503 that says so (was a KeyError, a 500)."""
    billed = (await deployment.submit(queue="billing")).json()["executionId"]

    async def done() -> bool:
        return (await deployment.context(billed))["status"] == "completed"

    await wait_until(done, 30, "the billing execution to complete")
    declared = deployment.services.settings
    settings = declared.model_copy(update={"named_queues": {}})  # same Redis, store, prefix
    services = await Services.open(settings)
    try:
        async with (
            served(create_app(settings, services)) as address,
            httpx.AsyncClient(base_url=f"http://{address}", timeout=30) as http,
        ):
            rerun = await http.post(f"/api/workflow/rerun/{billed}", json={"fromNode": "a"})
    finally:
        await services.close()
    assert rerun.status_code == 503, rerun.text
    assert "queue 'billing' is not declared in this process" in rerun.json()["error"]["message"]
    assert rerun.headers["retry-after"] == "1"
