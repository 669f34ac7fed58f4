"""OpenTelemetry traces (SPEC section 11, extra ``otel``): one trace per execution, from the
submit request (its W3C ``traceparent`` honoured) through the job (the context rides in the
job's data) to the worker's span of the run and a span per node.

Off unless a tracer provider is configured: ``configure()`` sets one up from the standard
``OTEL_*`` variables when the ``otel`` extra is installed and ``OTEL_TRACES_EXPORTER`` or
``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`` is set (or a program sets its own provider). Without
one, every function here returns at once: no span objects, no context propagation."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any, Final

from workflow_engine.monitor.logging import get_logger

log = get_logger(__name__)

TRACER: Final = "workflow_engine"
Carrier = dict[str, str]


def _trace() -> Any:
    try:
        from opentelemetry import trace
    except ImportError:  # pragma: no cover - fastapi brings the API; the extra the SDK
        return None
    return trace


def active() -> bool:
    """Whether a real tracer provider is set (the SDK's, not the API's no-op proxy)."""
    trace = _trace()
    if trace is None:
        return False
    provider = trace.get_tracer_provider()
    return type(provider).__name__ not in ("ProxyTracerProvider", "NoOpTracerProvider")


def configure(service_name: str) -> bool:
    """Set up the SDK from ``OTEL_*`` (an OTLP/HTTP exporter) when asked to and installed;
    whether tracing is on."""
    if active():
        return True
    wanted = any(
        os.environ.get(name)
        for name in (
            "OTEL_TRACES_EXPORTER",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        )
    )
    if not wanted or os.environ.get("OTEL_TRACES_EXPORTER") == "none":
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("OTEL_* is set but the otel extra is not installed: no traces")
        return False
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return True


def _context(carrier: Mapping[str, str] | None) -> Any:
    if not carrier:
        return None
    from opentelemetry.propagate import extract

    return extract(dict(carrier))


@contextlib.contextmanager
def span(
    name: str, parent: Mapping[str, str] | None = None, **attributes: Any
) -> Iterator[Carrier | None]:
    """A span (child of ``parent``, a W3C carrier, when given) for the block; yields the
    carrier of the span itself (to hand on), or None when tracing is off."""
    if not active():
        yield None
        return
    from opentelemetry import trace
    from opentelemetry.propagate import inject

    tracer = trace.get_tracer(TRACER)
    with tracer.start_as_current_span(
        name,
        context=_context(parent),
        attributes={k: v for k, v in attributes.items() if v is not None},
    ):
        carrier: Carrier = {}
        inject(carrier)
        yield carrier


def record(
    name: str,
    parent: Mapping[str, str] | None,
    start_s: float | None,
    end_s: float | None,
    *,
    error: str | None = None,
    **attributes: Any,
) -> None:
    """A span that is over already (a node: from its start to its end), child of
    ``parent``."""
    if not active() or start_s is None or end_s is None:
        return
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode

    tracer = trace.get_tracer(TRACER)
    done = tracer.start_span(
        name,
        context=_context(parent),
        start_time=int(start_s * 1e9),
        attributes={k: v for k, v in attributes.items() if v is not None},
    )
    if error is not None:
        done.set_status(Status(StatusCode.ERROR, error))
    done.end(end_time=int(end_s * 1e9))


def from_headers(headers: Mapping[str, str]) -> Carrier | None:
    """The W3C trace context of a request (``traceparent``, ``tracestate``)."""
    if not active():
        return None
    found = {k: headers[k] for k in ("traceparent", "tracestate") if k in headers}
    return found or None
