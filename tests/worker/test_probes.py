"""A worker process's probes and metrics on ``WFE_METRICS_PORT`` (SPEC section 11), and the
API's ``/metrics``, over real sockets: the figures move as executions run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import make_settings
from tests.support.processes import start_worker, wait_until
from tests.support.served import served
from tests.support.services import free_port
from workflow_engine.api.app import create_app
from workflow_engine.api.services import Services
from workflow_engine.embedded_redis import EmbeddedRedis

ECHO = {"id": "probe", "nodes": [{"id": "a", "type": "echo", "inputs": {"value": 1}}]}
FAILING = {"id": "boom", "nodes": [{"id": "x", "type": "fail", "inputs": {"message": "no"}}]}


def samples(text: str, name: str, **labels: str) -> float:
    """The sum of the samples ``name`` with ``labels`` in a Prometheus text page."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


async def test_a_workers_probes_and_metrics_and_the_apis_metrics_follow_the_executions(
    own_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    port = free_port()
    settings = make_settings(own_redis.url, f"sqlite:///{tmp_path}/wfe.db", metrics_port=port)
    worker = await asyncio.to_thread(start_worker, settings)
    services = await Services.open(settings)
    base = f"http://127.0.0.1:{port}"
    try:
        async with (
            served(create_app(settings, services)) as address,
            httpx.AsyncClient(base_url=f"http://{address}") as api,
            httpx.AsyncClient(base_url=base) as probes,
        ):
            assert (await probes.get("/health")).status_code == 200
            ready = await probes.get("/ready")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"] == {"redis": "ok", "store": "ok", "worker": "ok"}
            before = (await probes.get("/metrics")).text
            api_before = (await api.get("/metrics")).text  # (the API's count per process)
            ids = []
            for definition in (ECHO, ECHO, FAILING):
                submitted = await api.post(
                    "/api/workflow/execute", json={"workflowDefinition": definition}
                )
                assert submitted.status_code == 202, submitted.text
                ids.append(submitted.json()["executionId"])

            async def all_ended() -> bool:
                for execution_id in ids:
                    status = await api.get(f"/api/workflow/status/{execution_id}")
                    if status.json()["context"]["status"] not in ("completed", "failed"):
                        return False
                return True

            await wait_until(all_ended, 30, "the executions to end")

            async def counted() -> str | None:
                text = (await probes.get("/metrics")).text
                done = samples(text, "wfe_executions_total", status="failed")
                return text if done >= 1 else None

            after = await wait_until(counted, 10, "the worker to count the executions")
            assert samples(before, "wfe_executions_total") == 0
            assert samples(after, "wfe_executions_total", queue="workflow", status="completed") == 2
            assert samples(after, "wfe_executions_total", queue="workflow", status="failed") == 1
            assert samples(after, "wfe_execution_duration_seconds_count", queue="workflow") == 3
            echo = {"type": "echo", "status": "completed"}
            assert samples(after, "wfe_node_duration_seconds_count", **echo) == 2
            failed = {"type": "fail", "status": "failed"}
            assert samples(after, "wfe_node_duration_seconds_count", **failed) == 1
            assert samples(after, "wfe_worker_active_executions") == 0
            assert samples(after, "wfe_store_commit_seconds_count") >= 1
            # the API's own: requests by route template (no execution id), the queues' jobs
            scraped = await api.get("/metrics")
            assert scraped.status_code == 200
            assert scraped.headers["content-type"].startswith("text/plain")
            text = scraped.text
            route = {"route": "/api/workflow/execute", "status": "202"}
            counted_now = samples(text, "wfe_http_requests_total", **route)
            assert counted_now - samples(api_before, "wfe_http_requests_total", **route) == 3
            status_route = {"route": "/api/workflow/status/{execution_id}", "status": "200"}
            assert samples(text, "wfe_http_requests_total", **status_route) >= 3
            assert not any(execution_id in text for execution_id in ids)
            assert samples(text, "wfe_queue_jobs", queue="workflow", state="completed") == 2
            assert samples(text, "wfe_queue_jobs", queue="workflow", state="failed") == 1
            # Redis gone: the worker is alive but not ready
            own_redis.stop()
            assert (await probes.get("/health")).status_code == 200
            down = await probes.get("/ready")
            assert down.status_code == 503
            assert down.json()["checks"]["redis"].startswith("unreachable")
    finally:
        await services.close()
        await asyncio.to_thread(worker.stop)


async def test_with_a_metrics_token_only_scrapes_that_present_it_read_the_metrics(
    own_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    port = free_port()
    token = "scrape-token"
    settings = make_settings(
        own_redis.url, f"sqlite:///{tmp_path}/wfe.db", metrics_port=port, metrics_token=token
    )
    worker = await asyncio.to_thread(start_worker, settings, WFE_METRICS_TOKEN=token)
    services = await Services.open(settings)
    try:
        async with (
            served(create_app(settings, services)) as address,
            httpx.AsyncClient(base_url=f"http://{address}") as api,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as probes,
        ):
            for client in (api, probes):
                for headers in (
                    {},
                    {"Authorization": "Bearer wrong"},
                    {"Authorization": token},
                    {"Authorization": "Bearer tökén".encode("latin-1")},
                ):
                    refused = await client.get("/metrics", headers=headers)
                    assert refused.status_code == 401, (client.base_url, headers)
                    assert refused.json()["error"]["code"] == "unauthorized"
                scraped = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
                assert scraped.status_code == 200
                assert "wfe_executions_total" in scraped.text
            assert (await probes.get("/health")).status_code == 200
            assert (await probes.get("/ready")).status_code == 200
    finally:
        await services.close()
        await asyncio.to_thread(worker.stop)
