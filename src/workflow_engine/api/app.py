"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from workflow_engine import __version__
from workflow_engine.api.errors import install_error_handlers
from workflow_engine.api.limits import install_body_limit
from workflow_engine.api.openapi import install_openapi
from workflow_engine.api.responses import FastJSONResponse
from workflow_engine.api.routes import (
    admin,
    callbacks,
    connections,
    events,
    health,
    metrics,
    ui,
    workflow,
    workflows,
)
from workflow_engine.api.routes.metrics import install_request_metrics
from workflow_engine.api.services import Services
from workflow_engine.config import Settings, load_settings
from workflow_engine.monitor.metrics import count_tenants


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    """The API. With ``services`` given, the caller owns them (tests, ``wfe dev``); otherwise
    they are opened at startup and closed at shutdown."""
    settings = settings or (services.settings if services else load_settings())
    count_tenants(settings.metrics_tenant_label)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if services is not None:
            yield
            return
        opened = await Services.open(settings)
        app.state.services = opened
        try:
            yield
        finally:
            await opened.close()

    # /docs and /redoc load their scripts and styles from this server, not from a CDN: they
    # work offline and behind a strict egress policy
    app = FastAPIOffline(
        static_url="/docs-assets",
        title="workflow-engine",
        version=__version__,
        description="Run workflow graphs on Redis/BullMQ workers; observe and cancel them.",
        lifespan=lifespan,
        default_response_class=FastJSONResponse,
    )
    if services is not None:
        app.state.services = services
    install_error_handlers(app)
    install_openapi(app)
    install_body_limit(app, settings.max_body_bytes)
    install_request_metrics(app)
    routers = (health, metrics, workflow, workflows, events, connections, callbacks, admin, ui)
    for module in routers:
        app.include_router(module.router, max_body_size=settings.max_body_bytes)
    return app
