"""Rerun from a node: a new execution that reuses the recorded results upstream of the node
and runs exactly the nodes downstream of it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.test_api import final_status
from tests.worker.test_runner import records
from workflow_engine.api.services import Services


def pipeline(settings: Any, key: str) -> dict[str, Any]:
    """stamp -> fetch -> enrich -> store -> report, with a side branch stamp -> audit."""
    rec = {"redis_url": settings.redis_url, "key": key}
    return {
        "id": "pipeline",
        "nodes": [
            {"id": "stamp", "type": "transform", "inputs": {"value": "{{ execution.id }}"}},
            {"id": "fetch", "type": "record", "inputs": rec},
            {"id": "enrich", "type": "record", "inputs": rec},
            {"id": "store", "type": "record", "inputs": rec},
            {"id": "audit", "type": "record", "inputs": rec},
            {
                "id": "report",
                "type": "output",
                "inputs": {
                    "value": {"stampedBy": "{{ nodes.stamp.output }}", "n": "{{ inputs.n }}"}
                },
            },
        ],
        "edges": [
            {"source": "stamp", "target": "fetch"},
            {"source": "fetch", "target": "enrich"},
            {"source": "enrich", "target": "store"},
            {"source": "store", "target": "report"},
            {"source": "stamp", "target": "audit"},
        ],
    }


@pytest.mark.usefixtures("worker")
async def test_rerun_from_a_middle_node_runs_exactly_what_is_downstream_of_it(
    services: Services, api: httpx.AsyncClient
) -> None:
    key = f"{services.settings.queue_prefix}:rerun"
    first = await api.post(
        "/api/workflow/execute",
        json={"workflowDefinition": pipeline(services.settings, key), "inputs": {"n": 1}},
    )
    original_id = first.json()["executionId"]
    original = await final_status(api, original_id)
    assert original["result"] == {"stampedBy": original_id, "n": 1}
    assert sorted(r["nodeId"] for r in await records(services.settings, key)) == [
        "audit",
        "enrich",
        "fetch",
        "store",
    ]

    again = await api.post(
        f"/api/workflow/rerun/{original_id}", json={"fromNode": "enrich", "inputs": {"n": 2}}
    )
    assert again.status_code == 202, again.text
    rerun_id = again.json()["executionId"]
    assert rerun_id != original_id
    rerun = await final_status(api, rerun_id)
    assert rerun["context"]["status"] == "completed"
    # stamp and fetch are reused (stamp still says the original execution); enrich and what
    # follows it ran again; audit (not upstream of enrich) ran again too
    assert rerun["result"] == {"stampedBy": original_id, "n": 2}
    ran_again = [r["nodeId"] for r in (await records(services.settings, key))[4:]]
    assert sorted(ran_again) == ["audit", "enrich", "store"]
    assert all(r["executionId"] == rerun_id for r in (await records(services.settings, key))[4:])
    nodes = {n["nodeId"]: n for n in rerun["nodes"]}
    before = {n["nodeId"]: n for n in original["nodes"]}
    assert nodes["fetch"]["output"] == before["fetch"]["output"]
    assert nodes["fetch"]["completedAt"] == before["fetch"]["completedAt"]
    assert set(nodes) == set(before)
    assert rerun["context"]["metadata"] == {"rerunOf": original_id, "fromNode": "enrich"}


@pytest.mark.usefixtures("worker")
async def test_rerun_refuses_what_it_cannot_do(services: Services, api: httpx.AsyncClient) -> None:
    failing = {
        "id": "broken",
        "nodes": [
            {"id": "ok", "type": "echo"},
            {"id": "boom", "type": "fail", "inputs": {"message": "no"}},
            {"id": "after", "type": "echo"},
        ],
        "edges": [{"source": "ok", "target": "boom"}, {"source": "boom", "target": "after"}],
    }
    submitted = await api.post("/api/workflow/execute", json={"workflowDefinition": failing})
    execution_id = submitted.json()["executionId"]
    assert (await final_status(api, execution_id))["context"]["status"] == "failed"

    unknown = await api.post(f"/api/workflow/rerun/{execution_id}", json={"fromNode": "ghost"})
    assert unknown.status_code == 422
    assert unknown.json()["error"]["details"][0]["path"] == "fromNode"
    # "after" stands on "boom", which failed the run: nothing to reuse
    blocked = await api.post(f"/api/workflow/rerun/{execution_id}", json={"fromNode": "after"})
    assert blocked.status_code == 409
    assert "boom" in blocked.json()["error"]["message"]
    # from the failed node itself: "ok" is reused, "boom" runs (and fails) again
    retried = await api.post(f"/api/workflow/rerun/{execution_id}", json={"fromNode": "boom"})
    assert retried.status_code == 202
    missing = await api.post("/api/workflow/rerun/exec_nope", json={"fromNode": "ok"})
    assert missing.status_code == 404
