"""The workflow endpoints of SPEC section 4."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from workflow_engine.api import models
from workflow_engine.api.auth import principal
from workflow_engine.api.deps import Svc, Who
from workflow_engine.api.errors import ApiError
from workflow_engine.api.schemas import (
    ExecuteRequest,
    RerunRequest,
    ResumeRequest,
    bounded_body,
)
from workflow_engine.api.services import Services
from workflow_engine.config import Settings
from workflow_engine.errors import InvalidRequest, Problem
from workflow_engine.fastgpt.translate import as_definition
from workflow_engine.monitor import tracing
from workflow_engine.queue.callbacks import callback_secret, delivery_log, url_problem
from workflow_engine.queue.schedules import Repeat
from workflow_engine.queue.submit import NotFound, Submission, Submitted
from workflow_engine.store.records import CALLBACK_KEY, ENGINE_KEYS
from workflow_engine.vocabulary import ExecutionStatus, iso_ms

# every JSON body is held to the value bounds of SPEC section 8 before its model sees it
# the key first (401 before anything about the body), then the body's value bounds
router = APIRouter(
    prefix="/api/workflow",
    tags=["workflow"],
    dependencies=[Depends(principal), Depends(bounded_body)],
)


async def _to_run(
    body: ExecuteRequest, tenant: str, svc: Services
) -> tuple[dict[str, Any], int | None]:
    """The definition to run, and its version when it is a stored workflow: exactly one of
    ``workflowDefinition`` and ``workflowId`` (422 otherwise; 404 for a workflow the tenant
    does not have, or deleted)."""
    one_of = "give exactly one of workflowDefinition and workflowId"
    if body.workflow_id is None:
        if body.workflow_definition is None:
            paths = ("workflowDefinition", "workflowId")
            raise InvalidRequest([Problem(path, one_of, "one_of") for path in paths])
        if body.version is not None:
            message = "version goes with workflowId (a stored workflow)"
            raise InvalidRequest([Problem("version", message, "unexpected")])
        return as_definition(body.workflow_definition, body.format), None
    if body.workflow_definition is not None:
        raise InvalidRequest([Problem("workflowId", one_of, "one_of")])
    return await svc.workflows.runnable(tenant, body.workflow_id, body.version)


def _accepted(submitted: Submitted) -> dict[str, Any]:
    return {
        "executionId": submitted.execution_id,
        "jobId": submitted.job_id,
        "status": str(submitted.status),
    }


@router.post(
    "/execute",
    status_code=202,
    responses={
        202: {"model": models.Accepted, "description": "Recorded and queued."},
        201: {"model": models.ScheduleCreated, "description": "With `repeat`: a schedule."},
    },
)
async def execute(
    body: ExecuteRequest, who: Who, svc: Svc, request: Request, response: Response
) -> dict[str, Any]:
    """Submit an execution of ``workflowDefinition``, or of the stored workflow ``workflowId``
    (its ``version``, default the latest): 202 once it is recorded and its job is queued. With
    ``repeat``, create a schedule instead: 201, and each tick starts a new execution."""
    if who.tenant_id is not None and body.user_id not in (None, who.tenant_id):
        raise ApiError(403, "forbidden", f"this API key cannot act for user {body.user_id!r}")
    metadata = {k: v for k, v in body.metadata.items() if k not in ENGINE_KEYS}
    if body.callback_url is not None:
        metadata[CALLBACK_KEY] = _callback_url(body.callback_url, who.tenant, svc)
    definition, version = await _to_run(body, who.tenant, svc)
    submission = Submission(
        definition=definition,
        inputs=body.inputs,
        tenant_id=who.tenant,  # without keys, `anonymous` whatever `userId` says (SPEC 8)
        queue=_queue(body, svc.settings),
        priority=body.priority,
        delay_ms=body.delay,
        client_id=body.client_id,
        # the parent link and the callback are the engine's keys, never a client's
        metadata=metadata,
        idempotency_key=body.idempotency_key,
        workflow_version=version,
    )
    if body.repeat is not None:
        repeat = Repeat(body.repeat.cron, body.repeat.every, body.repeat.tz, body.repeat.limit)
        schedule = await svc.scheduler.create(submission, repeat)
        response.status_code = 201
        return {"scheduleId": schedule.schedule_id, "nextRunAt": iso_ms(schedule.next_run_ms)}
    with tracing.span(
        "submit", tracing.from_headers(request.headers), **{"wfe.tenant": who.tenant}
    ) as carrier:
        submitted = await svc.submitter.submit(replace(submission, trace=carrier))
    return _accepted(submitted)


def _queue(body: ExecuteRequest, settings: Settings) -> str:
    """The queue the execution goes to: ``queue`` (a named queue or a class) when given, else
    ``type`` (``scheduled`` for a schedule without one). 422 for an unknown queue, or a
    ``type`` that is not the class of the named queue."""
    typed = "type" in body.model_fields_set
    if body.queue is None:
        return body.type if typed or body.repeat is None else "scheduled"
    if body.queue not in settings.queue_names:
        message = f"no queue {body.queue!r} (queues: {', '.join(settings.queue_names)})"
        raise ApiError(
            422, "invalid", message, [{"path": "queue", "message": message, "code": "unknown"}]
        )
    queue_class = settings.queue_class(body.queue)
    if typed and body.type != queue_class:
        message = f"queue {body.queue!r} is of class {queue_class!r}, not {body.type!r}"
        raise ApiError(
            422, "invalid", message, [{"path": "type", "message": message, "code": "mismatch"}]
        )
    return body.queue


def _callback_url(url: str, tenant: str, svc: Services) -> str:
    """A ``callbackUrl`` to keep: 422 when it is no http(s) URL, or when the server has no key
    to sign callbacks with."""
    problem = url_problem(url)
    if problem is not None:
        raise ApiError(
            422,
            "invalid",
            f"callbackUrl {problem}",
            [{"path": "callbackUrl", "message": problem, "code": "invalid"}],
        )
    if callback_secret(svc.settings, tenant) is None:
        raise ApiError(
            422,
            "not_configured",
            "callbacks need a signing key: set WFE_CALLBACK_SECRET (or WFE_SECRET_KEY)",
            [{"path": "callbackUrl", "message": "no signing key", "code": "not_configured"}],
        )
    return url


@router.get("/status/{execution_id}", responses={200: {"model": models.ExecutionState}})
async def status(execution_id: str, who: Who, svc: Svc, nodes: bool = False) -> dict[str, Any]:
    """The execution's context, progress and result (and final ``variables`` when its
    definition declares some, SPEC section 9); ``?nodes=true`` adds every node result."""
    record = await svc.store.get(execution_id, who.tenant_id)
    if record is None:
        raise NotFound(f"execution {execution_id} not found")
    body: dict[str, Any] = {
        "context": record.context(svc.settings.queue_class(record.queue)),
        "progress": record.progress_or_empty(),
        "result": record.result,
    }
    if record.variables is not None:
        body["variables"] = record.variables
    if CALLBACK_KEY in record.metadata:
        deliveries = await delivery_log(svc.redis, svc.redis_keys, execution_id)
        body["callback"] = {"url": record.metadata[CALLBACK_KEY], "deliveries": deliveries}
    if nodes:
        body["nodes"] = [n.to_dict() for n in await svc.store.node_results(execution_id)]
    return body


@router.get("/reconnect/{client_id}", responses={200: {"model": models.ActiveExecutions}})
async def reconnect(client_id: str, who: Who, svc: Svc) -> list[dict[str, Any]]:
    """The client's executions that are still pending, running or waiting."""
    records = await svc.store.active_for_client(who.tenant_id, client_id)
    last_ids = await svc.hub.last_ids([svc.redis_keys.events(r.execution_id) for r in records])
    return [
        {
            "executionId": r.execution_id,
            "status": str(r.status),
            "progress": r.progress_or_empty(),
            "startedAt": iso_ms(r.started_at),
            "lastEventId": last_id,
        }
        for r, last_id in zip(records, last_ids, strict=True)
    ]


