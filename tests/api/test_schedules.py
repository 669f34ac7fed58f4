"""Cron schedules over the API: ticks start executions of their own, DELETE stops them, the
maintenance window records ticks as skipped, and bad repeat options are a 422."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.support.clock import FakeClock
from tests.support.processes import wait_until
from workflow_engine.api.app import create_app
from workflow_engine.api.services import Services
from workflow_engine.queue.schedules import Repeat, Scheduler
from workflow_engine.queue.submit import Submission
from workflow_engine.worker.worker import WorkerService

TICKING = {
    "id": "ticking",
    "nodes": [{"id": "now", "type": "transform", "inputs": {"value": "{{ execution.id }}"}}],
}


async def executions_of(api: httpx.AsyncClient, workflow_id: str) -> list[dict[str, Any]]:
    page = await api.get(
        "/api/workflow/executions", params={"workflowId": workflow_id, "limit": 200}
    )
    items: list[dict[str, Any]] = page.json()["items"]
    return items


@pytest.mark.usefixtures("worker")
async def test_a_schedule_every_second_runs_until_deleted(api: httpx.AsyncClient) -> None:
    posted_at = time.monotonic()
    created = await api.post(
        "/api/workflow/execute",
        json={"workflowDefinition": TICKING, "repeat": {"every": 1000}, "metadata": {"k": 1}},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) == {"scheduleId", "nextRunAt"}
    schedule_id = body["scheduleId"]

    async def three_ran() -> list[dict[str, Any]] | None:
        done = [e for e in await executions_of(api, "ticking") if e["status"] == "completed"]
        return done if len(done) >= 3 else None

    ran = await wait_until(three_ran, 4.5, "three ticks to run")
    assert time.monotonic() - posted_at <= 4.5
    assert len({e["executionId"] for e in ran}) == len(ran)  # each tick its own execution
    assert all(e["type"] == "scheduled" for e in ran)
    assert all(e["metadata"] == {"k": 1, "scheduleId": schedule_id} for e in ran)
    status = (await api.get(f"/api/workflow/status/{ran[0]['executionId']}")).json()
    assert status["result"] == {"now": ran[0]["executionId"]}

    listed = (await api.get("/api/workflow/schedules")).json()["items"]
    assert [s["scheduleId"] for s in listed] == [schedule_id]
    assert listed[0]["repeat"] == {"cron": None, "every": 1000, "tz": None, "limit": None}
    assert listed[0]["workflowId"] == "ticking"
    assert listed[0]["iterations"] >= 3
    one = (await api.get(f"/api/workflow/schedules/{schedule_id}")).json()
    assert one["workflowDefinition"] == TICKING

    deleted = await api.delete(f"/api/workflow/schedules/{schedule_id}")
    assert deleted.status_code == 200
    assert deleted.json() == {"scheduleId": schedule_id, "status": "deleted"}
    after_delete = len(await executions_of(api, "ticking"))
    deadline = time.monotonic() + 2.5  # two and a half periods: no tick may start
    while time.monotonic() < deadline:
        assert len(await executions_of(api, "ticking")) == after_delete
    assert (await api.get("/api/workflow/schedules")).json()["items"] == []
    assert (await api.delete(f"/api/workflow/schedules/{schedule_id}")).status_code == 404
    assert (await api.get(f"/api/workflow/schedules/{schedule_id}")).status_code == 404


async def test_a_schedule_is_stamped_by_the_schedulers_clock(services: Services) -> None:
    clock = FakeClock(start=1_700_000_000.25)
    scheduler = Scheduler(services.queues, services.scheduler.plans, clock=clock)
    submission = Submission(definition=TICKING, inputs={}, tenant_id="t", queue="scheduled")
    schedule = await scheduler.create(submission, Repeat(cron="0 0 1 1 *"))
    try:
        assert schedule.to_dict()["createdAt"] == "2023-11-14T22:13:20.250Z"
        listed = await scheduler.get(schedule.schedule_id, "t")
        assert listed.template["createdAt"] == 1_700_000_000_250
    finally:
        await scheduler.delete(schedule.schedule_id, "t")


@pytest.fixture
async def in_maintenance(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """A worker whose maintenance window is now, and the API."""
    now = datetime.now(UTC)
    window = f"{now - timedelta(minutes=1):%H:%M}-{now + timedelta(minutes=10):%H:%M}"
    settings = services.settings.model_copy(update={"maintenance_window": window})
    worker = WorkerService(settings, services.store)
    await worker.start()
    app = create_app(services.settings, services)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api"
    ) as client:
        yield client
    await worker.stop()
    await worker.executor.aclose()


async def test_ticks_in_the_maintenance_window_are_recorded_as_skipped(
    in_maintenance: httpx.AsyncClient,
) -> None:
    api = in_maintenance
    created = await api.post(
        "/api/workflow/execute", json={"workflowDefinition": TICKING, "repeat": {"every": 1000}}
    )
    schedule_id = created.json()["scheduleId"]

    async def skipped_twice() -> list[dict[str, Any]] | None:
        items = await executions_of(api, "ticking")
        return items if sum(e["status"] == "skipped" for e in items) >= 2 else None

    items = await wait_until(skipped_twice, 10, "two ticks to be skipped")
    await api.delete(f"/api/workflow/schedules/{schedule_id}")
    assert {e["status"] for e in items} == {"skipped"}  # none ran
    assert items[0]["error"]["type"] == "maintenance"
    status = (await api.get(f"/api/workflow/status/{items[0]['executionId']}?nodes=true")).json()
    assert status["nodes"] == []


@pytest.mark.parametrize(
    ("repeat", "path"),
    [
        ({"cron": "61 * * * *"}, "repeat.cron"),
        ({"cron": "0 0 * * * *"}, "repeat.cron"),  # 6 fields: not the 5 of a cron
        ({"cron": "every day"}, "repeat.cron"),
        ({"cron": "0 9 * * 1", "tz": "Mars/Olympus"}, "repeat.tz"),
        ({"cron": "0 9 * * 1", "every": 1000}, "repeat"),
        ({}, "repeat"),
        ({"every": 0}, "repeat.every"),
    ],
)
async def test_invalid_repeat_options_are_a_422(
    api: httpx.AsyncClient, repeat: dict[str, Any], path: str
) -> None:
    response = await api.post(
        "/api/workflow/execute", json={"workflowDefinition": TICKING, "repeat": repeat}
    )
    assert response.status_code == 422, response.text
    assert path in [d["path"] for d in response.json()["error"]["details"]]
    assert (await api.get("/api/workflow/schedules")).json()["items"] == []


async def test_a_cron_schedule_reports_its_next_run_in_its_time_zone(
    api: httpx.AsyncClient,
) -> None:
    created = await api.post(
        "/api/workflow/execute",
        json={
            "workflowDefinition": TICKING,
            "repeat": {"cron": "30 9 * * *", "tz": "Asia/Tokyo", "limit": 5},
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    next_run = datetime.fromisoformat(body["nextRunAt"])
    assert next_run > datetime.now(UTC)
    assert next_run.astimezone(UTC).strftime("%H:%M") == "00:30"  # 09:30 in Tokyo
    one = (await api.get(f"/api/workflow/schedules/{body['scheduleId']}")).json()
    assert one["repeat"] == {"cron": "30 9 * * *", "every": None, "tz": "Asia/Tokyo", "limit": 5}
    assert one["type"] == "scheduled"
    await api.delete(f"/api/workflow/schedules/{body['scheduleId']}")


async def test_a_schedule_with_an_invalid_definition_is_not_created(
    api: httpx.AsyncClient,
) -> None:
    response = await api.post(
        "/api/workflow/execute",
        json={
            "workflowDefinition": {"id": "x", "nodes": [{"id": "a", "type": "nope"}]},
            "repeat": {"every": 1000},
        },
    )
    assert response.status_code == 422
    assert (await api.get("/api/workflow/schedules")).json()["items"] == []
