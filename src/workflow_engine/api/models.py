"""The JSON bodies the API answers with (SPEC sections 4, 10 and 11), as typed models for the
OpenAPI document, each with an example. The routes build their answers as plain dicts and
attach these with ``responses={status: {"model": ...}}``: documentation only, no per-request
validation; ``tests/api/test_openapi.py`` checks real answers against them.

Every field the answer always carries is required (``null`` where it says so); a field present
only sometimes is optional and never ``null``; an unknown field is an error
(``additionalProperties: false``), so that a drifting answer fails the test."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict
from pydantic.json_schema import SkipJsonSchema

from workflow_engine.vocabulary import QUEUE_NAMES, ExecutionStatus, NodeStatus

QueueName = Literal["realtime", "workflow", "scheduled", "background"]
"""A queue class, which is also an execution's ``type``."""


def _no_default(schema: JsonDict) -> None:
    schema.pop("default", None)


def sometimes(description: str) -> Any:
    """A field present only in some answers (``description`` says when), never ``null``."""
    return Field(None, description=description, json_schema_extra=_no_default)


def _examples(*examples: Any) -> ConfigDict:
    return ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        json_schema_extra={"examples": list(examples)},
    )


# -- the examples, composed from each other as the answers are ---------------------------------

_EXECUTION_ID = "exec_01JD8ZQ4W6V3T9K2M5N7P8R0SA"
_ERROR: dict[str, Any] = {
    "message": "payment service answered 503",
    "nodeId": "charge",
    "type": "http_error",
}
_USAGE: dict[str, Any] = {"promptTokens": 812, "completionTokens": 164, "totalTokens": 976}
_CONTEXT: dict[str, Any] = {
    "executionId": _EXECUTION_ID,
    "workflowId": "order_total",
    "userId": "acme",
    "clientId": "web-7f3a",
    "type": "workflow",
    "queue": "workflow",
    "status": "completed",
    "metadata": {"orderId": "A-1042"},
    "attempts": 1,
    "createdAt": "2026-11-30T09:15:02.114Z",
    "startedAt": "2026-11-30T09:15:02.160Z",
    "updatedAt": "2026-11-30T09:15:02.391Z",
    "completedAt": "2026-11-30T09:15:02.391Z",
    "error": None,
    "workflowVersion": 3,
}
_PROGRESS: dict[str, Any] = {
    "currentNode": None,
    "completedNodes": ["order", "total"],
    "totalNodes": 2,
    "percentage": 100,
}
_NODE: dict[str, Any] = {
    "nodeId": "total",
    "nodeType": "transform",
    "name": "Order total",
    "status": "completed",
    "input": {"value": "{{ inputs.items | sum(attribute='price') }}"},
    "output": 59.9,
    "error": None,
    "attempt": 1,
    "startedAt": "2026-11-30T09:15:02.201Z",
    "completedAt": "2026-11-30T09:15:02.203Z",
    "durationMs": 2.113,
}
_DELIVERY: dict[str, Any] = {
    "deliveryId": "dlv_5c1e9b0d",
    "attempt": 1,
    "at": "2026-11-30T09:15:02.480Z",
    "status": 200,
}
_REPEAT: dict[str, Any] = {
    "cron": "0 6 * * 1-5",
    "every": None,
    "tz": "Europe/Berlin",
    "limit": None,
}
_SCHEDULE: dict[str, Any] = {
    "scheduleId": "sched_9f2c4e7a1b",
    "workflowId": "daily_report",
    "userId": "acme",
    "clientId": None,
    "type": "scheduled",
    "queue": "scheduled",
    "repeat": _REPEAT,
    "iterations": 12,
    "nextRunAt": "2026-12-01T05:00:00.000Z",
    "createdAt": "2026-11-14T16:40:51.002Z",
}
_DEFINITION: dict[str, Any] = {
    "id": "daily_report",
    "nodes": [{"id": "report", "type": "echo", "inputs": {"value": "{{ inputs.day }}"}}],
}
_QUEUE_COUNTS: dict[str, Any] = {
    "waiting": 3,
    "active": 1,
    "completed": 120,
    "failed": 2,
    "delayed": 0,
}
_JOB_STATES: dict[str, Any] = {
    "waiting": 2,
    "prioritized": 1,
    "paused": 0,
    "active": 1,
    "delayed": 0,
    "completed": 120,
    "failed": 2,
}
_QUEUES_BY_CLASS: dict[str, Any] = {name: _QUEUE_COUNTS for name in QUEUE_NAMES}
_EXECUTION_COUNTS: dict[str, Any] = {
    "pending": 4,
    "running": 2,
    "waiting": 1,
    "completed": 310,
    "failed": 7,
    "cancelled": 3,
    "skipped": 0,
}
_ACTIVE: dict[str, Any] = {
    "executionId": _EXECUTION_ID,
    "status": "running",
    "progress": {
        **_PROGRESS,
        "currentNode": "total",
        "completedNodes": ["order"],
        "percentage": 50,
    },
    "startedAt": "2026-11-30T09:15:02.160Z",
    "lastEventId": "1796029702201-0",
}
_WORKFLOW_SUMMARY: dict[str, Any] = {
    "workflowId": "daily_report",
    "name": "Daily report",
    "version": 4,
    "updatedAt": "2026-11-29T17:02:44.530Z",
}
_CONNECTION: dict[str, Any] = {
    "name": "default",
    "kind": "openai",
    "baseUrl": "https://api.openai.com/v1",
}
_CONNECTION_INFO: dict[str, Any] = {
    **_CONNECTION,
    "createdAt": "2026-11-02T08:00:13.771Z",
    "updatedAt": "2026-11-20T11:45:00.000Z",
}