@router.post("/cancel/{execution_id}", responses={200: {"model": models.Cancelled}})
async def cancel(execution_id: str, who: Who, svc: Svc) -> dict[str, Any]:
    """Cancel an execution: a pending one leaves the queue; a running one is stopped by its
    worker (its in-flight node cancelled) before this answers. 409 once it finished."""
    await svc.canceller.cancel(execution_id, who.tenant_id)
    return {"executionId": execution_id, "status": "cancelled"}


@router.post("/resume/{execution_id}", status_code=202, responses={202: {"model": models.Resumed}})
async def resume(execution_id: str, body: ResumeRequest, who: Who, svc: Svc) -> dict[str, Any]:
    """Deliver the answer an execution parked on ``wait_input`` waits for. 422 when it breaks
    the node's ``schema`` (every problem listed); 409 when the execution does not wait for
    input. 202: the answer is recorded and a worker resumes the execution."""
    resumed = await svc.resumer.resume(execution_id, who.tenant_id, body.node_id, body.input)
    return {"executionId": resumed.execution_id, "nodeId": resumed.node_id, "status": "resumed"}


@router.post("/rerun/{execution_id}", status_code=202, responses={202: {"model": models.Accepted}})
async def rerun(execution_id: str, body: RerunRequest, who: Who, svc: Svc) -> dict[str, Any]:
    """A new execution of the same workflow that reuses the recorded results of every node
    upstream of ``fromNode`` and runs the rest. 409 while the execution is still active or
    when a node upstream has no usable result."""
    submitted = await svc.rerunner.rerun(execution_id, who.tenant_id, body.from_node, body.inputs)
    return _accepted(submitted)


