"""What the store keeps: one record per execution (SPEC section 4 "context") and the node
results. Times are epoch milliseconds in the store, ISO 8601 on the wire."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from workflow_engine.vocabulary import ExecutionStatus, iso_ms, now_ms

PARENT_KEY = "_wfeParent"
"""The metadata key of a child execution's link to its parent (``workflow`` node, SPEC
section 9): ``{executionId, nodeId, depth, ancestors}``. Its context shows ``parentExecutionId`` and
``parentNodeId`` instead."""


CALLBACK_KEY = "_wfeCallback"
"""The metadata key of an execution's completion callback URL (``callbackUrl``): not shown in
its context, which shows ``callbackUrl`` instead."""
ENGINE_KEYS = frozenset({PARENT_KEY, CALLBACK_KEY})
"""Metadata keys the engine sets, never a client."""


@dataclass(slots=True)
class ExecutionRecord:
    execution_id: str
    workflow_id: str
    tenant_id: str
    queue: str
    status: ExecutionStatus = ExecutionStatus.PENDING
    client_id: str | None = None
    priority: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    definition: dict[str, Any] | None = None
    inputs: dict[str, Any] | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    progress: dict[str, Any] | None = None
    attempts: int = 0
    idempotency_key: str | None = None
    created_at: int = field(default_factory=now_ms)
    started_at: int | None = None
    updated_at: int = field(default_factory=now_ms)
    completed_at: int | None = None
    token_usage: dict[str, int] | None = None
    """What its ``llm`` nodes used, summed: ``{promptTokens, completionTokens, totalTokens}``."""
    workflow_version: int | None = None
    """The stored workflow's version it runs (SPEC section 10); None for a definition sent
    with the request."""
    variables: dict[str, Any] | None = None
    """Its execution variables when it ended (SPEC section 9); None when its definition
    declares none (or it has not ended)."""

    def context(self, queue_class: str | None = None) -> dict[str, Any]:
        """The execution context of SPEC section 4, camelCase; with ``usage`` once an ``llm``
        node reported some (SPEC section 9), ``workflowVersion`` when it runs a stored
        workflow (SPEC section 10), ``parentExecutionId`` and ``parentNodeId`` for a child.
        ``type`` is the queue class (``queue_class``: a named queue's, from the settings) and
        ``queue`` the queue it runs on, the same but for a named queue."""
        metadata = self.metadata
        parent = metadata.get(PARENT_KEY) if isinstance(metadata, dict) else None
        callback = metadata.get(CALLBACK_KEY) if isinstance(metadata, dict) else None
        if parent is not None or callback is not None:
            metadata = {k: v for k, v in metadata.items() if k not in ENGINE_KEYS}
        context = {
            "executionId": self.execution_id,
            "workflowId": self.workflow_id,
            "userId": self.tenant_id,
            "clientId": self.client_id,
            "type": queue_class or self.queue,
            "queue": self.queue,
            "status": str(self.status),
            "metadata": metadata,
            "attempts": self.attempts,
            "createdAt": iso_ms(self.created_at),
            "startedAt": iso_ms(self.started_at),
            "updatedAt": iso_ms(self.updated_at),
            "completedAt": iso_ms(self.completed_at),
            "error": self.error,
        }
        if isinstance(callback, str):
            context["callbackUrl"] = callback
        if self.token_usage is not None:
            context["usage"] = self.token_usage
        if self.workflow_version is not None:
            context["workflowVersion"] = self.workflow_version
        if isinstance(parent, dict):  # a child execution (``workflow`` node)
            context["parentExecutionId"] = parent.get("executionId")
            context["parentNodeId"] = parent.get("nodeId")
        return context

    def progress_or_empty(self, total_nodes: int = 0) -> dict[str, Any]:
        return self.progress or {
            "currentNode": None,
            "completedNodes": [],
            "totalNodes": total_nodes,
            "percentage": 0,
        }


@dataclass(frozen=True, slots=True)
class Page:
    items: list[ExecutionRecord]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class ConnectionRecord:
    """A tenant's connection to a model server (SPEC section 10). ``secret`` is opaque to the
    store: the API key and headers, encrypted by ``connections.py`` before they get here."""

    tenant_id: str
    name: str
    kind: str
    base_url: str
    secret: str
    created_at: int = field(default_factory=now_ms)
    updated_at: int = field(default_factory=now_ms)


@dataclass(frozen=True, slots=True)
class WorkflowRecord:
    """One version of a tenant's stored workflow (SPEC section 10). Versions are immutable and
    numbered 1, 2, ... per workflow id; a deleted workflow's versions stay (``deleted_at``)
    for the executions that ran them, hidden from every read."""

    tenant_id: str
    workflow_id: str
    version: int
    name: str | None
    definition: dict[str, Any] | None
    """None in a listing (heavy: only ``get_workflow`` reads it)."""
    created_at: int = field(default_factory=now_ms)
    deleted_at: int | None = None


@dataclass(frozen=True, slots=True)
class WorkflowPage:
    """The latest version of each workflow, by id; ``next_cursor`` for the next page."""

    items: list[WorkflowRecord]
    next_cursor: str | None
