"""Finding 16: an ``idempotencyKey`` names one request. The same key with another definition or
other inputs is a 409 that names the difference; the same request again gets the first
execution (and starts nothing)."""

from __future__ import annotations

import httpx

DEFINITION = {"id": "one", "nodes": [{"id": "a", "type": "echo", "inputs": {"x": 1}}]}


async def test_a_reused_key_with_another_request_is_a_conflict(api: httpx.AsyncClient) -> None:
    body = {"workflowDefinition": DEFINITION, "inputs": {"n": 1}, "idempotencyKey": "order-7"}
    first = await api.post("/api/workflow/execute", json=body)
    assert first.status_code == 202
    execution_id = first.json()["executionId"]
    again = await api.post("/api/workflow/execute", json=body)
    assert again.status_code == 202
    assert again.json()["executionId"] == execution_id

    other_inputs = await api.post("/api/workflow/execute", json={**body, "inputs": {"n": 2}})
    assert other_inputs.status_code == 409
    error = other_inputs.json()["error"]
    assert error["code"] == "conflict"
    assert error["message"] == (
        f"idempotencyKey 'order-7' belongs to execution {execution_id}, "
        "started with a different inputs"
    )

    changed = {**DEFINITION, "nodes": [{"id": "a", "type": "echo", "inputs": {"x": 2}}]}
    other_definition = await api.post(
        "/api/workflow/execute", json={**body, "workflowDefinition": changed, "inputs": {}}
    )
    assert other_definition.status_code == 409
    assert other_definition.json()["error"]["message"].endswith(
        "started with a different workflowDefinition and inputs"
    )
    listed = (await api.get("/api/workflow/executions")).json()["items"]
    assert [i["executionId"] for i in listed] == [execution_id]  # nothing else started
