"""Jobs a producer put straight into a BullMQ queue (a Node service's ``queue.add`` with the npm
``bullmq`` package), with no execution record: the worker that takes one creates its record,
as ``POST /api/workflow/execute`` would have, then runs it. The job's data is the API's job
data (``queue/submit.job_data``): ``workflowDefinition`` (native format), and optionally
``inputs``, ``tenantId`` (default ``anonymous``), ``clientId``, ``metadata``; no
``executionId``: the job's id (``jobId``, which the producer must choose) is the execution's,
so that cancel, recovery and the admin routes find the job by it.

Whoever can write to Redis is trusted as the API is: the tenant's admission (cap, rate) is not
applied. A definition or inputs that do not validate fail the job at once, its failed reason
naming every problem by path (what Bull Board and ``job.failedReason`` show)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from workflow_engine.errors import DefinitionError, InputValidationError
from workflow_engine.events.publisher import EventPublisher
from workflow_engine.monitor.logging import get_logger
from workflow_engine.plan import PlanCache
from workflow_engine.queue.bullmq_adapter import JobHandle, UnrecoverableError
from workflow_engine.queue.submit import Submission, announce, new_record
from workflow_engine.store.base import StateStore
from workflow_engine.store.records import ENGINE_KEYS
from workflow_engine.vocabulary import ExecutionStatus

log = get_logger(__name__)


def is_direct(data: dict[str, Any]) -> bool:
    """Whether a job was enqueued by another producer: the API's and the scheduler's jobs name
    their execution (``executionId``); such a job without its record (removed by retention)
    is never run again from its data."""
    return "executionId" not in data


async def adopt(
    job: JobHandle,
    execution_id: str,
    store: StateStore,
    plans: PlanCache,
    events: EventPublisher,
    queue_class: str = "",
) -> None:
    """Create the pending record of a job that has none; ``UnrecoverableError`` (the job
    fails, not retried) when its data cannot be run."""
    data = job.data
    if job.id.isdigit():
        raise UnrecoverableError(
            f"job {job.id} cannot run: a job enqueued directly needs a jobId of its own (it "
            "becomes the execution's id); BullMQ numbered this one"
        )
    problems = [
        f"{name} must be {kind}"
        for name, kind, ok in (
            ("workflowDefinition", "an object", isinstance(data.get("workflowDefinition"), dict)),
            ("inputs", "an object", isinstance(data.get("inputs") or {}, dict)),
            ("metadata", "an object", isinstance(data.get("metadata") or {}, dict)),
            ("tenantId", "a string", isinstance(data.get("tenantId") or "", str)),
            ("clientId", "a string", isinstance(data.get("clientId") or "", str)),
        )
        if not ok
    ]
    if problems:
        raise UnrecoverableError(f"job {job.id} cannot run: " + "; ".join(problems))
    definition: dict[str, Any] = data["workflowDefinition"]
    inputs: dict[str, Any] = data.get("inputs") or {}
    try:
        plan = plans.get(definition)
        plan.check_inputs(inputs)
    except (DefinitionError, InputValidationError) as exc:
        log.warning("job refused: invalid", jobId=job.id, queue=job.queue_name, error=str(exc))
        raise UnrecoverableError(f"job {job.id} cannot run: {exc}") from None
    metadata = {k: v for k, v in (data.get("metadata") or {}).items() if k not in ENGINE_KEYS}
    submission = Submission(
        definition,
        inputs,
        tenant_id=data.get("tenantId") or "anonymous",
        queue=job.queue_name,
        client_id=data.get("clientId") or None,
        metadata=metadata,
    )
    record = replace(new_record(submission, plan), execution_id=execution_id)
    record, created = await store.create(record)
    if created and record.status is ExecutionStatus.PENDING:
        await announce(events, record, 0, queue_class)
        log.info("job adopted", executionId=execution_id, queue=job.queue_name)
