"""``GET /metrics``: the API process's Prometheus metrics (``monitor/metrics.py``), with the
queues' job counts read at the scrape; and the middleware counting requests by route."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from workflow_engine.api.errors import ApiError
from workflow_engine.monitor import metrics
from workflow_engine.monitor.logging import get_logger

log = get_logger(__name__)
router = APIRouter(tags=["health"])
QUEUE_READ_S = 2.0
"""The longest a scrape waits for the queue counts (Redis down: the other metrics still)."""
UNMATCHED = "unmatched"


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def prometheus_metrics(request: Request) -> Response:
    """Prometheus metrics (SPEC section 11), in its text format; with ``WFE_METRICS_TOKEN``,
    for ``Authorization: Bearer <token>`` only."""
    services = request.app.state.services
    if not metrics.scrape_allowed(
        request.headers.get("authorization"), services.settings.metrics_token
    ):
        raise ApiError(
            401, "unauthorized", "/metrics needs Authorization: Bearer <WFE_METRICS_TOKEN>"
        )
    try:
        async with asyncio.timeout(QUEUE_READ_S):
            states = await services.queues.states()
    except Exception as exc:  # Redis down: the queue gauges keep their last values
        log.warning("metrics: queue counts unavailable", error=repr(exc))
    else:
        for queue, counts in states.items():
            for state, count in counts.items():
                metrics.QUEUE_JOBS.labels(queue, state).set(count)
    return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)


class RequestMetrics:
    """Counts each HTTP request by its route's path template (``/api/workflow/status/{id}``,
    never the raw path: bounded labels) and status code."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            metrics.HTTP_REQUESTS.labels(template, str(status)).inc()


def install_request_metrics(app: FastAPI) -> None:
    app.add_middleware(RequestMetrics)
