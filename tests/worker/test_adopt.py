"""Jobs enqueued straight into BullMQ (as a Node service's ``queue.add`` would), with no
execution record: the worker creates the record and runs them; an invalid one fails its job
with every problem named, and leaves no record; one cannot take over another tenant's
execution by naming it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from bullmq import Queue

from tests.support.processes import wait_until
from workflow_engine.api.services import Services
from workflow_engine.keys import Keys
from workflow_engine.worker.worker import WorkerService

ECHO = {
    "id": "direct",
    "input_schema": {"type": "object", "properties": {"n": {"type": "integer"}}},
    "nodes": [{"id": "a", "type": "echo", "inputs": {"value": "{{ inputs.n }}"}}],
}


@pytest.fixture
async def producer(services: Services) -> AsyncIterator[Queue]:
    """A bare BullMQ queue on the ``workflow`` queue's keys: what another producer sees."""
    queue = Queue(
        "workflow",
        {
            "connection": services.settings.redis_url,
            "prefix": Keys(services.settings.queue_prefix).bullmq_prefix,
        },
    )
    worker = WorkerService(services.settings, services.store)
    await worker.start()
    yield queue
    await worker.stop(grace=5)
    await worker.executor.aclose()
    await queue.close()


async def failed_reason(producer: Queue, job_id: str) -> str | None:
    if await producer.getJobState(job_id) != "failed":
        return None
    found = await producer.getJob(job_id)
    return str(found.failedReason) if found is not None else None


async def status_of(api: httpx.AsyncClient, execution_id: str) -> dict[str, Any] | None:
    answer = await api.get(f"/api/workflow/status/{execution_id}")
    return answer.json() if answer.status_code == 200 else None


async def test_a_job_enqueued_without_a_record_runs_and_is_recorded(
    producer: Queue, api: httpx.AsyncClient
) -> None:
    data = {"workflowDefinition": ECHO, "inputs": {"n": 5}, "clientId": "node-app"}
    await producer.add("execute", data, {"jobId": "order-42"})

    async def completed(execution_id: str) -> dict[str, Any] | None:
        found = await status_of(api, execution_id)
        return found if found and found["context"]["status"] == "completed" else None

    status = await wait_until(lambda: completed("order-42"), 30, "order-42 to complete")
    assert status["result"] == {"a": {"value": 5}}
    assert status["context"]["clientId"] == "node-app"
    assert status["context"]["userId"] == "anonymous"
    events = await api.get("/api/workflow/events/order-42")
    assert "execution.queued" in events.text
    assert "execution.completed" in events.text


async def test_an_invalid_job_fails_naming_each_problem_and_leaves_no_record(
    producer: Queue, api: httpx.AsyncClient
) -> None:
    broken = {"id": "broken", "nodes": [{"id": "a", "type": "no_such_type"}]}
    job = await producer.add("execute", {"workflowDefinition": broken}, {"jobId": "bad-1"})
    wrong_inputs = await producer.add(
        "execute", {"workflowDefinition": ECHO, "inputs": {"n": "five"}}, {"jobId": "bad-2"}
    )
    not_a_workflow = await producer.add("execute", {"hello": 1}, {"jobId": "bad-3"})
    numbered = await producer.add("execute", {"workflowDefinition": ECHO})

    def failed(job_id: str) -> Any:
        return failed_reason(producer, job_id)

    reason = await wait_until(lambda: failed(str(job.id)), 30, "the invalid job to fail")
    assert "nodes[0].type" in reason
    reason = await wait_until(lambda: failed(str(wrong_inputs.id)), 30, "bad inputs to fail")
    assert "invalid workflow inputs" in reason
    reason = await wait_until(lambda: failed(str(not_a_workflow.id)), 30, "no workflow to fail")
    assert "workflowDefinition must be an object" in reason
    reason = await wait_until(lambda: failed(str(numbered.id)), 30, "a numbered job to fail")
    assert "needs a jobId" in reason
    for execution_id in ("bad-1", "bad-2", "bad-3"):
        assert (await api.get(f"/api/workflow/status/{execution_id}")).status_code == 404


async def test_a_direct_job_naming_another_tenants_execution_does_not_run_on_it(
    producer: Queue, api: httpx.AsyncClient
) -> None:
    submitted = await api.post(
        "/api/workflow/execute", json={"workflowDefinition": ECHO, "inputs": {"n": 1}}
    )
    own = submitted.json()["executionId"]

    async def ended() -> bool:
        found = await status_of(api, own)
        return bool(found and found["context"]["status"] == "completed")

    await wait_until(ended, 30, "the API's execution to complete")
    # once its job is gone, another producer reuses that id as its jobId, as another tenant
    # (the job is acknowledged just after the execution's end is stored: wait for that)

    async def acknowledged() -> bool:
        return bool(await producer.getJobState(own) == "completed")

    await wait_until(acknowledged, 30, "the API's job to be acknowledged")
    assert await producer.remove(own) == 1
    data = {"workflowDefinition": ECHO, "inputs": {"n": 99}, "tenantId": "mallory"}
    hijack = await producer.add("execute", data, {"jobId": own})
    reason = await wait_until(
        lambda: failed_reason(producer, str(hijack.id)), 30, "the job naming it to fail"
    )
    assert "another tenant" in reason
    status = await status_of(api, own)
    assert status is not None
    assert status["result"] == {"a": {"value": 1}}