@router.get("/schedules", responses={200: {"model": models.ScheduleList}})
async def schedules(who: Who, svc: Svc) -> dict[str, Any]:
    """The caller's schedules, soonest next run first."""
    found = await svc.scheduler.of_tenant(who.tenant_id)
    return {"items": [s.to_dict(queue_class=svc.settings.queue_class(s.queue)) for s in found]}


@router.get("/schedules/{schedule_id}", responses={200: {"model": models.ScheduleDetail}})
async def schedule(schedule_id: str, who: Who, svc: Svc) -> dict[str, Any]:
    """One schedule, with the definition and inputs each tick runs."""
    schedule = await svc.scheduler.get(schedule_id, who.tenant_id)
    return schedule.to_dict(detail=True, queue_class=svc.settings.queue_class(schedule.queue))


@router.delete("/schedules/{schedule_id}", responses={200: {"model": models.ScheduleDeleted}})
async def delete_schedule(schedule_id: str, who: Who, svc: Svc) -> dict[str, Any]:
    """Stop a schedule: no tick starts after this answers."""
    await svc.scheduler.delete(schedule_id, who.tenant_id)
    return {"scheduleId": schedule_id, "status": "deleted"}


@router.get("/stats", responses={200: {"model": models.Stats}})
async def stats(who: Who, svc: Svc) -> dict[str, Any]:
    """Execution counts per status (of the caller's tenant) and, for a key with the ``admin``
    scope, job counts per queue class: those are queue-wide, every tenant's activity."""
    body: dict[str, Any] = {}
    if who.admin:
        body["queues"] = await svc.queues.counts()
    body["executions"] = await svc.store.count_by_status(who.tenant_id)
    return body


@router.get("/executions", responses={200: {"model": models.ExecutionPage}})
async def executions(
    who: Who,
    svc: Svc,
    status: ExecutionStatus | None = None,
    workflow_id: Annotated[str | None, Query(alias="workflowId")] = None,
    client_id: Annotated[str | None, Query(alias="clientId")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Executions newest first; pass ``nextCursor`` back as ``cursor`` for the next page."""
    page = await svc.store.list_executions(
        who.tenant_id,
        status=status,
        workflow_id=workflow_id,
        client_id=client_id,
        limit=limit,
        cursor=cursor,
    )
    contexts = [r.context(svc.settings.queue_class(r.queue)) for r in page.items]
    return {"items": contexts, "nextCursor": page.next_cursor}
