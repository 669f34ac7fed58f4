"""The key a tenant verifies its completion callbacks with (``X-WFE-Signature``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from workflow_engine.api import models
from workflow_engine.api.auth import principal
from workflow_engine.api.deps import Svc, Who
from workflow_engine.api.errors import ApiError
from workflow_engine.queue.callbacks import SIGNATURE, callback_secret

router = APIRouter(prefix="/api/callbacks", tags=["callbacks"], dependencies=[Depends(principal)])


@router.get("/secret", responses={200: {"model": models.CallbackSecret}})
async def secret(who: Who, svc: Svc) -> dict[str, Any]:
    """The caller's tenant's callback key: its own, derived from the server's key, unless the
    operator set one ``WFE_CALLBACK_SECRET`` for every tenant; that one only an ``admin`` key
    may read (it would let a tenant sign another's callbacks)."""
    if svc.settings.callback_secret is not None and not who.admin:
        raise ApiError(
            403,
            "forbidden",
            "callbacks are signed with the operator's WFE_CALLBACK_SECRET: ask the operator",
        )
    key = callback_secret(svc.settings, who.tenant)
    if key is None:
        raise ApiError(
            404,
            "not_configured",
            "the server has no callback key: set WFE_CALLBACK_SECRET or WFE_SECRET_KEY",
        )
    return {
        "tenant": who.tenant,
        "secret": key.decode(),
        "header": SIGNATURE,
        "algorithm": "sha256=<hex HMAC-SHA256 of the raw body, keyed by secret>",
    }
