"""Queue administration (SPEC section 11): keys with the ``admin`` scope only (403 for the
others); ``queue/admin.py`` keeps the store consistent with what these do to the queues."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException

from workflow_engine.api import models
from workflow_engine.api.auth import Principal, principal
from workflow_engine.api.deps import Svc, Who
from workflow_engine.api.schemas import CleanRequest, bounded_body


async def admin_only(who: Who) -> Principal:
    if not who.admin:
        raise HTTPException(403, "this needs a key with the admin scope (tenant:admin=key)")
    return who


router = APIRouter(
    prefix="/api/admin",
    tags=["admin"],
    dependencies=[Depends(principal), Depends(admin_only), Depends(bounded_body)],
)


@router.get("/queues", responses={200: {"model": models.QueueList}})
async def queues(svc: Svc) -> dict[str, Any]:
    """Each queue class: paused or not, its jobs by state, its workers."""
    return {"queues": await svc.admin.overview()}


@router.post("/queues/{name}/pause", responses={200: {"model": models.QueuePaused}})
async def pause(name: str, svc: Svc) -> dict[str, Any]:
    """Workers stop taking this queue's jobs (those running go on); submits still queue."""
    return await svc.admin.pause(name)


@router.post("/queues/{name}/resume", responses={200: {"model": models.QueuePaused}})
async def resume(name: str, svc: Svc) -> dict[str, Any]:
    return await svc.admin.resume(name)


@router.post("/queues/{name}/clean", responses={200: {"model": models.QueueCleaned}})
async def clean(name: str, body: CleanRequest, svc: Svc) -> dict[str, Any]:
    """Remove jobs by state, older than ``graceMs``, at most ``limit``."""
    return await svc.admin.clean(name, body.state, body.grace_ms, body.limit)


@router.post("/queues/{name}/retry-failed", responses={200: {"model": models.QueueRetried}})
async def retry_failed(name: str, svc: Svc) -> dict[str, Any]:
    """Send the failed jobs back: their executions pending again, then run."""
    return await svc.admin.retry_failed(name)
