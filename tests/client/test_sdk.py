"""The Python SDK against the service on a real socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.api.test_live import serve
from tests.conftest import make_settings
from tests.support.services import RedisServer, free_port
from workflow_engine.api.app import create_app
from workflow_engine.api.services import Services
from workflow_engine.client import (
    AsyncWorkflowEngineClient,
    ConflictError,
    InvalidRequest,
    NotFoundError,
    ServiceUnavailable,
    Status,
    Unauthorized,
    WorkflowEngineClient,
)
from workflow_engine.worker.worker import WorkerService

IF_ELSE = json.loads(
    (Path(__file__).resolve().parents[2] / "examples" / "if_else.json").read_text()
)


@pytest.fixture
async def base_url(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[str]:
    settings = make_settings(
        redis_server.url, f"sqlite:///{tmp_path}/wfe.db", api_keys="t:admin=secret"
    )
    services = await Services.open(settings)
    worker = WorkerService(settings, services.store)
    await worker.start()
    port = free_port()
    server, task = await serve(create_app(settings, services), port)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task
    await worker.stop(grace=1)
    await services.close()


async def test_async_client_round_trip_with_typed_models(base_url: str) -> None:
    async with AsyncWorkflowEngineClient(base_url, api_key="secret") as client:
        submitted = await client.execute(
            IF_ELSE, {"total": 500}, client_id="tab", metadata={"k": 1}
        )
        assert submitted.status == "pending"
        types = [event.type async for event in client.events(submitted.execution_id)]
        assert types[0] == "execution.queued"
        assert types[-1] == "execution.completed"
        final = await client.wait(submitted.execution_id, timeout=10)
        assert isinstance(final, Status)
        assert final.final
        assert final.context.status == "completed"
        assert final.context.metadata == {"k": 1}
        assert final.result == {"tier": "vip", "total": 500}
        assert final.progress.percentage == 100
        assert final.nodes is not None
        assert [n.node_id for n in final.nodes if n.status == "skipped"] == ["std"]
        stats = await client.stats()
        assert stats.executions["completed"] == 1
        assert stats.queues["workflow"].completed == 1
        page = await client.executions(client_id="tab")
        assert [c.execution_id for c in page.items] == [submitted.execution_id]
        assert await client.reconnect("tab") == []
        with pytest.raises(ConflictError, match="already finished"):
            await client.cancel(submitted.execution_id)


async def test_errors_are_typed_exceptions(base_url: str) -> None:
    async with AsyncWorkflowEngineClient(base_url, api_key="secret") as client:
        with pytest.raises(InvalidRequest) as info:
            await client.execute({"id": "bad", "nodes": [{"id": "a", "type": "nope"}]})
        assert info.value.status == 422
        assert info.value.details[0]["path"] == "workflowDefinition.nodes[0].type"
        with pytest.raises(NotFoundError):
            await client.get_status("exec_missing")
    async with AsyncWorkflowEngineClient(base_url, api_key="wrong") as client:
        with pytest.raises(Unauthorized):
            await client.stats()
    async with AsyncWorkflowEngineClient(f"http://127.0.0.1:{free_port()}") as client:
        with pytest.raises(ServiceUnavailable):
            await client.stats()


async def test_blocking_client(base_url: str) -> None:
    def use() -> Status:
        with WorkflowEngineClient(base_url, api_key="secret") as client:
            submitted = client.execute(IF_ELSE, {"total": 1})
            events = list(client.events(submitted.execution_id))
            assert events[-1].type == "execution.completed"
            ids = [e.id for e in events]
            assert len(set(ids)) == len(ids)
            return client.wait(submitted.execution_id)

    final = await asyncio.to_thread(use)
    assert final.result == {"tier": "std", "total": 1}


async def test_resume_rerun_and_schedules_through_the_sdk(base_url: str) -> None:
    asking = {
        "id": "approve",
        "nodes": [
            {"id": "ask", "type": "wait_input", "inputs": {"schema": {"type": "boolean"}}},
            {"id": "out", "type": "output", "inputs": {"value": "{{ nodes.ask.output }}"}},
        ],
        "edges": [{"source": "ask", "target": "out"}],
    }
    async with AsyncWorkflowEngineClient(base_url, api_key="secret") as client:
        submitted = await client.execute(asking)
        async for event in client.events(submitted.execution_id):
            if event.type == "execution.waiting":
                assert event.data["nodes"][0]["nodeId"] == "ask"
                break
        with pytest.raises(InvalidRequest):
            await client.resume(submitted.execution_id, "yes")  # not a boolean
        resumed = await client.resume(submitted.execution_id, True)
        assert resumed.node_id == "ask"
        final = await client.wait(submitted.execution_id, timeout=10)
        assert final.result is True

        rerun = await client.rerun(submitted.execution_id, "out")
        assert (await client.wait(rerun.execution_id, timeout=10)).result is True

        created = await client.schedule(IF_ELSE, {"total": 1}, cron="0 3 * * *", tz="UTC")
        [listed] = await client.schedules()
        assert listed.schedule_id == created.schedule_id
        assert listed.repeat.cron == "0 3 * * *"
        assert listed.next_run_at == created.next_run_at
        await client.delete_schedule(created.schedule_id)
        assert await client.schedules() == []
        with pytest.raises(NotFoundError):
            await client.delete_schedule(created.schedule_id)


async def test_stored_workflows_through_the_sdk(base_url: str) -> None:
    async with AsyncWorkflowEngineClient(base_url, api_key="secret") as client:
        saved = await client.save_workflow(IF_ELSE)
        assert (saved.workflow_id, saved.version) == ("if_else", 1)
        again = await client.save_workflow(IF_ELSE, workflow_id="tiers", name="Tiers")
        assert (again.workflow_id, again.version) == ("tiers", 1)
        await client.save_workflow(IF_ELSE, workflow_id="tiers")
        page = await client.workflows(limit=1)
        assert [(w.workflow_id, w.version) for w in page.items] == [("if_else", 1)]
        rest = await client.workflows(cursor=page.next_cursor)
        assert [(w.workflow_id, w.version, w.name) for w in rest.items] == [
            ("tiers", 2, "If/else with a re-join: pick a tier by order total")
        ]
        first = await client.get_workflow("tiers", version=1)
        assert (first.name, first.definition["id"]) == ("Tiers", "tiers")
        assert [v.version for v in await client.workflow_versions("tiers")] == [1, 2]
        submitted = await client.execute_workflow("tiers", {"total": 500}, version=1)
        final = await client.wait(submitted.execution_id, timeout=10)
        assert final.result == {"tier": "vip", "total": 500}
        assert (final.context.workflow_id, final.context.workflow_version) == ("tiers", 1)
        await client.delete_workflow("tiers")
        with pytest.raises(NotFoundError):
            await client.execute_workflow("tiers")
        with pytest.raises(NotFoundError):
            await client.get_workflow("tiers")