# -- executions ---------------------------------------------------------------------------------


class Accepted(BaseModel):
    """The execution is recorded and its job queued (or, with an ``idempotencyKey`` seen
    before, the execution that key started)."""

    model_config = _examples(
        {"executionId": _EXECUTION_ID, "jobId": _EXECUTION_ID, "status": "pending"}
    )
    execution_id: str
    job_id: str
    status: ExecutionStatus


class ScheduleCreated(BaseModel):
    """``execute`` with ``repeat``: the schedule, and when it first starts an execution."""

    model_config = _examples(
        {"scheduleId": "sched_9f2c4e7a1b", "nextRunAt": "2026-12-01T05:00:00.000Z"}
    )
    schedule_id: str
    next_run_at: datetime | None = Field(description="None once a `limit` is used up.")


class ExecutionError(BaseModel):
    """Why an execution ended without completing."""

    model_config = _examples(_ERROR)
    message: str
    node_id: str | None = Field(description="The node that ended it, when one did.")
    type: str = Field(
        description="`node_error` (or the failed node's own type), `timeout`, `cancelled`, "
        "`lost`, `maintenance`, `invalid_input`, `worker_error`, ..."
    )


class TokenUsage(BaseModel):
    """Tokens used by the execution's ``llm`` nodes, summed."""

    model_config = _examples(_USAGE)
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ExecutionContext(BaseModel):
    """An execution's record (SPEC section 4 "context")."""

    model_config = _examples(
        _CONTEXT,
        {
            **_CONTEXT,
            "status": "failed",
            "error": _ERROR,
            "callbackUrl": "https://hooks.example.com/wfe",
            "usage": _USAGE,
        },
    )
    execution_id: str
    workflow_id: str
    user_id: str = Field(description="The tenant.")
    client_id: str | None
    type: QueueName = Field(description="The queue class (a named queue's class).")
    queue: str = Field(description="The queue: the class, or the named queue.")
    status: ExecutionStatus
    metadata: dict[str, Any]
    attempts: int
    created_at: datetime
    started_at: datetime | None
    updated_at: datetime
    completed_at: datetime | None
    error: ExecutionError | None
    callback_url: str | SkipJsonSchema[None] = sometimes("With a `callbackUrl`.")
    usage: TokenUsage | SkipJsonSchema[None] = sometimes("Once an `llm` node reported usage.")
    workflow_version: int | SkipJsonSchema[None] = sometimes(
        "When it runs a stored workflow (`workflowId`)."
    )
    parent_execution_id: str | None = sometimes("A child execution (`workflow` node): its parent.")
    parent_node_id: str | None = sometimes("A child execution: the parent's `workflow` node.")


class Progress(BaseModel):
    """How far an execution got."""

    model_config = _examples(_PROGRESS)
    current_node: str | None
    completed_nodes: list[str]
    total_nodes: int
    percentage: int = Field(ge=0, le=100)


