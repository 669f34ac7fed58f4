"""The ``workflow`` node (SPEC section 9): a child execution of its own (same tenant and
queue, linked to its parent in its context), the parent parked while it runs, its result the
node's output; its failure the node's; cancelling the parent cancels it; nesting is bounded."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.test_api import final_status
from tests.conftest import make_settings
from tests.support.processes import wait_until
from tests.support.services import RedisServer
from tests.worker.test_durable import reaches, status
from tests.worker.test_durable_processes import events_of
from workflow_engine.api.app import create_app
from workflow_engine.api.services import Services
from workflow_engine.config import Queues, QueueSettings
from workflow_engine.queue.children import deliver_finished_children, notify_parent
from workflow_engine.store.base import Start
from workflow_engine.store.records import PARENT_KEY, ExecutionRecord
from workflow_engine.vocabulary import ExecutionStatus, NodeResult, NodeStatus
from workflow_engine.worker.worker import WorkerService

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def child(workflow_id: str = "child", **extra: Any) -> dict[str, Any]:
    return {
        "id": workflow_id,
        "nodes": [
            {
                "id": "double",
                "type": "output",
                "inputs": {"value": {"twice": "{{ inputs.n * 2 }}"}},
            }
        ],
        **extra,
    }


def parent(call: dict[str, Any], workflow_id: str = "parent", **node: Any) -> dict[str, Any]:
    return {
        "id": workflow_id,
        "nodes": [
            {"id": "call", "type": "workflow", "inputs": call, **node},
            {
                "id": "out",
                "type": "output",
                "inputs": {"value": "{{ nodes.call.output }}"},
            },
        ],
        "edges": [{"source": "call", "target": "out"}],
    }


async def execute(api: httpx.AsyncClient, definition: dict[str, Any], **body: Any) -> str:
    response = await api.post(
        "/api/workflow/execute", json={"workflowDefinition": definition, **body}
    )
    assert response.status_code in (200, 201, 202), response.text
    execution_id: str = response.json()["executionId"]
    return execution_id


async def executions_of(api: httpx.AsyncClient, workflow_id: str) -> list[dict[str, Any]]:
    page = (await api.get("/api/workflow/executions", params={"workflowId": workflow_id})).json()
    items: list[dict[str, Any]] = page["items"]
    return items


async def waiting_child(api: httpx.AsyncClient) -> str:
    """The id of the `child` execution once it waits for input."""

    async def found() -> str | None:
        runs = await executions_of(api, "child")
        return runs[0]["executionId"] if runs and runs[0]["status"] == "waiting" else None

    child_id: str = await wait_until(found, 20, "the child to wait for input")
    return child_id


@pytest.mark.usefixtures("worker")
async def test_an_inline_child_runs_as_its_own_execution(api: httpx.AsyncClient) -> None:
    parent_id = await execute(
        api, parent({"definition": child(), "inputs": {"n": "{{ inputs.n }}"}}), inputs={"n": 21}
    )
    final = await final_status(api, parent_id)
    assert final["context"]["status"] == "completed", final
    assert final["result"] == {"twice": 42}
    assert "parentExecutionId" not in final["context"]  # a top-level execution: as before
    [run] = await executions_of(api, "child")
    assert run["executionId"] != parent_id
    assert run["status"] == "completed"
    assert (run["parentExecutionId"], run["parentNodeId"]) == (parent_id, "call")
    assert run["type"] == "workflow"
    assert run["metadata"] == {}  # the link is not user metadata
    # the child's templates are its own: `inputs.n` is the child's input, not the parent's
    assert (await status(api, run["executionId"]))["result"] == {"twice": 42}


@pytest.mark.usefixtures("worker")
async def test_a_stored_child_runs_by_workflow_id_and_version(api: httpx.AsyncClient) -> None:
    assert (await api.post("/api/workflows", json={"definition": child()})).status_code == 201
    second = child(nodes=[{"id": "v2", "type": "output", "inputs": {"value": "v2"}}])
    assert (await api.post("/api/workflows", json={"definition": second})).status_code == 201
    first = await execute(api, parent({"workflowId": "child", "version": 1, "inputs": {"n": 5}}))
    latest = await execute(api, parent({"workflowId": "child", "inputs": {"n": 5}}))
    assert (await final_status(api, first))["result"] == {"twice": 10}
    assert (await final_status(api, latest))["result"] == "v2"
    runs = await executions_of(api, "child")
    assert sorted(r["workflowVersion"] for r in runs) == [1, 2]
    assert {r["parentExecutionId"] for r in runs} == {first, latest}
    missing = await execute(api, parent({"workflowId": "nobody"}))
    failed = await final_status(api, missing)
    assert failed["context"]["status"] == "failed"
    assert failed["context"]["error"]["type"] == "not_found"


@pytest.mark.usefixtures("worker")
async def test_a_failed_child_fails_the_node_and_on_error_applies(api: httpx.AsyncClient) -> None:
    failing = {
        "id": "child",
        "nodes": [{"id": "boom", "type": "fail", "inputs": {"message": "no luck"}}],
    }
    parent_id = await execute(api, parent({"definition": failing}))
    final = await final_status(api, parent_id)
    assert final["context"]["status"] == "failed"
    call = {n["nodeId"]: n for n in final["nodes"]}["call"]
    assert call["status"] == "failed"
    assert call["error"]["type"] == "child_failed"
    [run] = await executions_of(api, "child")
    assert run["executionId"] in call["error"]["message"]
    assert "no luck" in call["error"]["message"]

    tolerant = await execute(api, parent({"definition": failing}, on_error="continue"))
    done = await final_status(api, tolerant)
    assert done["context"]["status"] == "completed", done


@pytest.mark.usefixtures("worker")
async def test_cancelling_the_parent_cancels_the_waiting_child(api: httpx.AsyncClient) -> None:
    asking = {"id": "child", "nodes": [{"id": "ask", "type": "wait_input", "inputs": {}}]}
    grand = parent({"definition": asking}, workflow_id="middle")
    parent_id = await execute(api, parent({"definition": grand}))
    waiting = await reaches(api, parent_id, "waiting")
    ticket = {n["nodeId"]: n for n in waiting["nodes"]}["call"]["output"]
    assert ticket["waitingFor"] == "child"
    middle_id = ticket["childExecutionId"]

    async def grandchild() -> str | None:
        runs = await executions_of(api, "child")
        return runs[0]["executionId"] if runs and runs[0]["status"] == "waiting" else None

    child_id = await wait_until(grandchild, 20, "the grandchild to wait for input")
    cancelled = await api.post(f"/api/workflow/cancel/{parent_id}")
    assert cancelled.status_code == 200, cancelled.text
    for execution_id in (parent_id, middle_id, child_id):
        assert (await reaches(api, execution_id, "cancelled"))["context"]["status"] == "cancelled"


@pytest.mark.usefixtures("worker")
async def test_a_cancelled_child_fails_its_parent_node(api: httpx.AsyncClient) -> None:
    asking = {"id": "child", "nodes": [{"id": "ask", "type": "wait_input", "inputs": {}}]}
    parent_id = await execute(api, parent({"definition": asking}))
    child_id = await waiting_child(api)
    await reaches(api, parent_id, "waiting")
    assert (await api.post(f"/api/workflow/cancel/{child_id}")).status_code == 200
    final = await final_status(api, parent_id)
    assert final["context"]["status"] == "failed"
    call = {n["nodeId"]: n for n in final["nodes"]}["call"]
    assert call["error"]["type"] == "cancelled"


@pytest.mark.usefixtures("worker")
async def test_a_child_answered_later_resumes_its_parent(api: httpx.AsyncClient) -> None:
    asking = {"id": "child", "nodes": [{"id": "ask", "type": "wait_input", "inputs": {}}]}
    parent_id = await execute(api, parent({"definition": asking}))
    child_id = await waiting_child(api)
    await reaches(api, parent_id, "waiting")
    answered = await api.post(f"/api/workflow/resume/{child_id}", json={"input": {"ok": 1}})
    assert answered.status_code == 202
    final = await final_status(api, parent_id)
    assert final["result"] == {"ask": {"ok": 1}}  # the child's result (its sink)
    assert final["context"]["attempts"] == 1


def nested(levels: int) -> dict[str, Any]:
    definition = {"id": "leaf", "nodes": [{"id": "v", "type": "output", "inputs": {"value": 1}}]}
    for level in range(levels):
        definition = parent({"definition": definition}, workflow_id=f"level{level}")
    return definition


@contextlib.asynccontextmanager
async def service_with(
    redis_server: RedisServer, tmp_path: Path, **overrides: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Services]]:
    """The API in-process and a worker with one slot on the workflow queue, configured."""
    settings = make_settings(
        redis_server.url,
        f"sqlite:///{tmp_path}/wfe.db",
        queues=Queues(workflow=QueueSettings(concurrency=1)),
        **overrides,
    )
    services = await Services.open(settings)
    worker = WorkerService(settings, services.store)
    await worker.start()
    app = create_app(settings, services)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api"
        ) as client:
            yield client, services
    finally:
        await worker.stop(grace=5)
        await worker.executor.aclose()
        await services.close()


@pytest.fixture
async def shallow(
    redis_server: RedisServer, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, Services]]:
    """The service with WFE_MAX_DEPTH=2 and one worker slot on the workflow queue."""
    async with service_with(redis_server, tmp_path, max_depth=2) as opened:
        yield opened


async def test_nesting_is_bounded_and_a_parked_parent_holds_no_worker(
    shallow: tuple[httpx.AsyncClient, Services],
) -> None:
    api, _ = shallow
    # two levels of children with one worker slot: each parent parks while its child runs
    ok = await final_status(api, await execute(api, nested(2)))
    assert ok["context"]["status"] == "completed", ok
    assert ok["result"] == 1
    too_deep = await final_status(api, await execute(api, nested(3)))
    assert too_deep["context"]["status"] == "failed"
    # the execution at depth 2 may not start a child; its failure climbs up to the top
    assert too_deep["context"]["error"]["type"] == "child_failed"
    assert "WFE_MAX_DEPTH=2" in too_deep["context"]["error"]["message"]
    deepest = [r for r in await executions_of(api, "level0") if r["status"] == "failed"]
    assert [r["error"]["type"] for r in deepest] == ["depth_limit"]


async def test_a_client_following_the_top_sees_every_descendants_node_events(
    shallow: tuple[httpx.AsyncClient, Services],
) -> None:
    """Each child's node events are copied to the streams of the executions above it, with
    the child's id (for a UI to open it) and the node of that execution it runs under."""
    api, services = shallow
    top = await execute(api, nested(2))
    assert (await final_status(api, top))["result"] == 1
    [middle] = await executions_of(api, "level0")
    [leaf] = await executions_of(api, "leaf")

    async def completed(execution_id: str) -> list[tuple[str, str | None, str | None]]:
        return [
            (e.data["nodeId"], e.data.get("childExecutionId"), e.data.get("parentNodeId"))
            for e in await events_of(services.settings, execution_id)
            if e.type == "node.completed"
        ]

    middle_id, leaf_id = middle["executionId"], leaf["executionId"]
    assert sorted(await completed(top), key=str) == sorted(
        [
            ("call", None, None),
            ("out", None, None),
            ("call", middle_id, "call"),  # the middle execution's own nodes
            ("out", middle_id, "call"),
            ("v", leaf_id, "call"),  # the leaf's, under the top's `call` node
        ],
        key=str,
    )
    assert sorted(await completed(middle_id), key=str) == sorted(
        [("call", None, None), ("out", None, None), ("v", leaf_id, "call")], key=str
    )
    assert await completed(leaf_id) == [("v", None, None)]  # copies go up, never down


