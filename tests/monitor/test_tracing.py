"""Traces (issue 18, extra ``otel``): the submit request's ``traceparent`` is the parent of the
API's span; the context rides in the job's data (through Redis) to the worker, whose run span
is its child, and each node's span the run's."""

from __future__ import annotations

import httpx
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support.processes import wait_until
from tests.support.served import served
from workflow_engine.api.app import create_app
from workflow_engine.api.services import Services
from workflow_engine.monitor import tracing
from workflow_engine.worker.worker import WorkerService

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
CHAIN = {
    "id": "traced",
    "nodes": [
        {"id": "a", "type": "echo", "inputs": {"value": 1}},
        {"id": "b", "type": "echo", "inputs": {"value": 2}},
    ],
    "edges": [{"source": "a", "target": "b"}],
}


async def submit_traced(http: httpx.AsyncClient) -> str:
    """Submit ``CHAIN`` as a request that carries the trace ``TRACE_ID``/``PARENT_ID``."""
    submitted = await http.post(
        "/api/workflow/execute",
        json={"workflowDefinition": CHAIN},
        headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"},
    )
    assert submitted.status_code == 202, submitted.text
    return str(submitted.json()["executionId"])


def exporter() -> InMemorySpanExporter:
    """The process's provider with an in-memory exporter (set once: OpenTelemetry keeps the
    first provider a process sets)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return memory


async def test_one_trace_runs_from_the_request_through_the_job_to_each_node(
    services: Services,
) -> None:
    memory = exporter()
    assert tracing.active()
    worker = WorkerService(services.settings, services.store)
    await worker.start()
    try:
        async with (
            served(create_app(services.settings, services)) as address,
            httpx.AsyncClient(base_url=f"http://{address}") as http,
        ):
            execution_id = await submit_traced(http)

            async def ended() -> bool:
                names = {s.name for s in memory.get_finished_spans()}
                return {"execution", "node a", "node b"} <= names

            await wait_until(ended, 30, "the run's spans")
    finally:
        await worker.stop(grace=5)
        await worker.executor.aclose()
    spans = {s.name: s for s in memory.get_finished_spans()}
    submit, run = spans["submit"], spans["execution"]
    assert f"{submit.context.trace_id:032x}" == TRACE_ID
    assert submit.parent is not None
    assert f"{submit.parent.span_id:016x}" == PARENT_ID
    assert run.context.trace_id == submit.context.trace_id
    assert run.parent is not None
    assert run.parent.span_id == submit.context.span_id
    assert run.attributes is not None
    assert run.attributes["wfe.execution.id"] == execution_id
    for name in ("node a", "node b"):
        node = spans[name]
        assert node.parent is not None
        assert node.parent.span_id == run.context.span_id
        assert node.context.trace_id == submit.context.trace_id
        assert node.start_time is not None
        assert node.end_time is not None
        assert node.start_time <= node.end_time
    assert spans["node a"].end_time <= spans["node b"].start_time  # type: ignore[operator]