class NodeError(BaseModel):
    """Why a node failed."""

    model_config = _examples({"message": "payment service answered 503", "type": "http_error"})
    message: str
    type: str


class NodeResult(BaseModel):
    """One node's run (the last attempt)."""

    model_config = _examples(_NODE)
    node_id: str
    node_type: str
    name: str | None
    status: NodeStatus
    input: Any = Field(description="The node's resolved inputs.")
    output: Any
    error: NodeError | None
    attempt: int
    started_at: datetime | None
    completed_at: datetime | None
    duration_ms: float | None


class CallbackDelivery(BaseModel):
    """One attempt to POST the final context to ``callbackUrl``: the receiver's ``status``,
    or the ``error`` that kept it from answering."""

    model_config = _examples(
        _DELIVERY,
        {**{k: v for k, v in _DELIVERY.items() if k != "status"}, "error": "ConnectError: refused"},
    )
    delivery_id: str
    attempt: int
    at: datetime
    status: int | SkipJsonSchema[None] = sometimes("The receiver answered.")
    error: str | SkipJsonSchema[None] = sometimes("The receiver could not be reached.")


class CallbackLog(BaseModel):
    """An execution's callback and the attempts to deliver it, oldest first."""

    model_config = _examples({"url": "https://hooks.example.com/wfe", "deliveries": [_DELIVERY]})
    url: str
    deliveries: list[CallbackDelivery]


class ExecutionState(BaseModel):
    """``GET /api/workflow/status/{executionId}``."""

    model_config = _examples(
        {"context": _CONTEXT, "progress": _PROGRESS, "result": {"total": 59.9}},
        {
            "context": {**_CONTEXT, "callbackUrl": "https://hooks.example.com/wfe"},
            "progress": _PROGRESS,
            "result": {"total": 59.9},
            "variables": {"retries": 0},
            "callback": {"url": "https://hooks.example.com/wfe", "deliveries": [_DELIVERY]},
            "nodes": [_NODE],
        },
    )
    context: ExecutionContext
    progress: Progress
    result: Any = Field(description="The output node's value once completed; null before.")
    variables: dict[str, Any] | SkipJsonSchema[None] = sometimes(
        "When the definition declares `variables`: their final values."
    )
    callback: CallbackLog | SkipJsonSchema[None] = sometimes("With a `callbackUrl`.")
    nodes: list[NodeResult] | SkipJsonSchema[None] = sometimes("With `?nodes=true`.")


class ActiveExecution(BaseModel):
    """A client's execution that is still pending, running or waiting."""

    model_config = _examples(_ACTIVE)
    execution_id: str
    status: ExecutionStatus
    progress: Progress
    started_at: datetime | None
    last_event_id: str | None = Field(description="Resume its events after this one.")


class ActiveExecutions(RootModel[list[ActiveExecution]]):
    """``GET /api/workflow/reconnect/{clientId}``."""

    model_config = ConfigDict(json_schema_extra={"examples": [[_ACTIVE]]})


class Cancelled(BaseModel):
    """The execution is cancelled (its worker stopped it, or its job left the queue)."""

    model_config = _examples({"executionId": _EXECUTION_ID, "status": "cancelled"})
    execution_id: str
    status: Literal["cancelled"]


class Resumed(BaseModel):
    """The answer is recorded; a worker resumes the execution."""

    model_config = _examples(
        {"executionId": _EXECUTION_ID, "nodeId": "approve", "status": "resumed"}
    )
    execution_id: str
    node_id: str
    status: Literal["resumed"]


class QueueCounts(BaseModel):
    """A queue class's jobs: ``waiting`` includes prioritized and paused ones."""

    model_config = _examples(_QUEUE_COUNTS)
    waiting: int
    active: int
    completed: int
    failed: int
    delayed: int


class QueueCountsByClass(BaseModel):
    """Job counts of each queue class (every tenant's jobs), then of each named queue
    (``WFE_NAMED_QUEUES``) under its name."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"examples": [{**_QUEUES_BY_CLASS, "billing": _QUEUE_COUNTS}]},
    )
    __pydantic_extra__: dict[str, QueueCounts] = Field(init=False)  # the named queues
    realtime: QueueCounts
    workflow: QueueCounts
    scheduled: QueueCounts
    background: QueueCounts


class ExecutionCounts(BaseModel):
    """The tenant's executions by status."""

    model_config = _examples(_EXECUTION_COUNTS)
    pending: int
    running: int
    waiting: int
    completed: int
    failed: int
    cancelled: int
    skipped: int