async def test_a_stored_workflow_running_itself_is_refused(api: httpx.AsyncClient) -> None:
    looping = parent({"workflowId": "loopy"}, workflow_id="loopy")
    refused = await api.post("/api/workflows", json={"definition": looping})
    assert refused.status_code == 422
    [problem] = refused.json()["error"]["details"]
    assert problem["path"] == "definition.nodes[0].inputs.workflowId"
    assert problem["code"] == "self_reference"
    renamed = await api.post("/api/workflows", json={"id": "other", "definition": looping})
    assert renamed.status_code == 201  # runs `loopy`, not itself


async def test_a_workflow_node_needs_one_source(api: httpx.AsyncClient) -> None:
    both = parent({"workflowId": "x", "definition": child()})
    refused = await api.post("/api/workflow/execute", json={"workflowDefinition": both})
    assert refused.status_code == 422
    neither = await api.post("/api/workflow/execute", json={"workflowDefinition": parent({})})
    assert neither.status_code == 422


@pytest.mark.usefixtures("worker")
async def test_children_inside_a_loop_each_resume_their_iteration(
    api: httpx.AsyncClient, services: Services
) -> None:
    looping = {
        "id": "fan",
        "nodes": [
            {
                "id": "each",
                "type": "loop",
                "inputs": {
                    "items": [1, 2, 3],
                    "max_parallel": 3,
                    "body": {
                        "nodes": [
                            {
                                "id": "call",
                                "type": "workflow",
                                "inputs": {"definition": child(), "inputs": {"n": "{{ item }}"}},
                            }
                        ],
                        "output": "call",
                    },
                },
            }
        ],
    }
    final = await final_status(api, await execute(api, looping))
    assert final["context"]["status"] == "completed", final
    assert final["result"] == {"each": [{"twice": 2}, {"twice": 4}, {"twice": 6}]}
    runs = await executions_of(api, "child")
    assert sorted(r["parentNodeId"] for r in runs) == [
        "each[0].call",
        "each[1].call",
        "each[2].call",
    ]
    # the stream tells each iteration's events apart, and carries each child's node events
    events = await events_of(services.settings, final["context"]["executionId"])
    own = {
        (e.data["nodeId"], e.data.get("loopId"), e.data.get("iteration"))
        for e in events
        if e.type == "node.completed" and "childExecutionId" not in e.data
    }
    assert own == {("each", None, None)} | {(f"each[{i}].call", "each", i) for i in range(3)}
    copied = {
        (e.data["parentNodeId"], e.data["childExecutionId"])
        for e in events
        if e.type == "node.completed" and "childExecutionId" in e.data
    }
    assert copied == {(r["parentNodeId"], r["executionId"]) for r in runs}


