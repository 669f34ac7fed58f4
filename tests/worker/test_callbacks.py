"""Completion callbacks (``callbackUrl``, issue 18) through a ``wfe worker`` process and the API
over a real socket, to a local receiver: signed, retried with backoff after a failure, sent for
an execution cancelled without a worker, logged in the status; a dead receiver holds no
worker slot."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import make_settings
from tests.support.http_server import LocalHttpServer
from tests.support.processes import Process, start_worker, wait_until
from tests.support.served import served
from tests.support.services import RedisServer, free_port
from workflow_engine.api.app import create_app
from workflow_engine.api.services import Services
from workflow_engine.queue.callbacks import CALLBACK_QUEUE, announce_end, delivery_id
from workflow_engine.vocabulary import ExecutionStatus

SECRET = "callback-test-secret"
ECHO = {"id": "echo", "nodes": [{"id": "a", "type": "echo", "inputs": {"value": 7}}]}


@dataclass
class Setup:
    http: httpx.AsyncClient
    receiver: LocalHttpServer
    worker: Process
    services: Services | None = None

    async def submit(self, url: str, **extra: Any) -> str:
        body = {"workflowDefinition": ECHO, "callbackUrl": url, **extra}
        submitted = await self.http.post("/api/workflow/execute", json=body)
        assert submitted.status_code == 202, submitted.text
        return str(submitted.json()["executionId"])

    async def status(self, execution_id: str) -> dict[str, Any]:
        return dict((await self.http.get(f"/api/workflow/status/{execution_id}")).json())

    async def deliveries(self, execution_id: str, count: int) -> list[dict[str, Any]]:
        async def logged() -> list[dict[str, Any]] | None:
            found = (await self.status(execution_id)).get("callback", {}).get("deliveries", [])
            return found if len(found) >= count else None

        return list(await wait_until(logged, 30, f"{count} deliveries of {execution_id}"))


@pytest.fixture
async def setup(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[Setup]:
    settings = make_settings(
        redis_server.url,
        f"sqlite:///{tmp_path}/wfe.db",
        callback_secret=SECRET,
        callback_attempts=3,
    )
    worker = await asyncio.to_thread(
        start_worker, settings, WFE_CALLBACK_SECRET=SECRET, WFE_CALLBACK_ATTEMPTS="3"
    )
    services = await Services.open(settings)
    receiver = await LocalHttpServer().start()
    try:
        async with (
            served(create_app(settings, services)) as address,
            httpx.AsyncClient(base_url=f"http://{address}", timeout=30) as http,
        ):
            yield Setup(http, receiver, worker, services)
    finally:
        await receiver.stop()
        await services.close()
        await asyncio.to_thread(worker.stop)


async def test_a_callback_is_signed_and_retried_until_the_receiver_takes_it(setup: Setup) -> None:
    url = f"{setup.receiver.base_url}/flaky/hook?fail=1"  # 503 first, then 200
    execution_id = await setup.submit(url)
    first, second = await setup.deliveries(execution_id, 2)
    assert (first["attempt"], first["status"]) == (1, 503)
    assert (second["attempt"], second["status"]) == (2, 200)
    sent = [r for r in setup.receiver.requests if r.path == "/flaky/hook"]
    assert len(sent) == 2
    assert sent[0].headers["x-wfe-delivery"] == sent[1].headers["x-wfe-delivery"]
    for request in sent:
        expected = hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
        assert request.headers["x-wfe-signature"] == f"sha256={expected}"
    body = json.loads(sent[1].body)
    assert body["context"]["executionId"] == execution_id
    assert body["context"]["status"] == "completed"
    assert body["result"] == {"a": {"value": 7}}
    status = await setup.status(execution_id)
    assert status["context"]["callbackUrl"] == url
    assert "_wfeCallback" not in status["context"]["metadata"]


async def test_an_execution_cancelled_before_it_ran_calls_back_too(setup: Setup) -> None:
    execution_id = await setup.submit(f"{setup.receiver.base_url}/echo/cb", delay=60_000)
    cancelled = await setup.http.post(f"/api/workflow/cancel/{execution_id}")
    assert cancelled.status_code == 200, cancelled.text
    [delivery] = await setup.deliveries(execution_id, 1)
    assert delivery["status"] == 200
    [request] = [r for r in setup.receiver.requests if r.path == "/echo/cb"]
    assert json.loads(request.body)["context"]["status"] == "cancelled"


async def test_a_dead_receiver_is_given_up_on_without_holding_the_worker(setup: Setup) -> None:
    dead = f"http://127.0.0.1:{free_port()}/nobody"  # nothing listens there
    execution_id = await setup.submit(dead)
    # while its callback waits to be tried again, the worker runs other executions
    others = [await setup.submit(f"{setup.receiver.base_url}/echo/ok") for _ in range(3)]
    for other in others:

        async def completed(other: str = other) -> bool:
            return (await setup.status(other))["context"]["status"] == "completed"

        await wait_until(completed, 15, "the other executions to complete")
    attempts = await setup.deliveries(execution_id, 3)
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert all("error" in a and "status" not in a for a in attempts)
    assert (await setup.status(execution_id))["context"]["status"] == "completed"


async def test_a_callback_url_must_be_http_and_the_server_must_sign(
    setup: Setup, redis_server: RedisServer, tmp_path: Path
) -> None:
    for url in ("file:///etc/passwd", "http://[::1", "http://h:99999/", "http://h:abc/"):
        refused = await setup.http.post(
            "/api/workflow/execute", json={"workflowDefinition": ECHO, "callbackUrl": url}
        )
        assert refused.status_code == 422, (url, refused.text)
        assert refused.json()["error"]["details"][0]["path"] == "callbackUrl"
    unsigned = make_settings(redis_server.url, f"sqlite:///{tmp_path}/other.db")
    services = await Services.open(unsigned)
    try:
        async with (
            served(create_app(unsigned, services)) as address,
            httpx.AsyncClient(base_url=f"http://{address}") as http,
        ):
            answer = await http.post(
                "/api/workflow/execute",
                json={"workflowDefinition": ECHO, "callbackUrl": "https://example.com/hook"},
            )
        assert answer.status_code == 422
        assert answer.json()["error"]["code"] == "not_configured"
    finally:
        await services.close()


async def test_each_tenant_verifies_its_callbacks_with_its_own_key(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Without WFE_CALLBACK_SECRET, each tenant's callbacks are signed with a key of its own
    (``GET /api/callbacks/secret``): one tenant's key does not verify another's callbacks."""
    keys = {"alice": "alice-key", "bob": "bob-key"}
    settings = make_settings(
        redis_server.url,
        f"sqlite:///{tmp_path}/wfe.db",
        secret_key="server-key",
        api_keys="alice=alice-key,bob=bob-key,ops:admin=ops-key",
    )
    worker = await asyncio.to_thread(start_worker, settings, WFE_SECRET_KEY="server-key")
    services = await Services.open(settings)
    receiver = await LocalHttpServer().start()
    try:
        async with served(create_app(settings, services)) as address:
            secrets: dict[str, str] = {}
            for tenant, key in keys.items():
                async with httpx.AsyncClient(
                    base_url=f"http://{address}",
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=30,
                ) as http:
                    issued = (await http.get("/api/callbacks/secret")).json()
                    assert issued["tenant"] == tenant
                    secrets[tenant] = issued["secret"]
                    setup = Setup(http, receiver, worker)
                    execution_id = await setup.submit(f"{receiver.base_url}/echo/{tenant}")
                    [delivery] = await setup.deliveries(execution_id, 1)
                    assert delivery["status"] == 200
            assert secrets["alice"] != secrets["bob"]
            for tenant, other in (("alice", "bob"), ("bob", "alice")):
                [request] = [r for r in receiver.requests if r.path == f"/echo/{tenant}"]
                signature = request.headers["x-wfe-signature"]

                def signed(secret: str, body: bytes = request.body) -> str:
                    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()

                assert signature == signed(secrets[tenant])
                assert signature != signed(secrets[other])
                assert json.loads(request.body)["context"]["userId"] == tenant
            async with httpx.AsyncClient(base_url=f"http://{address}") as http:
                assert (await http.get("/api/callbacks/secret")).status_code == 401
    finally:
        await receiver.stop()
        await services.close()
        await asyncio.to_thread(worker.stop)


