"""The state store. The base class owns the rules (which status may follow which, what a write
means, group commit); a backend fills in a handful of hooks."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from workflow_engine.errors import WorkflowEngineError
from workflow_engine.monitor.logging import get_logger
from workflow_engine.store.records import ExecutionRecord, Page
from workflow_engine.vocabulary import FINAL_STATUSES, ExecutionStatus, NodeResult, now_ms

log = get_logger(__name__)

S = ExecutionStatus

ALLOWED_FROM: dict[ExecutionStatus, frozenset[ExecutionStatus]] = {
    S.RUNNING: frozenset({S.PENDING, S.RUNNING, S.WAITING}),
    S.WAITING: frozenset({S.RUNNING}),
    S.COMPLETED: frozenset({S.RUNNING}),
    S.FAILED: frozenset({S.PENDING, S.RUNNING, S.WAITING}),
    S.CANCELLED: frozenset({S.PENDING, S.RUNNING, S.WAITING}),
    S.SKIPPED: frozenset({S.PENDING, S.RUNNING}),
}
"""Status -> the statuses it may follow. pending -> running -> completed|failed|cancelled|skipped;
running -> running is a retry or a stalled job taken over; waiting is reserved for parked runs."""


_FRESH = frozenset({S.PENDING})
_TAKEN_OVER = frozenset({S.RUNNING, S.WAITING})


class Start(Enum):
    STARTED = "started"
    RESUMED = "resumed"
    REFUSED = "refused"

    def __bool__(self) -> bool:
        return self is not Start.REFUSED


class StoreError(WorkflowEngineError):
    """Base of store errors."""


class StoreUnavailable(StoreError):
    """The database cannot be reached; retry later."""


class IllegalTransition(StoreError):
    def __init__(self, execution_id: str, to: ExecutionStatus, current: ExecutionStatus | None):
        self.execution_id = execution_id
        self.to = to
        self.current = current
        where = f"is {current}" if current is not None else "does not exist"
        super().__init__(f"execution {execution_id} {where}; it cannot become {to}")


# -- write operations (what a batch is made of) ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Transition:
    execution_id: str
    to: ExecutionStatus
    values: dict[str, Any] = field(default_factory=dict)
    """Other columns to set with the status (result, error, progress, attempts, *_at)."""
    expect: frozenset[ExecutionStatus] | None = None
    """Narrow the statuses it may follow (``{PENDING}``: only if it has not started)."""
    stamp: frozenset[str] = frozenset()
    """Time columns the backend sets to the commit time (``started_at`` only if unset)."""

    @property
    def allowed_from(self) -> frozenset[ExecutionStatus]:
        allowed = ALLOWED_FROM[self.to]
        return allowed if self.expect is None else allowed & self.expect


@dataclass(frozen=True, slots=True)
class SaveNode:
    execution_id: str
    result: NodeResult
    seq: int = 0
    """Position in the execution's order of events: node results are listed by it."""


@dataclass(frozen=True, slots=True)
class SaveProgress:
    execution_id: str
    progress: dict[str, Any]


Write = Transition | SaveNode | SaveProgress


class StateStore(ABC):
    """Executions and node results. All writes go through ``_apply`` in batches: concurrent
    writers share one transaction (group commit) and each learns whether its write took."""

    def __init__(self, *, max_batch: int = 1000, batch_window_ms: float = 0.0) -> None:
        self._max_batch = max_batch
        self._window = batch_window_ms / 1000
        self._pending: list[tuple[Write, asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0
        self.batched_writes = 0
        self._broken: dict[str, str] = {}

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
        **values: Any,
    ) -> bool:
        """Move an execution to ``to`` if the rules allow it from its current status (and it is
        in ``expect``, when given); durable on return. False when not, or when it does not
        exist."""
        return await self.write(Transition(execution_id, to, values, expect))

    async def require_transition(
        self, execution_id: str, to: ExecutionStatus, **values: Any
    ) -> None:
        if not await self.transition(execution_id, to, **values):
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
        error: dict[str, Any] | None = None,
        progress: dict[str, Any] | None = None,
    ) -> bool:
        return await self.finish_later(
            execution_id, status, result=result, error=error, progress=progress
        )

    def finish_later(
        self,
        execution_id: str,
        status: ExecutionStatus,
        *,
        result: Any = None,
        error: dict[str, Any] | None = None,
        progress: dict[str, Any] | None = None,
    ) -> asyncio.Future[bool]:
        """``finish`` queued behind the writes already submitted; await the future."""
        if status not in FINAL_STATUSES:
            raise StoreError(f"{status} is not a final status")
        values: dict[str, Any] = {"result": result, "error": error}
        if progress is not None:
            values["progress"] = progress
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
        """Add a write to the next batch. The first write of an idle store is flushed at once;
        writes that arrive while a batch commits go into the next one. A write of an execution
        one of whose writes failed fails too (until ``reset``): no outcome is ever recorded
        without the node results submitted before it."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        broken = self._broken.get(op.execution_id)
        if broken is not None:
            future.set_exception(
                StoreUnavailable(f"an earlier write of {op.execution_id} failed: {broken}")
            )
            future.add_done_callback(_retrieved)
            return future
        self._pending.append((op, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush_loop())
        return future

    def reset(self, execution_id: str) -> None:
        """Forget an execution's failed writes (a new attempt starts from what is stored)."""
        self._broken.pop(execution_id, None)

    async def flush(self) -> None:
        """Wait until every write submitted so far is committed (or failed)."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    async def _flush_loop(self) -> None:
        while self._pending:
            if len(self._pending) < self._max_batch:
                if self._window:
                    await asyncio.sleep(self._window)
                else:  # let the tasks that are ready add their writes to this batch
                    await asyncio.sleep(0)
            batch, self._pending = (
                self._pending[: self._max_batch],
                self._pending[self._max_batch :],
            )
            self.batches += 1
            self.batched_writes += len(batch)
            try:
                results = await self._apply([op for op, _ in batch])
            except Exception as exc:
                # what was queued behind the failed batch fails too: no write may take effect
                # after an earlier one that failed (an outcome without its node results)
                batch, self._pending = batch + self._pending, []
                for op, _ in batch:
                    if isinstance(op, SaveNode | SaveProgress):  # a run's record is incomplete
                        self._broken[op.execution_id] = repr(exc)
                log.warning("store batch failed", writes=len(batch), error=repr(exc))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), ok in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(ok)


def _retrieved(future: asyncio.Future[bool]) -> None:
    if not future.cancelled():
        future.exception()