async def test_a_child_that_ended_before_its_parent_parked_is_delivered_on_parking(
    services: Services,
) -> None:
    """The child's own delivery found the parent still running (the store refuses an answer
    to an execution that does not wait): the parent, once parked, finds the ended child; a
    second delivery is refused, and a ticket naming another child gets nothing."""
    store = services.store
    link = {"executionId": "exec_parent", "nodeId": "call", "depth": 1}
    parent_record = ExecutionRecord("exec_parent", "parent", "anonymous", "workflow")
    child_record = ExecutionRecord(
        "exec_child", "child", "anonymous", "workflow", metadata={PARENT_KEY: link}
    )
    for record in (parent_record, child_record):
        await store.create(record)
        assert await store.mark_running(record.execution_id, 1) is Start.STARTED
    ticket = {"waitingFor": "child", "childExecutionId": "exec_child"}
    waiting = NodeResult("call", "workflow", None, NodeStatus.WAITING, output=ticket, attempt=1)
    await store.save_node("exec_parent", waiting)
    assert await store.finish("exec_child", ExecutionStatus.COMPLETED, result={"x": 1})
    ended = await store.get("exec_child")
    assert ended is not None
    assert not await notify_parent(store, services.queues, ended)  # the parent still runs
    assert await store.transition("exec_parent", ExecutionStatus.WAITING)
    stranger = ExecutionRecord(
        "exec_stranger", "child", "anonymous", "workflow", metadata={PARENT_KEY: link}
    )
    stranger.status = ExecutionStatus.FAILED
    assert not await notify_parent(store, services.queues, stranger)  # not the ticket's child
    results = await store.node_results("exec_parent")
    assert await deliver_finished_children(store, "exec_parent", results)
    [answered] = await store.node_results("exec_parent")
    assert answered.output["answer"] == {"status": "completed", "result": {"x": 1}, "error": None}
    assert not await notify_parent(store, services.queues, ended)  # one answer only


