"""A tenant's connections (SPEC section 10): where its ``llm`` nodes send requests, with the
key they send. The key and headers are stored encrypted (``vault.py``) and never answered."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import Field

from workflow_engine.api import models
from workflow_engine.api.auth import principal
from workflow_engine.api.deps import Svc, Who
from workflow_engine.api.errors import ApiError
from workflow_engine.api.schemas import Body, bounded_body, examples
from workflow_engine.queue.submit import NotFound
from workflow_engine.store.records import ConnectionRecord
from workflow_engine.vocabulary import iso_ms, now_ms

router = APIRouter(
    prefix="/api/connections",
    tags=["connections"],
    dependencies=[Depends(principal), Depends(bounded_body)],
)

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class ConnectionRequest(Body):
    model_config = examples(
        {
            "name": "default",
            "kind": "openai",
            "baseUrl": "https://api.openai.com/v1",
            "apiKey": "sk-proj-REPLACE-ME",
            "headers": {"OpenAI-Organization": "org-acme"},
        }
    )

    name: str = Field(pattern=NAME, description="What an `llm` node's `connection` names.")
    kind: Literal["openai"] = "openai"
    base_url: str = Field(pattern=r"^https?://[^\s]+$", max_length=2000)
    api_key: str = Field(min_length=1, max_length=4096)
    headers: dict[str, str] = Field(default_factory=dict, max_length=50)


def _public(record: ConnectionRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "kind": record.kind,
        "baseUrl": record.base_url,
        "createdAt": iso_ms(record.created_at),
        "updatedAt": iso_ms(record.updated_at),
    }


@router.post("", status_code=201, responses={201: {"model": models.ConnectionSaved}})
async def save_connection(body: ConnectionRequest, who: Who, svc: Svc) -> dict[str, Any]:
    """Create a connection, or replace the tenant's connection of that name. 201 with the
    connection without its key."""
    if not svc.vault.ready:
        raise ApiError(
            503,
            "not_configured",
            "WFE_SECRET_KEY is not set: this server cannot store connections encrypted",
        )
    now = now_ms()
    record = ConnectionRecord(
        tenant_id=who.tenant,
        name=body.name,
        kind=body.kind,
        base_url=body.base_url,
        secret=svc.vault.seal({"apiKey": body.api_key, "headers": body.headers}),
        created_at=now,
        updated_at=now,
    )
    await svc.store.put_connection(record)
    return {"name": record.name, "kind": record.kind, "baseUrl": record.base_url}


@router.get("", responses={200: {"model": models.ConnectionList}})
async def list_connections(who: Who, svc: Svc) -> dict[str, Any]:
    """The tenant's connections by name, without their keys."""
    return {"items": [_public(r) for r in await svc.store.list_connections(who.tenant)]}


@router.delete("/{name}", responses={200: {"model": models.ConnectionDeleted}})
async def delete_connection(name: str, who: Who, svc: Svc) -> dict[str, Any]:
    """Remove a connection: nodes naming it fail from now on (or use a server-wide one of the
    same name)."""
    if not await svc.store.delete_connection(who.tenant, name):
        raise NotFound(f"connection {name!r} not found")
    return {"name": name, "status": "deleted"}
