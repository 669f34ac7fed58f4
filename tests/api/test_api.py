"""The HTTP API in-process, with a real Redis, a real store and an in-process worker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.processes import wait_until
from workflow_engine.api.app import create_app
from workflow_engine.api.services import Services
from workflow_engine.worker.worker import WorkerService

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
IF_ELSE = json.loads((EXAMPLES / "if_else.json").read_text())


async def final_status(
    api: httpx.AsyncClient, execution_id: str, timeout: float = 20
) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        body: dict[str, Any] = (
            await api.get(f"/api/workflow/status/{execution_id}?nodes=true")
        ).json()
        return body if body["context"]["status"] in {"completed", "failed", "cancelled"} else None

    result: dict[str, Any] = await wait_until(done, timeout, f"execution {execution_id} to finish")
    return result


@pytest.mark.usefixtures("worker")
async def test_execute_runs_and_records_every_node(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/api/workflow/execute",
        json={
            "workflowDefinition": IF_ELSE,
            "inputs": {"total": 500},
            "clientId": "c1",
            "metadata": {"k": 1},
        },
    )
    assert response.status_code == 202
    body = response.json()
    assert set(body) == {"executionId", "jobId", "status"}
    assert body["status"] == "pending"
    assert body["executionId"].startswith("exec_")
    final = await final_status(api, body["executionId"])
    context = final["context"]
    assert context["status"] == "completed"
    assert context["workflowId"] == "if_else"
    assert context["clientId"] == "c1"
    assert context["type"] == "workflow"
    assert context["metadata"] == {"k": 1}
    assert context["attempts"] == 1
    assert context["startedAt"] is not None
    assert context["completedAt"] is not None
    assert final["result"] == {"tier": "vip", "total": 500}
    assert final["progress"]["percentage"] == 100
    assert [(n["nodeId"], n["status"]) for n in final["nodes"]] == [
        ("order", "completed"),
        ("check", "completed"),
        ("std", "skipped"),
        ("vip", "completed"),
        ("result", "completed"),
    ]
    vip = next(n for n in final["nodes"] if n["nodeId"] == "vip")
    assert vip["output"] == {"tier": "vip", "total": 500}
    assert vip["attempt"] == 1
    assert vip["durationMs"] is not None


async def test_status_without_nodes_and_unknown_id(api: httpx.AsyncClient) -> None:
    submitted = (
        await api.post("/api/workflow/execute", json={"workflowDefinition": IF_ELSE})
    ).json()
    status = (await api.get(f"/api/workflow/status/{submitted['executionId']}")).json()
    assert set(status) == {"context", "progress", "result"}
    assert status["progress"] == {
        "currentNode": None,
        "completedNodes": [],
        "totalNodes": 5,
        "percentage": 0,
    }
    missing = await api.get("/api/workflow/status/exec_nope")
    assert missing.status_code == 404
    assert missing.json() == {
        "error": {"code": "not_found", "message": "execution exec_nope not found", "details": []}
    }


async def test_invalid_definition_is_422_with_every_problem(
    api: httpx.AsyncClient, services: Services
) -> None:
    definition = {
        "id": "bad",
        "nodes": [
            {"id": "a", "type": "transform", "inputs": {"value": "{{ nodes.b.output }}"}},
            {"id": "b", "type": "teleport"},
        ],
        "edges": [{"source": "a", "target": "ghost"}],
    }
    response = await api.post("/api/workflow/execute", json={"workflowDefinition": definition})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_definition"
    assert {(d["path"], d["code"]) for d in error["details"]} == {
        ("workflowDefinition.nodes[0].inputs.value", "bad_reference"),
        ("workflowDefinition.nodes[1].type", "unknown_type"),
        ("workflowDefinition.edges[0].target", "dangling_edge"),
    }
    assert (await services.store.count_by_status())["pending"] == 0


async def test_invalid_inputs_are_422(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/api/workflow/execute", json={"workflowDefinition": IF_ELSE, "inputs": {"total": "lots"}}
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_inputs"
    assert error["details"] == [
        {
            "path": "inputs.total",
            "message": "'lots' is not of type 'number'",
            "code": "invalid_input",
        }
    ]


async def test_malformed_request_bodies(api: httpx.AsyncClient) -> None:
    bad_json = await api.post(
        "/api/workflow/execute", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert bad_json.status_code == 400
    assert bad_json.json()["error"]["message"] == "the request body is not valid JSON"
    unknown = await api.post(
        "/api/workflow/execute",
        json={"workflowDefinition": IF_ELSE, "priorty": 3, "type": "fast"},
    )
    assert unknown.status_code == 422
    details = {(d["path"], d["message"]) for d in unknown.json()["error"]["details"]}
    assert ("priorty", "unknown field 'priorty'") in details
    assert any(path == "type" for path, _ in details)
    missing = await api.post("/api/workflow/execute", json={})
    assert missing.status_code == 422
    assert missing.json()["error"]["details"][0]["path"] == "workflowDefinition"


async def test_a_callback_without_a_signing_key_is_refused_not_ignored(
    api: httpx.AsyncClient,
) -> None:
    response = await api.post(
        "/api/workflow/execute",
        json={"workflowDefinition": IF_ELSE, "callbackUrl": "http://x"},
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "not_configured"


async def test_oversize_body_is_413(api: httpx.AsyncClient, services: Services) -> None:
    limit = services.settings.max_body_bytes
    too_large = {
        "error": {
            "code": "payload_too_large",
            "message": f"the request body exceeds {limit} bytes",
            "details": [],
        }
    }
    big = {"workflowDefinition": IF_ELSE, "inputs": {"blob": "x" * (limit + 1)}}
    response = await api.post("/api/workflow/execute", json=big)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/json"
    assert response.json() == too_large

    async def chunks() -> Any:  # no content-length: counted while it streams
        for _ in range(11):
            yield b"x" * (1024 * 1024)

    streamed = await api.post("/api/workflow/execute", content=chunks())
    assert "content-length" not in streamed.request.headers
    assert streamed.status_code == 413
    assert streamed.headers["content-type"] == "application/json"
    assert streamed.json() == too_large


async def test_idempotency_key_starts_nothing_twice(
    api: httpx.AsyncClient, services: Services
) -> None:
    body = {"workflowDefinition": IF_ELSE, "idempotencyKey": "order-42"}
    first = (await api.post("/api/workflow/execute", json=body)).json()
    again = await api.post("/api/workflow/execute", json=body)
    assert again.status_code == 202
    assert again.json()["executionId"] == first["executionId"]
    assert (await services.store.count_by_status())["pending"] == 1
    counts = await services.queues.counts()
    assert counts["workflow"]["waiting"] == 1


async def test_cancel_a_pending_execution_removes_its_job(
    api: httpx.AsyncClient, services: Services
) -> None:
    submitted = (
        await api.post(
            "/api/workflow/execute", json={"workflowDefinition": IF_ELSE, "delay": 60_000}
        )
    ).json()
    execution_id = submitted["executionId"]
    assert (await services.queues.counts())["workflow"]["delayed"] == 1
    response = await api.post(f"/api/workflow/cancel/{execution_id}")
    assert response.status_code == 200
    assert response.json() == {"executionId": execution_id, "status": "cancelled"}
    assert (await services.queues.counts())["workflow"]["delayed"] == 0
    status = (await api.get(f"/api/workflow/status/{execution_id}")).json()
    assert status["context"]["status"] == "cancelled"
    assert status["context"]["completedAt"] is not None
    again = await api.post(f"/api/workflow/cancel/{execution_id}")
    assert again.status_code == 409
    assert (
        again.json()["error"]["message"] == f"execution {execution_id} already finished (cancelled)"
    )
    assert (await api.post("/api/workflow/cancel/exec_nope")).status_code == 404


@pytest.mark.usefixtures("worker")
async def test_cancel_after_completion_is_409(api: httpx.AsyncClient) -> None:
    submitted = (
        await api.post("/api/workflow/execute", json={"workflowDefinition": IF_ELSE})
    ).json()
    await final_status(api, submitted["executionId"])
    response = await api.post(f"/api/workflow/cancel/{submitted['executionId']}")
    assert response.status_code == 409
    assert "already finished (completed)" in response.json()["error"]["message"]


async def test_reconnect_lists_the_clients_active_executions(api: httpx.AsyncClient) -> None:
    ids = []
    for client in ("c1", "c1", "c2"):
        body = {"workflowDefinition": IF_ELSE, "clientId": client, "delay": 60_000}
        ids.append((await api.post("/api/workflow/execute", json=body)).json()["executionId"])
    await api.post(f"/api/workflow/cancel/{ids[1]}")
    active = (await api.get("/api/workflow/reconnect/c1")).json()
    assert [a["executionId"] for a in active] == [ids[0]]
    assert active[0]["status"] == "pending"
    assert set(active[0]) == {"executionId", "status", "progress", "startedAt", "lastEventId"}
    assert (await api.get("/api/workflow/reconnect/nobody")).json() == []


async def test_stats_counts_queues_and_executions(api: httpx.AsyncClient) -> None:
    await api.post(
        "/api/workflow/execute", json={"workflowDefinition": IF_ELSE, "type": "realtime"}
    )
    await api.post(
        "/api/workflow/execute",
        json={"workflowDefinition": IF_ELSE, "type": "background", "delay": 60_000},
    )
    stats = (await api.get("/api/workflow/stats")).json()
    assert set(stats["queues"]) == {"realtime", "workflow", "scheduled", "background"}
    assert stats["queues"]["realtime"] == {
        "waiting": 1,
        "active": 0,
        "completed": 0,
        "failed": 0,
        "delayed": 0,
    }
    assert stats["queues"]["background"]["delayed"] == 1
    assert stats["executions"]["pending"] == 2


async def test_executions_list_pages_newest_first(api: httpx.AsyncClient) -> None:
    ids = [
        (
            await api.post(
                "/api/workflow/execute",
                json={"workflowDefinition": IF_ELSE, "clientId": f"c{i % 2}"},
            )
        ).json()["executionId"]
        for i in range(5)
    ]
    page = (await api.get("/api/workflow/executions?limit=2")).json()
    assert [i["executionId"] for i in page["items"]] == ids[::-1][:2]
    page2 = (await api.get(f"/api/workflow/executions?limit=2&cursor={page['nextCursor']}")).json()
    assert [i["executionId"] for i in page2["items"]] == ids[::-1][2:4]
    filtered = (await api.get("/api/workflow/executions?clientId=c0&status=pending")).json()
    assert [i["executionId"] for i in filtered["items"]] == [ids[4], ids[2], ids[0]]
    assert filtered["nextCursor"] is None
    bad = await api.get("/api/workflow/executions?status=sleeping")
    assert bad.status_code == 422


async def test_health_and_ready(api: httpx.AsyncClient) -> None:
    health = (await api.get("/health")).json()
    assert health["status"] == "ok"
    assert health["timestamp"].endswith("Z")
    ready = await api.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"redis": "ok", "store": "ok"}}


async def test_openapi_docs_are_served(api: httpx.AsyncClient) -> None:
    schema = (await api.get("/openapi.json")).json()
    assert "/api/workflow/execute" in schema["paths"]
    assert (await api.get("/docs")).status_code == 200


@pytest.mark.usefixtures("worker")
async def test_every_queue_class_runs_executions(
    api: httpx.AsyncClient, worker: WorkerService
) -> None:
    ids = {}
    for queue in ("realtime", "workflow", "scheduled", "background"):
        body = {"workflowDefinition": IF_ELSE, "type": queue, "inputs": {"total": 1}}
        ids[queue] = (await api.post("/api/workflow/execute", json=body)).json()["executionId"]
    for queue, execution_id in ids.items():
        final = await final_status(api, execution_id)
        assert final["context"]["status"] == "completed", queue
        assert final["context"]["type"] == queue
        assert final["result"] == {"tier": "std", "total": 1}
        assert len(final["nodes"]) == 5


async def test_a_full_queue_answers_429_and_stores_nothing(services: Services) -> None:
    services.submitter.max_queued = 2
    app = create_app(services.settings, services)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api"
    ) as api:
        body = {"workflowDefinition": IF_ELSE, "delay": 60_000}
        assert (await api.post("/api/workflow/execute", json=body)).status_code == 202
        assert (await api.post("/api/workflow/execute", json=body)).status_code == 202
        full = await api.post("/api/workflow/execute", json=body)
        assert full.status_code == 429
        assert full.headers["retry-after"] == "1"
        assert full.json()["error"] == {
            "code": "rate_limited",
            "message": "the workflow queue holds 2 jobs (limit 2); retry later",
            "details": [],
        }
        other_queue = {**body, "type": "realtime"}
        assert (await api.post("/api/workflow/execute", json=other_queue)).status_code == 202
    assert (await services.store.count_by_status())["pending"] == 3