async def test_a_child_passes_its_tenants_rate_but_not_the_cap_its_parent_holds(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Children pass their tenant's admission: with WFE_TENANT_RATE=1 the parent's submit takes
    the second's token, so its child is refused (`rate_limited`, with the wait) and admitted on
    the node's retry. With WFE_TENANT_MAX_ACTIVE=1 the running parent holds the one place: its
    child is not refused for it (it would wait for its own parent), and both complete."""
    async with service_with(redis_server, tmp_path, tenant_rate=1) as (api, services):
        call = {"definition": child(), "inputs": {"n": 1}}
        parent_id = await execute(api, parent(call, retry={"attempts": 3, "backoff": 0.1}))
        final = await final_status(api, parent_id)
        assert final["context"]["status"] == "completed", final
        assert final["result"] == {"twice": 2}
        events = await events_of(services.settings, parent_id)
        [retrying] = [e.data for e in events if e.type == "node.retrying"]
        assert retrying["error"]["type"] == "rate_limited"
        assert retrying["delay"] >= 1  # the gate's Retry-After, not the node's 0.1 s backoff
        assert len(await executions_of(api, "child")) == 1
    async with service_with(redis_server, tmp_path, tenant_max_active=1) as (api, _):
        parent_id = await execute(api, parent({"definition": child(), "inputs": {"n": 2}}))
        assert (await final_status(api, parent_id))["result"] == {"twice": 4}


@pytest.mark.usefixtures("worker")
async def test_the_examples_parent_runs_the_stored_child_per_order(api: httpx.AsyncClient) -> None:
    """examples/orders_report.json (a loop calling the stored examples/order_total.json per
    order) gives the result examples/README.md shows."""
    child_definition = json.loads((EXAMPLES / "order_total.json").read_text())
    stored = await api.post("/api/workflows", json={"definition": child_definition})
    assert stored.status_code == 201, stored.text
    report = json.loads((EXAMPLES / "orders_report.json").read_text())
    final = await final_status(api, await execute(api, report))
    assert final["context"]["status"] == "completed", final
    assert final["result"] == {
        "orders": [
            {"order": "A-1", "lines": 2, "total": 10.0},
            {"order": "A-2", "lines": 1, "total": 20},
        ],
        "grand_total": 30.0,
        "currency": "EUR",
    }
    assert sorted(r["parentNodeId"] for r in await executions_of(api, "order_total")) == [
        "each[0].order",
        "each[1].order",
    ]