class Stats(BaseModel):
    """``GET /api/workflow/stats``."""

    model_config = _examples({"queues": _QUEUES_BY_CLASS, "executions": _EXECUTION_COUNTS})
    queues: QueueCountsByClass | SkipJsonSchema[None] = sometimes(
        "Only for a key with the `admin` scope: queue-wide."
    )
    executions: ExecutionCounts


class ExecutionPage(BaseModel):
    """Executions newest first; ``nextCursor`` (null on the last page) asks for the next."""

    model_config = _examples({"items": [_CONTEXT], "nextCursor": "exec_01JD8ZQ1B2C3D4E5F6G7H8J9KA"})
    items: list[ExecutionContext]
    next_cursor: str | None


# -- schedules ----------------------------------------------------------------------------------


class Repeat(BaseModel):
    """When a schedule runs: ``cron`` (with ``tz``) or ``every`` milliseconds, at most
    ``limit`` times."""

    model_config = _examples(_REPEAT)
    cron: str | None
    every: int | None
    tz: str | None
    limit: int | None


class Schedule(BaseModel):
    """A cron or interval schedule: each tick starts an execution."""

    model_config = _examples(_SCHEDULE)
    schedule_id: str
    workflow_id: str | None
    user_id: str
    client_id: str | None
    type: QueueName = Field(description="The queue class (a named queue's class).")
    queue: str = Field(description="The queue: the class, or the named queue.")
    repeat: Repeat
    iterations: int = Field(description="Ticks so far.")
    next_run_at: datetime | None
    created_at: datetime | None


class ScheduleDetail(Schedule):
    """One schedule, with what each tick runs."""

    model_config = _examples(
        {**_SCHEDULE, "workflowDefinition": _DEFINITION, "inputs": {"day": "today"}, "metadata": {}}
    )
    workflow_definition: dict[str, Any]
    inputs: dict[str, Any]
    metadata: dict[str, Any]


class ScheduleList(BaseModel):
    """The caller's schedules, soonest next run first."""

    model_config = _examples({"items": [_SCHEDULE]})
    items: list[Schedule]


class ScheduleDeleted(BaseModel):
    """No tick of the schedule starts any more."""

    model_config = _examples({"scheduleId": "sched_9f2c4e7a1b", "status": "deleted"})
    schedule_id: str
    status: Literal["deleted"]


# -- stored workflows ---------------------------------------------------------------------------


class WorkflowSaved(BaseModel):
    """The version this save created."""

    model_config = _examples({"workflowId": "daily_report", "version": 4})
    workflow_id: str
    version: int = Field(ge=1)


class WorkflowSummary(BaseModel):
    """The latest version of a stored workflow."""

    model_config = _examples(_WORKFLOW_SUMMARY)
    workflow_id: str
    name: str | None
    version: int = Field(ge=1)
    updated_at: datetime = Field(description="When its latest version was saved.")


class WorkflowList(BaseModel):
    """The tenant's workflows by id; ``nextCursor`` (null on the last page) asks for more."""

    model_config = _examples({"items": [_WORKFLOW_SUMMARY], "nextCursor": None})
    items: list[WorkflowSummary]
    next_cursor: str | None


class StoredWorkflow(BaseModel):
    """One version of a stored workflow, with its definition."""

    model_config = _examples(
        {
            "workflowId": "daily_report",
            "name": "Daily report",
            "version": 4,
            "definition": _DEFINITION,
            "createdAt": "2026-11-29T17:02:44.530Z",
        }
    )
    workflow_id: str
    name: str | None
    version: int = Field(ge=1)
    definition: dict[str, Any]
    created_at: datetime


class WorkflowVersion(BaseModel):
    """A version and when it was saved."""

    model_config = _examples({"version": 1, "createdAt": "2026-11-02T08:00:13.771Z"})
    version: int = Field(ge=1)
    created_at: datetime


class WorkflowVersions(BaseModel):
    """Every version of a workflow, oldest first."""

    model_config = _examples(
        {
            "items": [
                {"version": 1, "createdAt": "2026-11-02T08:00:13.771Z"},
                {"version": 2, "createdAt": "2026-11-29T17:02:44.530Z"},
            ]
        }
    )
    items: list[WorkflowVersion]


