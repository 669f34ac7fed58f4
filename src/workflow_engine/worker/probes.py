"""A worker's own HTTP port (``WFE_METRICS_PORT``, SPEC section 11): ``/metrics`` (its
Prometheus metrics), ``/health`` (liveness: its event loop answers) and ``/ready`` (it takes
jobs: started, not stopping, Redis and the store answer). Served by uvicorn on the worker's
event loop; a port already taken is logged and the worker runs on without it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from workflow_engine.monitor import metrics
from workflow_engine.monitor.logging import get_logger

log = get_logger(__name__)
CHECK_S = 2.0
"""The longest ``/ready`` waits for Redis or the store."""


class Probes:
    """The probe server of one worker. ``taking_jobs`` says whether it is started and not
    stopping; ``checks`` ping what it needs (Redis, the store)."""

    def __init__(
        self,
        host: str,
        port: int,
        taking_jobs: Callable[[], bool],
        checks: dict[str, Callable[[], Awaitable[Any]]],
        token: SecretStr | None = None,
    ) -> None:
        self.taking_jobs = taking_jobs
        self.checks = checks
        self.token = token
        """``WFE_METRICS_TOKEN``: what a scrape of ``/metrics`` must present."""
        app = Starlette(
            routes=[
                Route("/metrics", self._metrics),
                Route("/health", self._health),
                Route("/ready", self._ready),
            ]
        )
        config = uvicorn.Config(
            app, host=host, port=port, log_config=None, access_log=False, lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Serve; back once the port is bound (or could not be)."""
        self._task = asyncio.ensure_future(self._serve())
        while not self.server.started and not self._task.done():  # noqa: ASYNC110 (uvicorn
            await asyncio.sleep(0.01)  # has no event for it)

    async def _serve(self) -> None:
        # uvicorn's ``serve`` swaps the process's SIGTERM/SIGINT handlers while it serves (for
        # the worker's whole life here): ``_serve`` is the same without that, and the worker's
        # own handlers stay in place
        serve = getattr(self.server, "_serve", self.server.serve)
        try:
            await serve()
        except (OSError, SystemExit) as exc:  # (uvicorn exits when it cannot bind)
            log.warning(
                "worker probes not served (WFE_METRICS_PORT taken?)",
                port=self.server.config.port,
                error=repr(exc),
            )

    async def stop(self) -> None:
        if self._task is None:
            return
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task

    async def _metrics(self, request: Request) -> Response:
        if not metrics.scrape_allowed(request.headers.get("authorization"), self.token):
            return JSONResponse(
                {
                    "error": {
                        "code": "unauthorized",
                        "message": "/metrics needs Authorization: Bearer <WFE_METRICS_TOKEN>",
                        "details": [],
                    }
                },
                status_code=401,
            )
        return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)

    async def _health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def _ready(self, request: Request) -> Response:
        results: dict[str, str] = {}

        async def check(name: str, probe: Callable[[], Awaitable[Any]]) -> None:
            try:
                async with asyncio.timeout(CHECK_S):
                    await probe()
                results[name] = "ok"
            except Exception as exc:
                results[name] = f"unreachable: {type(exc).__name__}"

        await asyncio.gather(*(check(name, probe) for name, probe in self.checks.items()))
        results["worker"] = "ok" if self.taking_jobs() else "not taking jobs"
        ok = all(v == "ok" for v in results.values())
        return JSONResponse(
            {"status": "ready" if ok else "unavailable", "checks": results},
            status_code=200 if ok else 503,
        )