async def test_an_operators_callback_secret_is_read_by_admin_keys_only(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    settings = make_settings(
        redis_server.url,
        f"sqlite:///{tmp_path}/wfe.db",
        callback_secret=SECRET,
        api_keys="alice=alice-key,ops:admin=ops-key",
    )
    services = await Services.open(settings)
    try:
        async with (
            served(create_app(settings, services)) as address,
            httpx.AsyncClient(base_url=f"http://{address}") as http,
        ):
            tenant = await http.get(
                "/api/callbacks/secret", headers={"Authorization": "Bearer alice-key"}
            )
            assert tenant.status_code == 403
            assert "WFE_CALLBACK_SECRET" in tenant.json()["error"]["message"]
            admin = await http.get(
                "/api/callbacks/secret", headers={"Authorization": "Bearer ops-key"}
            )
            assert admin.status_code == 200
            assert admin.json()["secret"] == SECRET
    finally:
        await services.close()


async def test_an_end_recorded_but_never_announced_calls_back_when_its_job_is_taken_again(
    setup: Setup,
) -> None:
    """A worker that crashed after storing an execution's end, before queueing its callback and
    acknowledging its job: the worker that takes the job over finds the execution ended and
    announces it. Announcing an end again queues no second delivery."""
    services = setup.services
    assert services is not None
    await services.admin.pause("workflow")
    execution_id = await setup.submit(f"{setup.receiver.base_url}/echo/late")
    # what the crashed worker got done: the run and its end, in the store only
    assert await services.store.mark_running(execution_id, 1) is not None
    assert await services.store.finish(
        execution_id, ExecutionStatus.COMPLETED, result={"a": {"value": 7}}
    )
    await services.admin.resume("workflow")
    [delivery] = await setup.deliveries(execution_id, 1)
    assert delivery["status"] == 200
    [request] = [r for r in setup.receiver.requests if r.path == "/echo/late"]
    assert json.loads(request.body)["context"]["status"] == "completed"
    assert request.headers["x-wfe-delivery"] == delivery["deliveryId"]
    background = services.queues[CALLBACK_QUEUE]
    record = await services.store.get(execution_id)
    assert record is not None
    assert delivery["deliveryId"] == delivery_id(execution_id, record.completed_at or 0)
    job = await background.getJob(delivery["deliveryId"])
    assert job is not None
    await announce_end(services.queues, services.settings, record)  # announced again
    again = await background.getJob(delivery["deliveryId"])
    assert again is not None
    assert (again.data, again.processedOn) == (job.data, job.processedOn)
    assert await background.getJobState(delivery["deliveryId"]) == "completed"
