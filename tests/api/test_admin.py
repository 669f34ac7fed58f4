"""Queue administration over the API (SPEC section 11), with a ``wfe worker`` process and the
API over a real socket: pause/resume, clean by state, retry the failed jobs; the store stays
consistent with the queue after each."""

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
from tests.support.http_server import LocalHttpServer
from tests.support.processes import WFE, Process, start_worker, wait_until
from tests.support.served import served
from tests.support.services import RedisServer
from workflow_engine.api.app import create_app
from workflow_engine.api.services import Services

SECRET_KEY = "admin-test-secret"
ADMIN = {"Authorization": "Bearer key-admin"}
TENANT = {"Authorization": "Bearer key-a"}
ECHO = {"id": "echo", "nodes": [{"id": "a", "type": "echo", "inputs": {"value": 1}}]}


@dataclass
class Deployment:
    http: httpx.AsyncClient
    services: Services
    worker: Process

    async def submit(self, definition: dict[str, Any], **extra: Any) -> str:
        submitted = await self.http.post(
            "/api/workflow/execute",
            json={"workflowDefinition": definition, **extra},
            headers=TENANT,
        )
        assert submitted.status_code == 202, submitted.text
        return str(submitted.json()["executionId"])

    async def status(self, execution_id: str) -> str:
        body = await self.http.get(f"/api/workflow/status/{execution_id}", headers=TENANT)
        return str(body.json()["context"]["status"])

    async def reaches(self, execution_id: str, status: str) -> None:
        async def there() -> bool:
            return await self.status(execution_id) == status

        await wait_until(there, 30, f"{execution_id} to be {status}")

    async def queue(self, name: str) -> dict[str, Any]:
        listed = await self.http.get("/api/admin/queues", headers=ADMIN)
        assert listed.status_code == 200, listed.text
        return next(q for q in listed.json()["queues"] if q["name"] == name)