class WorkflowDeleted(BaseModel):
    """Executing the workflow is refused from now on; its executions keep their record."""

    model_config = _examples({"workflowId": "daily_report", "status": "deleted"})
    workflow_id: str
    status: Literal["deleted"]


# -- connections --------------------------------------------------------------------------------


class ConnectionSaved(BaseModel):
    """The connection as saved, without its key."""

    model_config = _examples(_CONNECTION)
    name: str
    kind: Literal["openai"]
    base_url: str


class ConnectionInfo(ConnectionSaved):
    """A connection, without its key or headers."""

    model_config = _examples(_CONNECTION_INFO)
    created_at: datetime
    updated_at: datetime


class ConnectionList(BaseModel):
    """The tenant's connections by name."""

    model_config = _examples({"items": [_CONNECTION_INFO]})
    items: list[ConnectionInfo]


class ConnectionDeleted(BaseModel):
    """Nodes naming the connection fail from now on (or use a server-wide one)."""

    model_config = _examples({"name": "default", "status": "deleted"})
    name: str
    status: Literal["deleted"]


class CallbackSecret(BaseModel):
    """The key the caller's tenant verifies its callbacks' ``X-WFE-Signature`` with."""

    model_config = _examples(
        {
            "tenant": "acme",
            "secret": "3q2+7wQkZ0pYdH1uY2FsbGJhY2stc2VjcmV0",
            "header": "X-WFE-Signature",
            "algorithm": "sha256=<hex HMAC-SHA256 of the raw body, keyed by secret>",
        }
    )
    tenant: str
    secret: str
    header: str
    algorithm: str


# -- queue administration -----------------------------------------------------------------------


class JobStates(BaseModel):
    """A queue's jobs by BullMQ state."""

    model_config = _examples(_JOB_STATES)
    waiting: int
    prioritized: int
    paused: int
    active: int
    delayed: int
    completed: int
    failed: int


class QueueOverview(BaseModel):
    """A queue class: paused or not, its jobs, its workers."""

    model_config = _examples(
        {"name": "workflow", "paused": False, "jobs": _JOB_STATES, "workers": 2}
    )
    name: str = Field(description="A queue class or a named queue.")
    paused: bool
    jobs: JobStates
    workers: int


class QueueList(BaseModel):
    """Every queue class."""

    model_config = _examples(
        {
            "queues": [
                {"name": name, "paused": False, "jobs": _JOB_STATES, "workers": 2}
                for name in QUEUE_NAMES
            ]
        }
    )
    queues: list[QueueOverview]


class QueuePaused(BaseModel):
    """Whether the queue is paused now."""

    model_config = _examples({"name": "background", "paused": True})
    name: str = Field(description="A queue class or a named queue.")
    paused: bool


class QueueCleaned(BaseModel):
    """How many jobs were removed, and how many of their executions cancelled (``wait`` and
    ``delayed`` only)."""

    model_config = _examples(
        {"name": "background", "state": "delayed", "removed": 14, "cancelled": 14}
    )
    name: str = Field(description="A queue class or a named queue.")
    state: Literal["completed", "failed", "delayed", "wait"]
    removed: int
    cancelled: int


class QueueRetried(BaseModel):
    """How many failed jobs were sent back."""

    model_config = _examples({"name": "workflow", "retried": 2})
    name: str = Field(description="A queue class or a named queue.")
    retried: int


# -- probes -------------------------------------------------------------------------------------


class Health(BaseModel):
    """The process answers."""

    model_config = _examples({"status": "ok", "timestamp": "2026-11-30T09:15:02.114Z"})
    status: Literal["ok"]
    timestamp: datetime


class ReadinessChecks(BaseModel):
    """``ok``, or ``unreachable: <error type>``."""

    model_config = _examples({"redis": "ok", "store": "unreachable: TimeoutError"})
    redis: str
    store: str


class Readiness(BaseModel):
    """Whether Redis and the store answer (503 when one does not)."""

    model_config = _examples(
        {"status": "ready", "checks": {"redis": "ok", "store": "ok"}},
        {"status": "unavailable", "checks": {"redis": "ok", "store": "unreachable: TimeoutError"}},
    )
    status: Literal["ready", "unavailable"]
    checks: ReadinessChecks
