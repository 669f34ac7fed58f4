"""Jobs enqueued straight into BullMQ (as a Node service's ``queue.add`` would), with no
execution record: the worker creates the record and runs them; an invalid one fails its job
with every problem named, and leaves no record."""

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


async def status_of(api: httpx.AsyncClient, execution_id: str) -> dict[str, Any] | None:
    answer = await api.get(f"/api/workflow/status/{execution_id}")
    return answer.json() if answer.status_code == 200 else None


async def test_a_job_enqueued_without_a_record_runs_and_is_recorded(
    producer: Queue, api: httpx.AsyncClient
) -> None:
    data = {"workflowDefinition": ECHO, "inputs": {"n": 5}, "clientId": "node-app"}
    await producer.add("execute", data, {"jobId": "order-42"})
    numbered = await producer.add("execute", {"workflowDefinition": ECHO, "inputs": {"n": 6}})

    async def completed(execution_id: str) -> dict[str, Any] | None:
        found = await status_of(api, execution_id)
        return found if found and found["context"]["status"] == "completed" else None

    status = await wait_until(lambda: completed("order-42"), 30, "order-42 to complete")
    assert status["result"] == {"a": {"value": 5}}
    assert status["context"]["clientId"] == "node-app"
    assert status["context"]["userId"] == "anonymous"
    # no jobId: BullMQ numbered it; the execution is named after its queue and number
    other = await wait_until(
        lambda: completed(f"workflow-{numbered.id}"), 30, "the numbered job to complete"
    )
    assert other["result"] == {"a": {"value": 6}}
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

    async def failed(job_id: str) -> str | None:
        if await producer.getJobState(job_id) != "failed":
            return None
        found = await producer.getJob(job_id)
        return str(found.failedReason) if found is not None else None

    reason = await wait_until(lambda: failed(str(job.id)), 30, "the invalid job to fail")
    assert "nodes[0].type" in reason
    reason = await wait_until(lambda: failed(str(wrong_inputs.id)), 30, "bad inputs to fail")
    assert "invalid workflow inputs" in reason
    reason = await wait_until(lambda: failed(str(not_a_workflow.id)), 30, "no workflow to fail")
    assert "workflowDefinition must be an object" in reason
    for execution_id in ("bad-1", "bad-2", "bad-3"):
        assert (await api.get(f"/api/workflow/status/{execution_id}")).status_code == 404
