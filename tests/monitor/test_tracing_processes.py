"""Traces across processes (issue 18): a ``wfe api`` and a ``wfe worker`` process, configured
only by the standard ``OTEL_*`` variables, export their spans over OTLP/HTTP to a local
collector; the spans they send form one tree: the request's parent, the API's ``submit``, the
worker's ``execution``, a span per node."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.conftest import make_settings
from tests.monitor.test_tracing import PARENT_ID, TRACE_ID, submit_traced
from tests.support.http_server import LocalHttpServer
from tests.support.processes import (
    WFE,
    Process,
    settings_env,
    start_worker,
    wait_http,
    wait_until,
)
from tests.support.services import RedisServer, free_port


def received(collector: LocalHttpServer) -> Iterator[tuple[str, Any]]:
    """Each span the collector was sent, with the ``service.name`` of the process that sent it."""
    for request in collector.requests:
        if request.path != "/v1/traces":
            continue
        export = ExportTraceServiceRequest.FromString(request.body)
        for resource_spans in export.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    yield attributes["service.name"], span


async def test_the_api_and_worker_processes_export_one_span_tree(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    collector = await LocalHttpServer().start()
    otel = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.base_url,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    settings = make_settings(redis_server.url, f"sqlite:///{tmp_path}/wfe.db")
    worker = await asyncio.to_thread(start_worker, settings, **otel)
    port = free_port()
    api = Process(
        [WFE, "api"],
        settings_env(settings, WFE_PORT=str(port), WFE_HOST="127.0.0.1", **otel),
    )
    try:
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/health")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            execution_id = await submit_traced(http)

        async def exported() -> dict[str, tuple[str, Any]] | None:
            spans = {span.name: (service, span) for service, span in received(collector)}
            wanted = {"submit", "execution", "node a", "node b"}
            return spans if wanted <= spans.keys() else None

        spans = await wait_until(exported, 30, "the spans of both processes")
    finally:
        await asyncio.to_thread(api.stop)
        await asyncio.to_thread(worker.stop)
        await collector.stop()
    (api_service, submit), (worker_service, run) = spans["submit"], spans["execution"]
    assert (api_service, worker_service) == ("workflow-engine-api", "workflow-engine-worker")
    assert submit.trace_id.hex() == TRACE_ID
    assert submit.parent_span_id.hex() == PARENT_ID
    assert run.trace_id == submit.trace_id
    assert run.parent_span_id == submit.span_id
    run_attributes = {a.key: a.value.string_value for a in run.attributes}
    assert run_attributes["wfe.execution.id"] == execution_id
    for name in ("node a", "node b"):
        service, node = spans[name]
        assert service == "workflow-engine-worker"
        assert (node.trace_id, node.parent_span_id) == (run.trace_id, run.span_id)
        assert node.start_time_unix_nano <= node.end_time_unix_nano
    assert spans["node a"][1].end_time_unix_nano <= spans["node b"][1].start_time_unix_nano
