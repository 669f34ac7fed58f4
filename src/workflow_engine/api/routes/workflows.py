"""A tenant's stored workflows (SPEC section 10): each save of an id adds an immutable version;
``POST /api/workflow/execute`` runs one by ``workflowId`` (and ``version``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import Field

from workflow_engine.api import models
from workflow_engine.api.auth import principal
from workflow_engine.api.deps import Svc, Who
from workflow_engine.api.errors import invalid_definition
from workflow_engine.api.schemas import Body, bounded_body, examples
from workflow_engine.errors import DefinitionError
from workflow_engine.fastgpt.translate import as_definition
from workflow_engine.queue.submit import NotFound
from workflow_engine.queue.workflows import WORKFLOW_ID
from workflow_engine.store.records import WorkflowRecord
from workflow_engine.vocabulary import iso_ms

router = APIRouter(
    prefix="/api/workflows",
    tags=["workflows"],
    dependencies=[Depends(principal), Depends(bounded_body)],
)


class SaveWorkflowRequest(Body):
    model_config = examples(
        {
            "id": "daily_report",
            "name": "Daily report",
            "definition": {
                "id": "daily_report",
                "nodes": [
                    {"id": "report", "type": "echo", "inputs": {"value": "{{ inputs.day }}"}}
                ],
            },
        }
    )

    id: str | None = Field(
        None, pattern=WORKFLOW_ID, description="Default: the definition's own `id`."
    )
    name: str | None = Field(None, max_length=500, description="Default: the definition's.")
    definition: dict[str, Any]
    format: Literal["native", "fastgpt"] | None = Field(
        None, description="`fastgpt`: a FastGPT export, stored translated; default: detected."
    )


def _summary(record: WorkflowRecord) -> dict[str, Any]:
    return {
        "workflowId": record.workflow_id,
        "name": record.name,
        "version": record.version,
        "updatedAt": iso_ms(record.created_at),  # the latest version's: versions never change
    }


@router.post("", status_code=201, responses={201: {"model": models.WorkflowSaved}})
async def save_workflow(body: SaveWorkflowRequest, who: Who, svc: Svc) -> dict[str, Any]:
    """Validate the definition (422: every problem, its path under ``definition``) and save
    it as the next version of its id (1 for a new id)."""
    try:
        definition = as_definition(body.definition, body.format, workflow_id=body.id)
        saved = await svc.workflows.save(
            who.tenant, definition, workflow_id=body.id, name=body.name
        )
    except DefinitionError as exc:
        raise invalid_definition(exc, "definition") from None
    return {"workflowId": saved.workflow_id, "version": saved.version}


@router.get("", responses={200: {"model": models.WorkflowList}})
async def list_workflows(
    who: Who,
    svc: Svc,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    cursor: str | None = None,
) -> dict[str, Any]:
    """The latest version of each of the tenant's workflows, by id; pass ``nextCursor`` back
    as ``cursor`` for the next page."""
    page = await svc.store.list_workflows(who.tenant, limit=limit, cursor=cursor)
    return {"items": [_summary(r) for r in page.items], "nextCursor": page.next_cursor}


@router.get("/{workflow_id}", responses={200: {"model": models.StoredWorkflow}})
async def get_workflow(
    workflow_id: str, who: Who, svc: Svc, version: Annotated[int | None, Query(ge=1)] = None
) -> dict[str, Any]:
    """One version (default: the latest), with its definition."""
    found = await svc.workflows.get(who.tenant, workflow_id, version)
    return {
        "workflowId": found.workflow_id,
        "name": found.name,
        "version": found.version,
        "definition": found.definition,
        "createdAt": iso_ms(found.created_at),
    }


@router.get("/{workflow_id}/versions", responses={200: {"model": models.WorkflowVersions}})
async def workflow_versions(workflow_id: str, who: Who, svc: Svc) -> dict[str, Any]:
    """Every version of the workflow, oldest first."""
    versions = await svc.store.workflow_versions(who.tenant, workflow_id)
    if not versions:
        raise NotFound(f"workflow {workflow_id!r} not found")
    return {"items": [{"version": v.version, "createdAt": iso_ms(v.created_at)} for v in versions]}


@router.delete("/{workflow_id}", responses={200: {"model": models.WorkflowDeleted}})
async def delete_workflow(workflow_id: str, who: Who, svc: Svc) -> dict[str, Any]:
    """Delete the workflow: executing it is refused (404) from now on; the executions that
    ran it keep their record (status, rerun)."""
    if not await svc.store.delete_workflow(who.tenant, workflow_id):
        raise NotFound(f"workflow {workflow_id!r} not found")
    return {"workflowId": workflow_id, "status": "deleted"}
