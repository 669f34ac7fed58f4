"""Durable execution in one process: checkpoints before dependants, resuming from them, parked
executions (``delay``, ``wait_input``) that hold no worker, and answers over the API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import httpx
import orjson
import pytest
import redis.asyncio as aioredis

from tests.support.processes import wait_until
from tests.worker.test_runner import finished, records
from workflow_engine.api.services import Services
from workflow_engine.keys import Keys
from workflow_engine.queue.queues import JOB_NAME
from workflow_engine.queue.submit import Submission, job_data
from workflow_engine.store.base import StateStore
from workflow_engine.store.records import ExecutionRecord
from workflow_engine.vocabulary import ExecutionStatus, NodeResult, NodeStatus
from workflow_engine.worker.worker import WorkerService

APPROVAL = json.loads(
    (Path(__file__).resolve().parents[2] / "examples" / "approval.json").read_text()
)


def chain(settings: Any, key: str, length: int = 3) -> dict[str, Any]:
    nodes = [
        {
            "id": f"n{i}",
            "type": "record",
            "inputs": {"redis_url": settings.redis_url, "key": key},
        }
        for i in range(length)
    ]
    edges = [{"source": f"n{i}", "target": f"n{i + 1}"} for i in range(length - 1)]
    return {"id": "chain", "nodes": nodes, "edges": edges}


async def status(api: httpx.AsyncClient, execution_id: str) -> dict[str, Any]:
    body: dict[str, Any] = (await api.get(f"/api/workflow/status/{execution_id}?nodes=true")).json()
    return body


async def reaches(api: httpx.AsyncClient, execution_id: str, wanted: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        body = await status(api, execution_id)
        return body if body["context"]["status"] == wanted else None

    found: dict[str, Any] = await wait_until(check, 20, f"{execution_id} to be {wanted}")
    return found


# -- checkpoints ---------------------------------------------------------------------------


async def test_a_running_node_sees_its_predecessors_checkpointed(
    services: Services, worker: WorkerService
) -> None:
    settings = services.settings
    checkpoint = Keys(settings.queue_prefix).checkpoint("{{ execution.id }}")
    definition = {
        "id": "peeking",
        "nodes": [
            {
                "id": "first",
                "type": "record",
                "inputs": {"redis_url": settings.redis_url, "key": "k"},
            },
            {
                "id": "peek",
                "type": "peek",
                "inputs": {"redis_url": settings.redis_url, "key": checkpoint},
            },
        ],
        "edges": [{"source": "first", "target": "peek"}],
    }
    submitted = await services.submitter.submit(Submission(definition))
    record = await finished(services, submitted.execution_id)
    assert record.status is ExecutionStatus.COMPLETED
    # what the second node saw in Redis: the first one's result (the executor waits for the
    # checkpoint: see tests/engine/test_durable_runs.py)
    assert record.result["peek"]["first"] == "completed"
    client = aioredis.Redis.from_url(settings.redis_url)
    try:  # the execution ended: its checkpoint is gone, the store has everything
        assert not await client.exists(
            Keys(settings.queue_prefix).checkpoint(submitted.execution_id)
        )
    finally:
        await client.aclose()


async def enqueue_resumed(
    services: Services, execution_id: str, definition: dict[str, Any]
) -> None:
    """An execution an earlier run (that died) had claimed."""
    record = ExecutionRecord(
        execution_id=execution_id,
        workflow_id=definition["id"],
        tenant_id="t",
        queue="workflow",
        definition=definition,
        inputs={},
    )
    await services.store.create(record)
    await services.store.mark_running(execution_id, 1)
    await services.queues["workflow"].add(JOB_NAME, job_data(record), {"jobId": execution_id})


async def test_a_resumed_run_restores_nodes_only_the_redis_checkpoint_had(
    services: Services,
) -> None:
    """The earlier run finished n0 (checkpoint written; its store write had not committed) and
    was in n1, attempt 1, when it died. The next run keeps n0's output, runs n1 as attempt 2,
    and the store ends with every node."""
    settings = services.settings
    key = f"{settings.queue_prefix}:ckpt"
    definition = chain(settings, key)
    keys = Keys(settings.queue_prefix)
    done = NodeResult(
        "n0", "record", None, NodeStatus.COMPLETED, {}, {"pid": 1, "node": "n0"}, None, 1, 1.0, 2.0
    )
    client = aioredis.Redis.from_url(settings.redis_url)
    await client.hset(
        keys.checkpoint("exec_ckpt"),
        mapping={
            "n0": orjson.dumps(done.to_dict()),
            "n1": json.dumps({"status": "running", "attempt": 1}),
        },
    )
    await client.aclose()
    await enqueue_resumed(services, "exec_ckpt", definition)
    worker = WorkerService(settings, services.store)
    await worker.start()
    try:
        record = await finished(services, "exec_ckpt")
    finally:
        await worker.stop()
        await worker.executor.aclose()
    assert record.status is ExecutionStatus.COMPLETED
    assert [r["nodeId"] for r in await records(settings, key)] == ["n1", "n2"]
    nodes = {n.node_id: n for n in await services.store.node_results("exec_ckpt")}
    assert nodes["n0"].output == {"pid": 1, "node": "n0"}
    assert (nodes["n0"].attempt, nodes["n1"].attempt, nodes["n2"].attempt) == (1, 2, 1)


# -- parking -----------------------------------------------------------------------------


@pytest.fixture
def parking_settings(services: Services) -> Any:
    return services.settings.model_copy(update={"park_after_s": 0.2})


async def test_a_long_delay_parks_the_execution_and_resumes_it(
    services: Services, api: httpx.AsyncClient
) -> None:
    settings = services.settings.model_copy(update={"park_after_s": 0.2})
    worker = WorkerService(settings, services.store)
    await worker.start()
    try:
        definition = {
            "id": "sleepy",
            "nodes": [
                {"id": "before", "type": "transform", "inputs": {"value": 1}},
                {"id": "wait", "type": "delay", "inputs": {"seconds": 1.0}},
                {
                    "id": "after",
                    "type": "output",
                    "inputs": {"value": "{{ nodes.before.output + 1 }}"},
                },
            ],
            "edges": [
                {"source": "before", "target": "wait"},
                {"source": "wait", "target": "after"},
            ],
        }
        submitted = await services.submitter.submit(Submission(definition))
        parked = await reaches(api, submitted.execution_id, "waiting")
        assert submitted.execution_id not in worker.runner.active  # no worker holds it
        waiting = {n["nodeId"]: n for n in parked["nodes"]}["wait"]
        assert waiting["status"] == "waiting"
        assert waiting["output"]["waitingFor"] == "time"
        final = await reaches(api, submitted.execution_id, "completed")
    finally:
        await worker.stop()
        await worker.executor.aclose()
    assert final["result"] == 2
    nodes = {n["nodeId"]: n for n in final["nodes"]}
    assert nodes["wait"]["status"] == "completed"
    assert nodes["wait"]["output"] == {"delayed": 1.0}
    assert nodes["wait"]["durationMs"] >= 1000  # from its first start, parked time included
    assert nodes["before"]["attempt"] == 1  # restored, not run again
    assert nodes["after"]["attempt"] == 1
    assert final["context"]["attempts"] == 1  # woken up, not tried again


def asking(settings: Any, *, timeout: float | None = None) -> dict[str, Any]:
    ask: dict[str, Any] = {
        "prompt": "Approve the refund?",
        "schema": {
            "type": "object",
            "properties": {"approved": {"type": "boolean"}, "note": {"type": "string"}},
            "required": ["approved"],
        },
    }
    if timeout is not None:
        ask["timeout"] = timeout
    return {
        "id": "approval",
        "nodes": [
            {"id": "ask", "type": "wait_input", "inputs": ask, "on_error": "branch"},
            {
                "id": "decide",
                "type": "output",
                "inputs": {"value": "{{ nodes.ask.output.approved }}"},
            },
            {"id": "too_late", "type": "output", "inputs": {"value": "timed out"}},
        ],
        "edges": [
            {"source": "ask", "target": "decide"},
            {"source": "ask", "target": "too_late", "branch": "error"},
        ],
    }


@pytest.mark.usefixtures("worker")
async def test_wait_input_parks_until_a_valid_answer_is_posted(
    services: Services, api: httpx.AsyncClient
) -> None:
    submitted = await api.post(
        "/api/workflow/execute", json={"workflowDefinition": asking(services.settings)}
    )
    execution_id = submitted.json()["executionId"]
    parked = await reaches(api, execution_id, "waiting")
    ticket = {n["nodeId"]: n for n in parked["nodes"]}["ask"]["output"]
    assert ticket["prompt"] == "Approve the refund?"
    assert ticket["schema"]["required"] == ["approved"]
    assert ticket["timeoutAt"] is None

    bad = await api.post(f"/api/workflow/resume/{execution_id}", json={"input": {"note": 3}})
    assert bad.status_code == 422
    error = bad.json()["error"]
    assert error["code"] == "invalid_answer"
    problems = {(d["path"], d["message"]) for d in error["details"]}
    assert ("input", "'approved' is a required property") in problems
    assert ("input.note", "3 is not of type 'string'") in problems
    assert (await status(api, execution_id))["context"]["status"] == "waiting"  # nothing changed

    good = await api.post(
        f"/api/workflow/resume/{execution_id}", json={"input": {"approved": True}}
    )
    assert good.status_code == 202
    assert good.json() == {"executionId": execution_id, "nodeId": "ask", "status": "resumed"}
    final = await reaches(api, execution_id, "completed")
    assert final["result"] is True
    nodes = {n["nodeId"]: n for n in final["nodes"]}
    assert nodes["ask"]["output"] == {"approved": True}
    assert nodes["too_late"]["status"] == "skipped"
    assert final["context"]["attempts"] == 1  # an answer is not a retry

    again = await api.post(
        f"/api/workflow/resume/{execution_id}", json={"input": {"approved": True}}
    )
    assert again.status_code == 409
    missing = await api.post("/api/workflow/resume/exec_nope", json={"input": 1})
    assert missing.status_code == 404


@pytest.mark.usefixtures("worker")
async def test_wait_input_timeout_takes_the_error_branch(
    services: Services, api: httpx.AsyncClient
) -> None:
    submitted = await api.post(
        "/api/workflow/execute",
        json={"workflowDefinition": asking(services.settings, timeout=0.5)},
    )
    execution_id = submitted.json()["executionId"]
    final = await reaches(api, execution_id, "completed")
    assert final["result"] == "timed out"
    ask = {n["nodeId"]: n for n in final["nodes"]}["ask"]
    assert ask["status"] == "failed"
    assert ask["error"]["type"] == "timeout"


@pytest.mark.usefixtures("worker")
async def test_a_waiting_execution_can_be_cancelled(
    services: Services, api: httpx.AsyncClient
) -> None:
    submitted = await api.post(
        "/api/workflow/execute", json={"workflowDefinition": asking(services.settings)}
    )
    execution_id = submitted.json()["executionId"]
    await reaches(api, execution_id, "waiting")
    cancelled = await api.post(f"/api/workflow/cancel/{execution_id}")
    assert cancelled.status_code == 200
    assert (await status(api, execution_id))["context"]["status"] == "cancelled"
    await parked_job_leaves(services)
    late = await api.post(
        f"/api/workflow/resume/{execution_id}", json={"input": {"approved": True}}
    )
    assert late.status_code == 409


async def parked_job_leaves(services: Services) -> None:
    """The job of a cancelled parked execution leaves the queue (the worker may still be
    handing it back to BullMQ when the cancel returns; it must not stay delayed for ever)."""

    async def check() -> bool:
        counts = (await services.queues.counts())["workflow"]
        return counts["delayed"] == counts["waiting"] == counts["active"] == 0

    await wait_until(check, 10, "the cancelled execution's job to leave the queue")


class CancelledWhileParking:
    """The real store, with a cancel over the API landing at the worst moment: the record
    says waiting but the job is still active (locked), so the canceller cannot remove it."""

    def __init__(self, store: StateStore, api: httpx.AsyncClient) -> None:
        self._store = store
        self._api = api
        self.cancels: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def transition(self, execution_id: str, to: ExecutionStatus, **kw: Any) -> bool:
        done = await self._store.transition(execution_id, to, **kw)
        if done and to is ExecutionStatus.WAITING:
            answer = await self._api.post(f"/api/workflow/cancel/{execution_id}")
            self.cancels.append(answer.status_code)
        return done


async def test_a_cancel_while_the_job_is_being_parked_still_removes_it(
    services: Services, api: httpx.AsyncClient
) -> None:
    store = CancelledWhileParking(services.store, api)
    worker = WorkerService(services.settings, cast(StateStore, store))
    await worker.start()
    try:
        submitted = await api.post(
            "/api/workflow/execute", json={"workflowDefinition": asking(services.settings)}
        )
        execution_id = submitted.json()["executionId"]
        await reaches(api, execution_id, "cancelled")
        await parked_job_leaves(services)
        assert store.cancels == [200]
    finally:
        await worker.stop(grace=5)
        await worker.executor.aclose()


@pytest.mark.usefixtures("worker")
async def test_with_several_nodes_waiting_the_answer_names_one(
    services: Services, api: httpx.AsyncClient
) -> None:
    definition = {
        "id": "two_asks",
        "nodes": [
            {"id": "a", "type": "wait_input", "inputs": {"prompt": "a?"}},
            {
                "id": "b",
                "type": "wait_input",
                "inputs": {"prompt": "b?", "schema": {"type": "integer"}},
            },
            {
                "id": "sum",
                "type": "output",
                "inputs": {"value": "{{ [nodes.a.output, nodes.b.output] }}"},
            },
        ],
        "edges": [{"source": "a", "target": "sum"}, {"source": "b", "target": "sum"}],
    }
    submitted = await api.post("/api/workflow/execute", json={"workflowDefinition": definition})
    execution_id = submitted.json()["executionId"]
    await reaches(api, execution_id, "waiting")
    unnamed = await api.post(f"/api/workflow/resume/{execution_id}", json={"input": 1})
    assert unnamed.status_code == 422
    assert unnamed.json()["error"]["details"][0]["path"] == "nodeId"
    wrong = await api.post(
        f"/api/workflow/resume/{execution_id}", json={"nodeId": "b", "input": "x"}
    )
    assert wrong.status_code == 422
    first = await api.post(
        f"/api/workflow/resume/{execution_id}", json={"nodeId": "a", "input": "x"}
    )
    assert first.status_code == 202

    # a resumed, b still waits: the execution parks again
    async def only_b_waits() -> bool:
        body = await status(api, execution_id)
        nodes = {n["nodeId"]: n["status"] for n in body["nodes"]}
        return body["context"]["status"] == "waiting" and nodes.get("a") == "completed"

    await wait_until(only_b_waits, 20, "a to complete and b to wait")
    second = await api.post(f"/api/workflow/resume/{execution_id}", json={"input": 2})
    assert second.status_code == 202
    final = await reaches(api, execution_id, "completed")
    assert final["result"] == ["x", 2]


async def test_wait_input_schema_is_checked_at_submit(
    services: Services, api: httpx.AsyncClient
) -> None:
    definition = {
        "id": "bad_schema",
        "nodes": [{"id": "ask", "type": "wait_input", "inputs": {"schema": {"type": "nope"}}}],
        "edges": [],
    }
    response = await api.post("/api/workflow/execute", json={"workflowDefinition": definition})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["path"].startswith(
        "workflowDefinition.nodes[0].inputs.schema"
    )


@pytest.mark.usefixtures("worker")
async def test_the_approval_example_waits_for_a_person_as_documented(
    services: Services, api: httpx.AsyncClient
) -> None:
    body = {
        "workflowDefinition": APPROVAL,
        "inputs": {"order": "A-1", "amount": 30},
    }
    execution_id = (await api.post("/api/workflow/execute", json=body)).json()["executionId"]
    parked = await reaches(api, execution_id, "waiting")
    ticket = {n["nodeId"]: n for n in parked["nodes"]}["ask"]["output"]
    assert ticket["prompt"] == "Refund 30 for order A-1?"
    answer = {"input": {"approved": False, "note": "duplicate"}}
    assert (await api.post(f"/api/workflow/resume/{execution_id}", json=answer)).status_code == 202
    final = await reaches(api, execution_id, "completed")
    assert final["result"] == {"order": "A-1", "status": "rejected", "note": "duplicate"}
    assert {n["nodeId"]: n["status"] for n in final["nodes"]}["expired"] == "skipped"
