"""Stored workflows over the API (SPEC section 10): saves add immutable versions, an execution
names one by ``workflowId`` (+ ``version``) and records it; deleting refuses new executions
while the old ones keep working; tenants never see each other's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.test_api import final_status
from tests.conftest import make_settings
from tests.support.processes import wait_until
from tests.support.services import RedisServer
from workflow_engine.api.app import create_app
from workflow_engine.api.services import Services

A = {"Authorization": "Bearer key-a"}
B = {"Authorization": "Bearer key-b"}


def greeter(greeting: str, workflow_id: str = "greeter", **extra: Any) -> dict[str, Any]:
    return {
        "id": workflow_id,
        "name": f"Say {greeting}",
        "nodes": [
            {
                "id": "say",
                "type": "transform",
                "inputs": {"value": f"{greeting} {{{{ inputs.who }}}}"},
            }
        ],
        **extra,
    }


async def save(api: httpx.AsyncClient, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    response = await api.post("/api/workflows", json=body, **kwargs)
    assert response.status_code == 201, response.text
    saved: dict[str, Any] = response.json()
    return saved


async def test_each_save_adds_a_version_and_any_version_can_be_read(
    api: httpx.AsyncClient,
) -> None:
    assert await save(api, {"definition": greeter("hello")}) == {
        "workflowId": "greeter",
        "version": 1,
    }
    assert await save(api, {"definition": greeter("hi"), "name": "Greeter"}) == {
        "workflowId": "greeter",
        "version": 2,
    }
    latest = (await api.get("/api/workflows/greeter")).json()
    assert set(latest) == {"workflowId", "name", "version", "definition", "createdAt"}
    assert (latest["version"], latest["name"]) == (2, "Greeter")
    assert latest["definition"] == greeter("hi")
    first = (await api.get("/api/workflows/greeter", params={"version": 1})).json()
    assert (first["version"], first["name"]) == (1, "Say hello")  # the definition's name
    assert first["definition"] == greeter("hello")
    assert first["createdAt"].endswith("Z")
    missing = await api.get("/api/workflows/greeter", params={"version": 3})
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "workflow 'greeter' version 3 not found"
    versions = (await api.get("/api/workflows/greeter/versions")).json()
    assert [v["version"] for v in versions["items"]] == [1, 2]
    assert [set(v) for v in versions["items"]] == [{"version", "createdAt"}] * 2
    assert (await api.get("/api/workflows/nobody/versions")).status_code == 404


async def test_an_id_given_names_the_workflow_and_its_executions(api: httpx.AsyncClient) -> None:
    assert (await save(api, {"id": "copy.v2", "definition": greeter("hey")}))["workflowId"] == (
        "copy.v2"
    )
    stored = (await api.get("/api/workflows/copy.v2")).json()
    assert stored["definition"]["id"] == "copy.v2"
    # an id only in the body is enough: the definition gets it
    no_id = {k: v for k, v in greeter("yo").items() if k != "id"}
    assert (await save(api, {"id": "bare", "definition": no_id}))["workflowId"] == "bare"
    submitted = await api.post("/api/workflow/execute", json={"workflowId": "copy.v2"})
    status = await api.get(f"/api/workflow/status/{submitted.json()['executionId']}")
    assert status.json()["context"]["workflowId"] == "copy.v2"


async def test_the_list_holds_the_latest_version_of_each_page_by_page(
    api: httpx.AsyncClient,
) -> None:
    for workflow_id in ("beta", "alpha", "gamma"):
        await save(api, {"definition": greeter("hello", workflow_id)})
    await save(api, {"definition": greeter("hi", "beta"), "name": "Beta"})
    first = (await api.get("/api/workflows", params={"limit": 2})).json()
    assert [(w["workflowId"], w["version"], w["name"]) for w in first["items"]] == [
        ("alpha", 1, "Say hello"),
        ("beta", 2, "Beta"),
    ]
    assert set(first["items"][0]) == {"workflowId", "name", "version", "updatedAt"}
    assert first["nextCursor"] == "beta"
    rest = (await api.get("/api/workflows", params={"limit": 2, "cursor": "beta"})).json()
    assert [w["workflowId"] for w in rest["items"]] == ["gamma"]
    assert rest["nextCursor"] is None
    assert (await api.get("/api/workflows", params={"limit": 0})).status_code == 422


async def test_an_invalid_definition_is_refused_with_every_problem_under_definition(
    api: httpx.AsyncClient,
) -> None:
    broken = {
        "id": "broken",
        "nodes": [
            {"id": "a", "type": "teleport"},
            {"id": "b", "type": "transform", "inputs": {"value": "{{ nodes.zzz.output }}"}},
        ],
        "edges": [{"source": "a", "target": "nowhere"}],
    }
    refused = await api.post("/api/workflows", json={"definition": broken})
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "invalid_definition"
    paths = [d["path"] for d in error["details"]]
    assert "definition.nodes[0].type" in paths
    assert any(p.startswith("definition.edges[0]") for p in paths)
    assert len(paths) >= 3, paths  # every problem, not the first one
    assert (await api.get("/api/workflows/broken")).status_code == 404  # nothing saved

    slash = await api.post("/api/workflows", json={"definition": greeter("x", "a/b")})
    assert slash.status_code == 422
    assert [d["path"] for d in slash.json()["error"]["details"]] == ["definition.id"]
    bad_id = await api.post("/api/workflows", json={"id": "a b", "definition": greeter("x")})
    assert bad_id.status_code == 422
    assert [d["path"] for d in bad_id.json()["error"]["details"]] == ["id"]
    nothing = await api.post("/api/workflows", json={"name": "x"})
    assert nothing.status_code == 422
    assert [d["path"] for d in nothing.json()["error"]["details"]] == ["definition"]
    no_id = {k: v for k, v in greeter("x").items() if k != "id"}
    anonymous = await api.post("/api/workflows", json={"definition": no_id})
    assert anonymous.status_code == 422
    assert "definition.id" in [d["path"] for d in anonymous.json()["error"]["details"]]


@pytest.mark.usefixtures("worker")
async def test_execute_by_id_runs_the_version_asked_for_and_records_it(
    api: httpx.AsyncClient,
) -> None:
    await save(api, {"definition": greeter("hello")})
    await save(api, {"definition": greeter("hi")})
    latest = await api.post(
        "/api/workflow/execute", json={"workflowId": "greeter", "inputs": {"who": "Ann"}}
    )
    assert latest.status_code == 202, latest.text
    done = await final_status(api, latest.json()["executionId"])
    assert done["result"] == {"say": "hi Ann"}
    assert done["context"]["workflowId"] == "greeter"
    assert done["context"]["workflowVersion"] == 2
    older = await api.post(
        "/api/workflow/execute",
        json={"workflowId": "greeter", "version": 1, "inputs": {"who": "Bo"}},
    )
    done = await final_status(api, older.json()["executionId"])
    assert (done["result"], done["context"]["workflowVersion"]) == ({"say": "hello Bo"}, 1)
    listed = (await api.get("/api/workflow/executions", params={"workflowId": "greeter"})).json()
    assert sorted(c["workflowVersion"] for c in listed["items"]) == [1, 2]
    sent = await api.post(
        "/api/workflow/execute", json={"workflowDefinition": greeter("yo"), "inputs": {"who": "C"}}
    )
    plain = await final_status(api, sent.json()["executionId"])
    assert "workflowVersion" not in plain["context"]  # the context of before, unchanged


@pytest.mark.usefixtures("worker")
async def test_a_schedule_of_a_stored_workflow_runs_the_version_it_was_made_with(
    api: httpx.AsyncClient,
) -> None:
    await save(api, {"definition": greeter("hello")})
    created = await api.post(
        "/api/workflow/execute",
        json={"workflowId": "greeter", "inputs": {"who": "Ann"}, "repeat": {"every": 1000}},
    )
    assert created.status_code == 201, created.text
    schedule_id = created.json()["scheduleId"]
    await save(api, {"definition": greeter("hi")})  # a later version: the schedule keeps its own

    async def ticked() -> dict[str, Any] | None:
        found = await api.get("/api/workflow/executions", params={"workflowId": "greeter"})
        done = [c for c in found.json()["items"] if c["status"] == "completed"]
        return done[0] if done else None

    tick = await wait_until(ticked, 10, "the first tick to run")
    assert tick["workflowVersion"] == 1
    assert tick["metadata"]["scheduleId"] == schedule_id
    result = (await api.get(f"/api/workflow/status/{tick['executionId']}")).json()["result"]
    assert result == {"say": "hello Ann"}
    assert (await api.delete(f"/api/workflow/schedules/{schedule_id}")).status_code == 200


async def test_execute_takes_exactly_one_of_a_definition_and_a_workflow_id(
    api: httpx.AsyncClient,
) -> None:
    await save(api, {"definition": greeter("hello")})

    async def problems(body: dict[str, Any]) -> list[str]:
        response = await api.post("/api/workflow/execute", json=body)
        assert response.status_code == 422, response.text
        return [d["path"] for d in response.json()["error"]["details"]]

    assert await problems({"inputs": {}}) == ["workflowDefinition", "workflowId"]
    both = {"workflowDefinition": greeter("x"), "workflowId": "greeter"}
    assert await problems(both) == ["workflowId"]
    assert await problems({"workflowDefinition": greeter("x"), "version": 1}) == ["version"]
    assert await problems({"workflowId": "greeter", "version": 0}) == ["version"]
    unknown = await api.post("/api/workflow/execute", json={"workflowId": "nobody"})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["message"] == "workflow 'nobody' not found"
    no_version = await api.post(
        "/api/workflow/execute", json={"workflowId": "greeter", "version": 7}
    )
    assert no_version.status_code == 404


@pytest.mark.usefixtures("worker")
async def test_a_deleted_workflow_cannot_run_again_but_its_executions_keep_working(
    api: httpx.AsyncClient,
) -> None:
    await save(api, {"definition": greeter("hello")})
    submitted = await api.post(
        "/api/workflow/execute", json={"workflowId": "greeter", "inputs": {"who": "Ann"}}
    )
    execution_id = submitted.json()["executionId"]
    await final_status(api, execution_id)

    deleted = await api.delete("/api/workflows/greeter")
    assert deleted.json() == {"workflowId": "greeter", "status": "deleted"}
    assert (await api.delete("/api/workflows/greeter")).status_code == 404
    refused = await api.post("/api/workflow/execute", json={"workflowId": "greeter"})
    assert refused.status_code == 404
    pinned = await api.post("/api/workflow/execute", json={"workflowId": "greeter", "version": 1})
    assert pinned.status_code == 404
    assert (await api.get("/api/workflows/greeter")).status_code == 404
    assert (await api.get("/api/workflows/greeter/versions")).status_code == 404
    assert (await api.get("/api/workflows")).json()["items"] == []

    status = await api.get(f"/api/workflow/status/{execution_id}")
    assert status.status_code == 200
    assert status.json()["context"]["workflowVersion"] == 1
    rerun = await api.post(
        f"/api/workflow/rerun/{execution_id}", json={"fromNode": "say", "inputs": {"who": "Bo"}}
    )
    assert rerun.status_code == 202, rerun.text
    again = await final_status(api, rerun.json()["executionId"])
    assert again["result"] == {"say": "hello Bo"}
    assert again["context"]["workflowVersion"] == 1  # the exact version, deleted or not

    resaved = await save(api, {"definition": greeter("back")})
    assert resaved == {"workflowId": "greeter", "version": 2}  # numbers are never reused


@pytest.fixture
async def keyed(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        redis_server.url, f"sqlite:///{tmp_path}/wfe.db", api_keys="a=key-a,b=key-b"
    )
    services = await Services.open(settings)
    app = create_app(settings, services)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client
    await services.close()


async def test_tenants_never_see_each_others_workflows(keyed: httpx.AsyncClient) -> None:
    api = keyed
    await save(api, {"definition": greeter("hello")}, headers=A)
    assert (await api.get("/api/workflows/greeter", headers=B)).status_code == 404
    assert (await api.get("/api/workflows/greeter/versions", headers=B)).status_code == 404
    assert (await api.get("/api/workflows", headers=B)).json()["items"] == []
    theirs = await api.post("/api/workflow/execute", json={"workflowId": "greeter"}, headers=B)
    assert theirs.status_code == 404
    assert (await api.delete("/api/workflows/greeter", headers=B)).status_code == 404
    # the same id is another workflow for b, numbered on its own
    assert await save(api, {"definition": greeter("hi")}, headers=B) == {
        "workflowId": "greeter",
        "version": 1,
    }
    mine = (await api.get("/api/workflows/greeter", headers=A)).json()
    assert (mine["version"], mine["definition"]) == (1, greeter("hello"))
    assert (await api.get("/api/workflows")).status_code == 401
