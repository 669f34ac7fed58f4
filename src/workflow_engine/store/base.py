"""The state store. The base class owns the rules: callers ask for a transition (checked against
the one table, ``ALLOWED_FROM``), never write a status, and what each write means is decided
here; a backend fills in a handful of hooks. The writes are group-committed (``GroupCommit``)."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from enum import Enum
from typing import Any, Final

from workflow_engine.store.errors import IllegalTransition, StoreError, StoreUnavailable
from workflow_engine.store.group_commit import GroupCommit
from workflow_engine.store.records import (
    ConnectionRecord,
    ExecutionRecord,
    Page,
    WorkflowPage,
    WorkflowRecord,
)
from workflow_engine.store.writes import ALLOWED_FROM, SaveNode, SaveProgress, Transition, Write
from workflow_engine.vocabulary import (
    FINAL_STATUSES,
    ExecutionError,
    ExecutionStatus,
    NodeResult,
    now_ms,
)

# the errors and the writes have modules of their own (the group commit needs them too); they
# are still importable from here
__all__ = [
    "ALLOWED_FROM",
    "UNSET",
    "IllegalTransition",
    "SaveNode",
    "SaveProgress",
    "Start",
    "StateStore",
    "StoreError",
    "StoreUnavailable",
    "Transition",
    "Unset",
    "Write",
]

S = ExecutionStatus

_FRESH = frozenset({S.PENDING})
_TAKEN_OVER = frozenset({S.RUNNING, S.WAITING})


class Start(Enum):
    STARTED = "started"
    RESUMED = "resumed"
    REFUSED = "refused"


class Unset(Enum):
    UNSET = "unset"


UNSET: Final = Unset.UNSET
"""A column a transition leaves as it is (``None`` writes NULL)."""


class StateStore(ABC):
    """Executions and node results. All writes go through ``_apply`` in batches: concurrent
    writers share one transaction (group commit) and each learns whether its write took."""

    def __init__(self, *, max_batch: int = 1000, batch_window_ms: float = 0.0) -> None:
        # ``_apply`` is looked up at each batch, not bound now: a wrapper set on the instance
        # (the contract tests count batches and fail one that way) takes effect
        self.group_commit = GroupCommit(
            lambda writes: self._apply(writes),
            max_batch=max_batch,
            window_s=batch_window_ms / 1000,
        )

    # -- the backend's hooks ------------------------------------------------------------

    @abstractmethod
    async def migrate(self) -> None:
        """Create or upgrade the schema; safe to run from several processes at once."""

    @abstractmethod
    async def _insert(self, record: ExecutionRecord) -> ExecutionRecord | None:
        """Insert; on an idempotency-key conflict return the existing record, else None."""

    @abstractmethod
    async def _apply(self, writes: Sequence[Write]) -> list[bool]:
        """Apply the writes in one transaction. A transition is applied only if the current
        status is in ``allowed_from``; the result says, per write, whether it took."""

    @abstractmethod
    async def get(
        self, execution_id: str, tenant_id: str | None = None, *, with_definition: bool = False
    ) -> ExecutionRecord | None: ...

    @abstractmethod
    async def delete(self, execution_id: str) -> None: ...

    @abstractmethod
    async def node_results(self, execution_id: str) -> list[NodeResult]: ...

    @abstractmethod
    async def list_executions(
        self,
        tenant_id: str | None,
        *,
        status: ExecutionStatus | None = None,
        workflow_id: str | None = None,
        client_id: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> Page:
        """Newest first; ``cursor`` is the ``next_cursor`` of the previous page."""

    @abstractmethod
    async def active_for_client(
        self, tenant_id: str | None, client_id: str
    ) -> list[ExecutionRecord]:
        """Executions of a client that are pending, running or waiting."""

    @abstractmethod
    async def count_by_status(self, tenant_id: str | None = None) -> dict[str, int]: ...

    @abstractmethod
    async def stale_active(self, updated_before_ms: int, limit: int = 500) -> list[ExecutionRecord]:
        """Pending, running or waiting executions not updated since ``updated_before_ms``,
        oldest first (candidates for a lost job)."""

    @abstractmethod
    async def final_among(self, execution_ids: Sequence[str]) -> set[str]:
        """Which of these executions are in a final status (e.g. cancelled by the API)."""

    # -- connections (SPEC section 10): rare, unbatched ----------------------------------------

    @abstractmethod
    async def put_connection(self, record: ConnectionRecord) -> None:
        """Create the tenant's connection, or replace the one of that name (keeping its
        ``created_at``)."""

    @abstractmethod
    async def get_connection(self, tenant_id: str, name: str) -> ConnectionRecord | None: ...

    @abstractmethod
    async def list_connections(self, tenant_id: str) -> list[ConnectionRecord]:
        """The tenant's connections by name."""

    @abstractmethod
    async def delete_connection(self, tenant_id: str, name: str) -> bool:
        """Whether there was one to delete."""

    @abstractmethod
    async def has_connections(self) -> bool:
        """Whether any tenant has a stored connection (they need ``WFE_SECRET_KEY``)."""

    # -- stored workflows (SPEC section 10): rare, unbatched -----------------------------------

    @abstractmethod
    async def save_workflow(
        self, tenant_id: str, workflow_id: str, name: str | None, definition: dict[str, Any]
    ) -> WorkflowRecord:
        """Add a version: the next number of that workflow id (1 for a new one), assigned
        atomically (two saves at once get two numbers). Numbers are never reused, not even
        after ``delete_workflow``."""

    @abstractmethod
    async def get_workflow(
        self, tenant_id: str, workflow_id: str, version: int | None = None
    ) -> WorkflowRecord | None:
        """That version (the latest without one), with its definition; None when there is
        none or the workflow was deleted."""

    @abstractmethod
    async def list_workflows(
        self, tenant_id: str, *, limit: int = 20, cursor: str | None = None
    ) -> WorkflowPage:
        """The latest version of each of the tenant's workflows (no definitions), by id;
        ``cursor`` is the ``next_cursor`` of the previous page."""

    @abstractmethod
    async def workflow_versions(self, tenant_id: str, workflow_id: str) -> list[WorkflowRecord]:
        """Every version of a workflow (no definitions), oldest first; [] when deleted."""

    @abstractmethod
    async def delete_workflow(self, tenant_id: str, workflow_id: str) -> bool:
        """Hide every version of it (they stay for the executions that ran them); whether
        there was one to delete."""

    @abstractmethod
    async def answer(self, execution_id: str, node_id: str, answer: Any) -> bool:
        """Deliver an answer to a node parked on input: added to its ticket (its output while
        it waits) as ``answer``, atomically with checking that the execution is still
        ``waiting`` and the node has no answer yet. False when not."""

    @abstractmethod
    async def _delete_finished_before(self, cutoff_ms: int) -> list[str]:
        """Remove them; the ids removed."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` when the database cannot be reached."""

    @abstractmethod
    async def close(self) -> None: ...

    # -- the public API -----------------------------------------------------------------

    async def create(self, record: ExecutionRecord) -> tuple[ExecutionRecord, bool]:
        """Insert a pending execution; durable on return. ``(record, False)`` when the
        tenant's idempotency key was used before: the first execution, nothing inserted."""
        if record.status is not S.PENDING:
            raise StoreError("executions are created pending")
        existing = await self._insert(record)
        return (existing, False) if existing is not None else (record, True)

    async def transition(
        self,
        execution_id: str,
        to: ExecutionStatus,
        *,
        expect: frozenset[ExecutionStatus] | None = None,
        error: ExecutionError | Unset | None = UNSET,
        progress: dict[str, Any] | Unset | None = UNSET,
        completed_at: int | Unset | None = UNSET,
    ) -> bool:
        """Move an execution to ``to`` if the rules allow it from its current status (and it is
        in ``expect``, when given), setting the columns given with it; durable on return.
        False when not, or when it does not exist."""
        values: dict[str, Any] = {}
        if error is not UNSET:
            values["error"] = _wire(error)
        if progress is not UNSET:
            values["progress"] = progress
        if completed_at is not UNSET:
            values["completed_at"] = completed_at
        return await self.write(Transition(execution_id, to, values, expect))

    async def require_transition(
        self,
        execution_id: str,
        to: ExecutionStatus,
        *,
        expect: frozenset[ExecutionStatus] | None = None,
        error: ExecutionError | Unset | None = UNSET,
        progress: dict[str, Any] | Unset | None = UNSET,
        completed_at: int | Unset | None = UNSET,
    ) -> None:
        """``transition``, raising ``IllegalTransition`` when it does not take."""
        if not await self.transition(
            execution_id,
            to,
            expect=expect,
            error=error,
            progress=progress,
            completed_at=completed_at,
        ):
            current = await self.get(execution_id)
            raise IllegalTransition(execution_id, to, current.status if current else None)

    async def mark_running(self, execution_id: str, attempt: int) -> Start:
        """Claim an execution for a run: ``STARTED`` from pending, ``RESUMED`` when an earlier
        run had it (a retry, a stalled or released job: its recorded nodes are restored),
        ``REFUSED`` when it is final (cancelled before it started, or already done)."""
        values = {"attempts": attempt}
        stamp = frozenset({"started_at"})
        if await self.write(Transition(execution_id, S.RUNNING, values, _FRESH, stamp)):
            return Start.STARTED
        if await self.write(Transition(execution_id, S.RUNNING, values, _TAKEN_OVER, stamp)):
            return Start.RESUMED
        return Start.REFUSED

    async def finish(
        self,
        execution_id: str,
        status: ExecutionStatus,
        *,
        result: Any = None,
        error: ExecutionError | None = None,
        progress: dict[str, Any] | None = None,
        usage: dict[str, int] | None = None,
        variables: dict[str, Any] | None = None,
    ) -> bool:
        return await self.finish_later(
            execution_id,
            status,
            result=result,
            error=error,
            progress=progress,
            usage=usage,
            variables=variables,
        )

    def finish_later(
        self,
        execution_id: str,
        status: ExecutionStatus,
        *,
        result: Any = None,
        error: ExecutionError | None = None,
        progress: dict[str, Any] | None = None,
        usage: dict[str, int] | None = None,
        variables: dict[str, Any] | None = None,
    ) -> asyncio.Future[bool]:
        """``finish`` queued behind the writes already submitted; await the future."""
        if status not in FINAL_STATUSES:
            raise StoreError(f"{status} is not a final status")
        values: dict[str, Any] = {"result": result, "error": _wire(error)}
        if progress is not None:
            values["progress"] = progress
        if usage is not None:
            values["token_usage"] = usage
        if variables is not None:
            values["variables"] = variables
        return self.submit(
            Transition(execution_id, status, values, stamp=frozenset({"completed_at"}))
        )

    async def cleanup(self, days: float) -> list[str]:
        """Remove finished executions (and their node results) older than ``days``; the ids
        removed."""
        return await self._delete_finished_before(now_ms() - int(days * 86_400_000))

    def save_node(
        self, execution_id: str, result: NodeResult, seq: int = 0
    ) -> asyncio.Future[bool]:
        """Queue a node result; await the future for durability."""
        return self.submit(SaveNode(execution_id, result, seq))

    def save_progress(self, execution_id: str, progress: dict[str, Any]) -> asyncio.Future[bool]:
        return self.submit(SaveProgress(execution_id, progress))

    # -- group commit -------------------------------------------------------------------

    async def write(self, op: Write) -> bool:
        return await self.submit(op)

    def submit(self, op: Write) -> asyncio.Future[bool]:
        """Add a write to the next batch (``GroupCommit.submit``): writes of one execution
        after one of its node results or progress failed fail too, until ``reset``."""
        return self.group_commit.submit(op)

    def reset(self, execution_id: str) -> None:
        """Forget an execution's failed writes (a new attempt starts from what is stored)."""
        self.group_commit.reset(execution_id)

    async def flush(self) -> None:
        """Wait until every write submitted so far is committed (or failed)."""
        await self.group_commit.flush()

    @property
    def batches(self) -> int:
        """Batches sent to ``_apply`` so far."""
        return self.group_commit.batches


def _wire(error: ExecutionError | None) -> dict[str, Any] | None:
    """The stored form of an execution's error: its wire dict."""
    return None if error is None else error.to_dict()
