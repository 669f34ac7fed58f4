"""Typed views of what the API sends (snake_case attributes, camelCase on the wire).
``model_dump(by_alias=True)`` gives the wire JSON back."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

FINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "skipped"})
FINAL_EVENT_TYPES = frozenset({"execution.completed", "execution.failed", "execution.cancelled"})


class Wire(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="allow", frozen=True
    )


class Event(Wire):
    """One execution or node event (SPEC section 5)."""

    id: str
    execution_id: str
    type: str
    timestamp: str
    data: Any = None

    @property
    def final(self) -> bool:
        """The execution ended with this event."""
        return self.type in FINAL_EVENT_TYPES


class Submitted(Wire):
    execution_id: str
    job_id: str
    status: str


class Cancelled(Wire):
    execution_id: str
    status: str


class ExecutionError(Wire):
    message: str
    node_id: str | None = None
    type: str


class Context(Wire):
    execution_id: str
    workflow_id: str
    user_id: str
    client_id: str | None = None
    type: str
    """The queue class."""
    queue: str | None = None
    """The queue it runs on: the class, or a named queue (None from an older server)."""
    status: str
    metadata: dict[str, Any] = {}
    attempts: int = 0
    created_at: str | None = None
    started_at: str | None = None
    updated_at: str | None = None
    completed_at: str | None = None
    error: ExecutionError | None = None
    workflow_version: int | None = None
    """The stored workflow's version it runs; None for a definition sent with the request."""


class Progress(Wire):
    current_node: str | None = None
    completed_nodes: list[str] = []
    total_nodes: int = 0
    percentage: int = 0


class NodeResult(Wire):
    node_id: str
    node_type: str
    name: str | None = None
    status: str
    input: Any = None
    output: Any = None
    error: dict[str, Any] | None = None
    attempt: int = 0
    started_at: str | None = None
    completed_at: str | None = None
    duration_ms: float | None = None


class Status(Wire):
    context: Context
    progress: Progress
    result: Any = None
    variables: dict[str, Any] | None = None
    """The final execution variables, when the definition declares some."""
    nodes: list[NodeResult] | None = None

    @property
    def final(self) -> bool:
        return self.context.status in FINAL_STATUSES


class ActiveExecution(Wire):
    execution_id: str
    status: str
    progress: Progress
    started_at: str | None = None
    last_event_id: str | None = None


class QueueCounts(Wire):
    waiting: int
    active: int
    completed: int
    failed: int
    delayed: int


class Stats(Wire):
    queues: dict[str, QueueCounts] | None = None
    """Queue-wide job counts: only for a key with the ``admin`` scope."""
    executions: dict[str, int]


class ExecutionPage(Wire):
    items: list[Context]
    next_cursor: str | None = None


class Resumed(Wire):
    execution_id: str
    node_id: str
    status: str


class Repeat(Wire):
    cron: str | None = None
    every: int | None = None
    tz: str | None = None
    limit: int | None = None


class ScheduleCreated(Wire):
    schedule_id: str
    next_run_at: str | None = None


class Schedule(Wire):
    schedule_id: str
    workflow_id: str | None = None
    user_id: str
    client_id: str | None = None
    type: str
    repeat: Repeat
    iterations: int = 0
    next_run_at: str | None = None
    created_at: str | None = None
    workflow_definition: dict[str, Any] | None = None
    inputs: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None


class WorkflowSaved(Wire):
    workflow_id: str
    version: int


class WorkflowSummary(Wire):
    """The latest version of a stored workflow, as the list shows it."""

    workflow_id: str
    name: str | None = None
    version: int
    updated_at: str | None = None


class WorkflowList(Wire):
    items: list[WorkflowSummary]
    next_cursor: str | None = None


class StoredWorkflow(Wire):
    workflow_id: str
    name: str | None = None
    version: int
    definition: dict[str, Any]
    created_at: str | None = None


class WorkflowVersion(Wire):
    version: int
    created_at: str | None = None