@pytest.fixture
async def deployment(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[Deployment]:
    settings = make_settings(
        redis_server.url,
        f"sqlite:///{tmp_path}/wfe.db",
        api_keys="a=key-a,ops:admin=key-admin",
        secret_key=SECRET_KEY,
    )
    worker = await asyncio.to_thread(start_worker, settings, WFE_SECRET_KEY=SECRET_KEY)
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


async def test_only_an_admin_key_administers_the_queues(deployment: Deployment) -> None:
    refused = await deployment.http.post("/api/admin/queues/workflow/pause", headers=TENANT)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    assert (await deployment.http.get("/api/admin/queues", headers=TENANT)).status_code == 403
    unknown = await deployment.http.post("/api/admin/queues/nope/pause", headers=ADMIN)
    assert unknown.status_code == 404
    queue = await deployment.queue("workflow")
    assert queue["paused"] is False
    assert queue["workers"] >= 1
    assert set(queue["jobs"]) >= {"waiting", "prioritized", "active", "completed", "failed"}


def wfe(deployment: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI against the deployment's API, as an operator runs it."""
    url = str(deployment.http.base_url).rstrip("/")
    return subprocess.run(
        [WFE, *args, "--url", url, "--key", "key-admin"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_a_paused_queue_keeps_its_jobs_until_resumed(deployment: Deployment) -> None:
    paused = await asyncio.to_thread(wfe, deployment, "queues", "pause", "workflow")
    assert paused.returncode == 0, paused.stderr
    assert json.loads(paused.stdout) == {"name": "workflow", "paused": True}
    held = await deployment.submit(ECHO)  # submits still queue

    async def queued() -> bool:
        jobs = (await deployment.queue("workflow"))["jobs"]
        return jobs["waiting"] + jobs["prioritized"] + jobs["paused"] == 1

    await wait_until(queued, 10, "the job to wait in the paused queue")
    assert await deployment.status(held) == "pending"
    assert (await deployment.queue("workflow"))["paused"] is True
    # --url before the subcommand would be ignored (another server acted on): refused
    url = str(deployment.http.base_url).rstrip("/")
    misplaced = await asyncio.to_thread(
        subprocess.run,
        [WFE, "queues", "--url", url, "resume", "workflow"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert misplaced.returncode == 2
    assert "put --url after the command" in misplaced.stderr
    assert (await deployment.queue("workflow"))["paused"] is True
    listed = await asyncio.to_thread(wfe, deployment, "queues")
    assert listed.returncode == 0, listed.stderr
    assert any(line.startswith("workflow\tpaused\t") for line in listed.stdout.splitlines()), (
        listed.stdout
    )
    resumed = await deployment.http.post("/api/admin/queues/workflow/resume", headers=ADMIN)
    assert resumed.json() == {"name": "workflow", "paused": False}
    await deployment.reaches(held, "completed")


async def test_cleaning_waiting_jobs_cancels_their_executions(deployment: Deployment) -> None:
    await deployment.http.post("/api/admin/queues/workflow/pause", headers=ADMIN)
    doomed = [await deployment.submit(ECHO) for _ in range(3)]
    bad = await deployment.http.post(
        "/api/admin/queues/workflow/clean", json={"state": "active"}, headers=ADMIN
    )
    assert bad.status_code == 422
    cleaned = await deployment.http.post(
        "/api/admin/queues/workflow/clean", json={"state": "wait", "limit": 2}, headers=ADMIN
    )
    assert cleaned.status_code == 200, cleaned.text
    assert cleaned.json() == {"name": "workflow", "state": "wait", "removed": 2, "cancelled": 2}
    statuses = [await deployment.status(i) for i in doomed]
    assert sorted(statuses) == ["cancelled", "cancelled", "pending"]
    await deployment.http.post("/api/admin/queues/workflow/resume", headers=ADMIN)
    await deployment.reaches(doomed[statuses.index("pending")], "completed")


async def test_retrying_the_failed_jobs_runs_their_executions_again(
    deployment: Deployment,
) -> None:
    server = await LocalHttpServer().start()
    try:
        flaky = {  # fails at the first request, answers at the second
            "id": "flaky",
            "nodes": [
                {"id": "first", "type": "echo", "inputs": {"value": "kept"}},
                {
                    "id": "call",
                    "type": "http",
                    "inputs": {"url": f"{server.base_url}/flaky/x?fail=1"},
                },
            ],
            "edges": [{"source": "first", "target": "call"}],
        }
        failed = await deployment.submit(flaky, callbackUrl=f"{server.base_url}/echo/cb")
        await deployment.reaches(failed, "failed")
        done = await deployment.submit(ECHO)
        await deployment.reaches(done, "completed")
        retried = await deployment.http.post(
            "/api/admin/queues/workflow/retry-failed", headers=ADMIN
        )
        assert retried.json() == {"name": "workflow", "retried": 1}
        await deployment.reaches(failed, "completed")
        body = (
            await deployment.http.get(
                f"/api/workflow/status/{failed}", params={"nodes": "true"}, headers=TENANT
            )
        ).json()
        assert body["context"]["error"] is None
        assert body["context"]["attempts"] == 1  # the retried job's attempts start again
        nodes = {n["nodeId"]: n for n in body["nodes"]}
        assert nodes["call"]["output"]["body"] == {"hits": 2}
        assert server.hits["/flaky/x"] == 2
        assert nodes["first"]["attempt"] == 1  # restored, not run again
        # a client following the retried execution gets its new end, not the old failure
        events = await deployment.http.get(f"/api/workflow/events/{failed}", headers=TENANT)
        assert "execution.failed" not in events.text
        assert "execution.completed" in events.text
        again = await deployment.http.post("/api/admin/queues/workflow/retry-failed", headers=ADMIN)
        assert again.json() == {"name": "workflow", "retried": 0}

        # its callback told of the failure, then of the retried run's end
        async def called_back() -> list[str] | None:
            calls = [r for r in server.requests if r.path == "/echo/cb"]
            ends = [json.loads(r.body)["context"]["status"] for r in calls]
            return ends if len(ends) == 2 else None

        assert await wait_until(called_back, 30, "two callbacks") == ["failed", "completed"]
    finally:
        await server.stop()
