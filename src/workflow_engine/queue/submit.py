"""Submitting an execution: validate, record it (durable), enqueue it. Nothing is acknowledged
before both the record and the job exist; if the enqueue fails, the record is removed."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from workflow_engine.errors import WorkflowEngineError
from workflow_engine.events import model as ev
from workflow_engine.events.publisher import EventPublisher
from workflow_engine.ids import new_execution_id
from workflow_engine.monitor.logging import get_logger
from workflow_engine.plan import PlanCache, WorkflowPlan
from workflow_engine.queue.fairness import TenantBusy, TenantGate, queue_priority
from workflow_engine.queue.queues import JOB_NAME, QueueSet, UnknownQueue
from workflow_engine.store.base import StateStore
from workflow_engine.store.records import ExecutionRecord
from workflow_engine.vocabulary import ExecutionStatus

log = get_logger(__name__)

MAX_PRIORITY = 2_097_152


class QueueError(WorkflowEngineError):
    """Base of queue errors."""


class QueueUnavailable(QueueError):
    """Redis cannot be reached; nothing was submitted. Retry later."""


class QueueFull(QueueError):
    """The queue holds ``max_queued`` jobs already: back-pressure. Retry later."""


class NotFound(WorkflowEngineError):
    """No such execution (for this tenant)."""


class Conflict(WorkflowEngineError):
    """The execution is in a state that does not allow the request."""

    def __init__(self, message: str, execution_id: str | None = None) -> None:
        super().__init__(message)
        self.execution_id = execution_id
        """The execution the request conflicts with, when there is one."""


@dataclass(frozen=True, slots=True)
class Submission:
    definition: dict[str, Any]
    inputs: dict[str, Any] = field(default_factory=dict)
    tenant_id: str = "anonymous"
    queue: str = "workflow"
    priority: int = 0
    delay_ms: int = 0
    client_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    restored: tuple[dict[str, Any], ...] = ()
    """Node results (wire form) to reuse instead of running those nodes (a rerun)."""
    workflow_version: int | None = None
    """The stored workflow's version ``definition`` is (SPEC section 10); None when the
    definition came with the request."""
    trace: dict[str, str] | None = None
    """The W3C trace context of the submit (``monitor/tracing.py``), handed to the worker."""
    capped: bool = True
    """Whether ``WFE_TENANT_MAX_ACTIVE`` applies (not to a child: its running parent holds a
    place already); the rate always does."""


@dataclass(frozen=True, slots=True)
class Submitted:
    execution_id: str
    job_id: str
    status: ExecutionStatus
    created: bool
    """False when an idempotency key matched an earlier submission: nothing new started."""


def new_record(submission: Submission, plan: WorkflowPlan) -> ExecutionRecord:
    """The pending execution record of a submission (an API call, a schedule's tick)."""
    return ExecutionRecord(
        execution_id=new_execution_id(),
        workflow_id=plan.workflow_id,
        tenant_id=submission.tenant_id,
        queue=submission.queue,
        client_id=submission.client_id,
        priority=submission.priority,
        metadata=submission.metadata,
        definition=submission.definition,
        inputs=submission.inputs,
        idempotency_key=submission.idempotency_key,
        workflow_version=submission.workflow_version,
        progress={
            "currentNode": None,
            "completedNodes": [],
            "totalNodes": len(plan.nodes),
            "percentage": 0,
        },
    )


def announce(
    events: EventPublisher, record: ExecutionRecord, delay_ms: int = 0, queue_class: str = ""
) -> Any:
    """The execution's first event (and its client's index entry); await the result.
    ``type`` is the queue class (``queue_class`` for a named queue), ``queue`` the queue."""
    if record.client_id is not None:
        events.index_client(record.tenant_id, record.client_id, record.execution_id)
    return events.publish(
        record.execution_id,
        ev.EXECUTION_QUEUED,
        {
            "workflowId": record.workflow_id,
            "type": queue_class or record.queue,
            "queue": record.queue,
            "clientId": record.client_id,
            "priority": record.priority,
            "delay": delay_ms,
        },
    )


def job_data(
    record: ExecutionRecord,
    restored: tuple[dict[str, Any], ...] = (),
    trace: dict[str, str] | None = None,
) -> dict[str, Any]:
    """What a worker needs to run the execution, JSON-safe."""
    data: dict[str, Any] = {
        "executionId": record.execution_id,
        "workflowDefinition": record.definition,
        "inputs": record.inputs or {},
        "tenantId": record.tenant_id,
        "clientId": record.client_id,
        "metadata": record.metadata,
    }
    if restored:
        data["restored"] = list(restored)
    if trace:
        data["trace"] = trace
    return data


class Submitter:
    def __init__(
        self,
        store: StateStore,
        queues: QueueSet,
        plans: PlanCache,
        events: EventPublisher,
        gate: TenantGate,
        max_queued: int = 0,
    ) -> None:
        self.store = store
        self.queues = queues
        self.plans = plans
        self.events = events
        self.gate = gate
        self.max_queued = max_queued

    async def submit(self, submission: Submission) -> Submitted:
        """Raises ``DefinitionError`` / ``InputValidationError`` (nothing stored),
        ``TenantBusy`` (the tenant's cap or rate: nothing stored), ``StoreUnavailable`` or
        ``QueueUnavailable`` (nothing left behind)."""
        if submission.queue not in self.queues.queues:
            raise UnknownQueue(submission.queue)
        plan = self.plans.get(submission.definition)
        plan.check_inputs(submission.inputs)
        if self.max_queued:
            await self._check_room(submission.queue)
        candidate = new_record(submission, plan)
        # admission (Redis) and the record (the store) at once: the admission's round trip
        # costs nothing on the way of a submit; the rare refusal removes the record again
        admitted, created = await asyncio.gather(
            self._admit(candidate, submission.capped),
            self.store.create(candidate),
            return_exceptions=True,
        )
        if isinstance(created, BaseException):
            if not isinstance(admitted, BaseException):
                await self._leave(candidate)
            raise created
        record, fresh = created
        if not fresh:  # the idempotency key's first execution: the new id was never used
            if not isinstance(admitted, BaseException):
                await self._leave(candidate)
            await self._check_same_request(record, submission)
            return Submitted(record.execution_id, record.execution_id, record.status, False)
        if isinstance(admitted, BaseException):
            await self._forget(record, left=True)
            raise admitted
        rank = admitted
        try:  # the first event and the client's index entry exist before any worker's event
            queue_class = self.queues.settings.queue_class(record.queue)
            await announce(self.events, record, submission.delay_ms, queue_class)
        except Exception as exc:
            await self._forget(record)
            raise QueueUnavailable(f"could not record the execution's first event: {exc}") from exc
        options: dict[str, Any] = {
            "jobId": record.execution_id,
            "priority": queue_priority(submission.priority, rank),
        }
        if submission.delay_ms:
            options["delay"] = submission.delay_ms
        try:
            await self.queues[submission.queue].add(
                JOB_NAME, job_data(record, submission.restored, submission.trace), options
            )
        except Exception as exc:
            await self._forget(record)
            raise QueueUnavailable(f"could not enqueue the execution: {exc}") from exc
        return Submitted(record.execution_id, record.execution_id, ExecutionStatus.PENDING, True)

    async def _check_same_request(self, first: ExecutionRecord, submission: Submission) -> None:
        """An idempotency key names one request: reusing it for another definition or other
        inputs is a client's mistake, answered 409, not the first execution's result. The
        first request is compared from its record (no digest to keep beside the key)."""
        stored = await self.store.get(first.execution_id, with_definition=True)
        if stored is None:  # removed (retention) since: nothing to compare with
            return
        differ = [
            name
            for name, before, now in (
                ("workflowDefinition", stored.definition, submission.definition),
                ("inputs", stored.inputs or {}, submission.inputs or {}),
            )
            if before != now
        ]
        if differ:
            raise Conflict(
                f"idempotencyKey {submission.idempotency_key!r} belongs to execution "
                f"{first.execution_id}, started with a different {' and '.join(differ)}",
                first.execution_id,
            )

    async def _check_room(self, queue: str) -> None:
        try:
            counts = await self.queues[queue].getJobCounts("waiting", "prioritized", "delayed")
        except Exception as exc:
            raise QueueUnavailable(f"could not read the queue: {exc}") from exc
        queued = sum(counts.values())
        if queued >= self.max_queued:
            raise QueueFull(
                f"the {queue} queue holds {queued} jobs (limit {self.max_queued}); retry later"
            )

    async def _admit(self, record: ExecutionRecord, capped: bool) -> int:
        """The tenant's cap and rate (``TenantBusy``); the execution's rank among the tenant's
        executions in flight."""
        try:
            return await self.gate.admit(record.tenant_id, record.execution_id, capped=capped)
        except TenantBusy:
            raise
        except Exception as exc:
            raise QueueUnavailable(f"could not admit the execution: {exc}") from exc

    async def _leave(self, record: ExecutionRecord) -> None:
        try:
            await self.gate.leave(record.tenant_id, record.execution_id)
        except Exception as exc:  # counted until the tenant's cap looks it up in the store
            log.warning("could not release a tenant slot", error=repr(exc))

    async def _forget(self, record: ExecutionRecord, *, left: bool = False) -> None:
        execution_id = record.execution_id
        if not left:
            await self._leave(record)
        with contextlib.suppress(Exception):  # its first event, if it got written
            await self.events.redis.delete(self.events.keys.events(execution_id))
        try:
            await self.store.delete(execution_id)
        except Exception as exc:  # the store is down too: mark it failed when it is back
            log.error(
                "could not remove an execution whose enqueue failed",
                executionId=execution_id,
                error=repr(exc),
            )
