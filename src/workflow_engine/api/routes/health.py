"""Liveness (``/health``: the process answers) and readiness (``/ready``: Redis and the store
answer too)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request

from workflow_engine.api.models import Health, Readiness
from workflow_engine.api.responses import FastJSONResponse
from workflow_engine.vocabulary import iso, now_ms

router = APIRouter(tags=["health"])


@router.get("/health", responses={200: {"model": Health}})
async def health() -> dict[str, Any]:
    return {"status": "ok", "timestamp": iso(now_ms() / 1000)}


@router.get(
    "/ready",
    responses={
        200: {"model": Readiness, "description": "Redis and the store answer."},
        503: {"model": Readiness, "description": "Redis or the store does not answer."},
    },
)
async def ready(request: Request) -> FastJSONResponse:
    services = request.app.state.services
    checks: dict[str, str] = {}

    async def check(name: str, probe: Any) -> None:
        try:
            async with asyncio.timeout(2):
                await probe
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"unreachable: {type(exc).__name__}"

    await asyncio.gather(
        check("redis", services.redis.ping()), check("store", services.store.ping())
    )
    ok = all(v == "ok" for v in checks.values())
    return FastJSONResponse(
        {"status": "ready" if ok else "unavailable", "checks": checks},
        status_code=200 if ok else 503,
    )
