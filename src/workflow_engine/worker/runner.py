"""One job -> one execution, in three phases: *prepare* (claim the execution, compile its plan,
restore what earlier runs recorded), *run* (the executor), *settle* (persist the outcome and
publish the final event, park, or hand the job back). BullMQ acknowledges the job only after
the outcome and every node result are committed."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from bullmq import Job

from workflow_engine.config import Settings
from workflow_engine.engine.executor import Executor, WorkflowRun
from workflow_engine.engine.results import ExecutionOutcome
from workflow_engine.errors import DefinitionError, InputValidationError
from workflow_engine.events import model as ev
from workflow_engine.events.publisher import EventPublisher, has_final_event
from workflow_engine.monitor import metrics, tracing
from workflow_engine.monitor.logging import get_logger
from workflow_engine.plan import PlanCache, PureNodes
from workflow_engine.queue.bullmq_adapter import DelayedError, JobHandle, UnrecoverableError
from workflow_engine.queue.callbacks import announce_end, announce_end_of, is_callback
from workflow_engine.queue.children import ChildLauncher, ancestors_of
from workflow_engine.queue.queues import QueueSet
from workflow_engine.queue.schedules import TICK_KEY
from workflow_engine.store.base import Start, StateStore
from workflow_engine.store.records import PARENT_KEY, ExecutionRecord
from workflow_engine.vocabulary import (
    FINAL_STATUSES,
    ExecutionError,
    ExecutionStatus,
    NodeStatus,
    iso,
)
from workflow_engine.worker.adopt import adopt, is_direct
from workflow_engine.worker.callbacks import CallbackSender
from workflow_engine.worker.hooks import RunHooks
from workflow_engine.worker.repair import republish_node_events
from workflow_engine.worker.restore import restore_point
from workflow_engine.worker.ticks import ScheduleTicks, is_tick

log = get_logger(__name__)

PARK_FOREVER_S = 365 * 86_400.0
"""A run parked on answers only (no timeout) is looked at again after a year."""
CANCEL_MEMORY_S = 120.0
CANCEL_REASON = "cancelled by request"


@dataclass(frozen=True, slots=True)
class Prepared:
    """A job ready to run: its execution claimed, its plan compiled, its past restored."""

    job: JobHandle
    execution_id: str
    tenant: str
    attempt: int
    run: WorkflowRun
    hooks: RunHooks
    started: float
    """Monotonic time the job was taken."""
    taken_over: bool
    """Another run started it (and may have died before its events were written)."""


class JobRunner:
    """The BullMQ processor. Keeps the runs in flight, so that a cancel request or a shutdown
    can reach them."""

    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        executor: Executor,
        events: EventPublisher,
    ) -> None:
        self.settings = settings
        self.store = store
        self.executor = executor
        self.events = events
        self.clock = executor.clock
        self.plans = PlanCache(executor.compiler)
        self.ticks = ScheduleTicks(settings, store, events, self.plans, self.clock)
        self.active: dict[str, WorkflowRun] = {}
        self.children: ChildLauncher | None = None
        self.callbacks: CallbackSender | None = None
        """Sends completion callbacks (set by a worker, with ``queues``)."""
        self.queues: QueueSet | None = None
        """Starts ``workflow`` nodes' children and tells parents their ends (set by a worker)."""
        self._cancelled: dict[str, float] = {}
        self.stopping = False

    # -- control from outside ---------------------------------------------------------------

    def release_all(self) -> None:
        """Stop every run in flight and give its job back to the queue (graceful shutdown
        after the grace period): another worker resumes it from its checkpoints. Jobs that
        arrive from now on are given back before they start."""
        self.stopping = True
        for run in list(self.active.values()):
            run.release()

    def request_cancel(self, execution_id: str) -> None:
        """A cancel request (from any API process, over pub/sub). Remembered for a while, in
        case the job is just being picked up."""
        now = self.clock.monotonic()
        self._cancelled[execution_id] = now
        for old in [k for k, t in self._cancelled.items() if now - t > CANCEL_MEMORY_S]:
            del self._cancelled[old]
        run = self.active.get(execution_id)
        if run is not None:
            log.info("cancelling execution", executionId=execution_id)
            run.cancel(CANCEL_REASON)

    # -- the processor ----------------------------------------------------------------------

    async def process(self, job: Job, token: str) -> Any:
        handle = JobHandle(job, token, self.clock)
        if is_callback(handle.data):
            if self.callbacks is None:
                raise UnrecoverableError("this worker sends no callbacks")
            return await self.callbacks.deliver(handle)
        try:
            prepared = await self._prepare(handle)
            if not isinstance(prepared, Prepared):
                return prepared  # nothing to run: a skipped tick, a final execution
            return await self._settle(prepared, await self._run(prepared))
        except (DelayedError, UnrecoverableError):
            raise
        except Exception as exc:
            await self._attempt_failed(handle, exc)
            raise

    async def _attempt_failed(self, job: JobHandle, exc: Exception) -> None:
        """An infrastructure error (store or Redis down): BullMQ retries the job; after the
        last attempt, record the failure so that the execution does not stay ``running``."""
        execution_id = job.data.get("executionId") or job.id
        log.warning("job attempt failed", executionId=execution_id, error=repr(exc))
        if not job.last_attempt:
            return
        try:
            await self.fail_unfinished(execution_id, f"worker error: {exc}")
        except Exception as again:
            log.error("could not record the failure", executionId=execution_id, error=repr(again))

    async def _prepare(self, job: JobHandle) -> Prepared | dict[str, Any]:
        data = job.data
        if is_tick(data):
            if self.stopping:
                await job.hand_back()
            ticked = await self.ticks.record(job)
            if ticked is None:
                return {"scheduleId": data[TICK_KEY], "status": "skipped"}
            data = ticked
        execution_id: str = data.get("executionId") or job.id
        tenant: str = data.get("tenantId") or "anonymous"
        started = self.clock.monotonic()
        if self.stopping:  # fetched as the worker was shutting down: not started, given back
            await job.hand_back()
        if is_direct(data):  # enqueued straight into BullMQ, not through the API
            await self._adopt(job, execution_id, tenant)
        self.store.reset(execution_id)  # this attempt starts from what the store has
        start = await self.store.mark_running(execution_id, job.attempt)
        if start is Start.REFUSED:
            return await self._refused(execution_id)
        resumed = start is Start.RESUMED
        self.events.publish(
            execution_id,
            ev.EXECUTION_STARTED,
            {"attempt": job.attempt, "workerId": self.settings.worker_id, "resumed": resumed},
        )
        try:
            plan = self.plans.get(data["workflowDefinition"])
        except DefinitionError as exc:  # cannot happen for jobs from the API, which validates
            await self._record_failure(execution_id, str(exc), "invalid_definition", tenant)
            raise UnrecoverableError(str(exc)) from exc
        point = await restore_point(self.store, self.events, execution_id, data, resumed=resumed)
        hooks = RunHooks(
            self.store,
            self.events,
            execution_id,
            seq=len(point.restored),
            progress_interval=self.settings.progress_interval_ms / 1000,
            pure=PureNodes(plan),
            ancestors=ancestors_of(data.get("metadata")),
        )
        for result in point.unsaved:  # outputs reused from another run, or only in the checkpoint
            hooks.save(result, announce=not resumed)
        run = self.executor.start(
            plan,
            data.get("inputs") or {},
            execution_id=execution_id,
            attempt=job.attempt,
            metadata=data.get("metadata") or {},
            hooks=hooks,
            restored=point.restored,
            prior_attempts=point.prior_attempts,
            timeout=self.settings.queue(job.queue_name).timeout_s,
            tenant_id=tenant,
        )
        taken_over = resumed or bool(point.prior_attempts)
        return Prepared(job, execution_id, tenant, job.attempt, run, hooks, started, taken_over)

    async def _run(self, prepared: Prepared) -> ExecutionOutcome:
        execution_id, run = prepared.execution_id, prepared.run
        self.active[execution_id] = run
        if execution_id in self._cancelled:  # the request came before the run existed
            run.cancel(CANCEL_REASON)
        metrics.ACTIVE_EXECUTIONS.inc()
        try:
            with tracing.span(
                "execution",
                prepared.job.data.get("trace"),
                **{
                    "wfe.execution.id": execution_id,
                    "wfe.workflow.id": run.plan.workflow_id,
                    "wfe.queue": prepared.job.queue_name,
                    "wfe.attempt": prepared.attempt,
                },
            ) as carrier:
                prepared.hooks.trace = carrier
                return await run.wait()
        except InputValidationError as exc:
            await self._record_failure(execution_id, str(exc), "invalid_input", prepared.tenant)
            raise UnrecoverableError(str(exc)) from exc
        finally:
            metrics.ACTIVE_EXECUTIONS.dec()
            self.active.pop(execution_id, None)

    async def _settle(self, prepared: Prepared, outcome: ExecutionOutcome) -> dict[str, Any]:
        execution_id, hooks = prepared.execution_id, prepared.hooks
        if outcome.released:
            await hooks.durable()
            await prepared.job.release()
            log.info("execution released to the queue", executionId=execution_id)
            raise DelayedError()
        if outcome.status is ExecutionStatus.WAITING:
            return await self._park(prepared, outcome)
        finished = self.store.finish_later(
            execution_id,
            outcome.status,
            result=outcome.result,
            error=outcome.error,
            progress=outcome.progress.to_dict(),
            usage=outcome.usage,
            variables=outcome.variables,
        )
        await hooks.durable(finished)
        if finished.result():
            metrics.execution_ended(
                prepared.job.queue_name,
                str(outcome.status),
                outcome.completed_at - outcome.started_at,
                prepared.tenant,
            )
            await self._repair_if_lost(prepared)
            await self._publish_final(outcome, prepared.tenant)
            if self.queues is not None:
                await announce_end_of(
                    self.queues, self.settings, self.store, execution_id, prepared.run.metadata
                )
            if PARENT_KEY in prepared.run.metadata:  # a child: its parent waits for this
                await self._tell_parent(execution_id)
        else:  # cancelled meanwhile by the API (no worker answered in time): it has the say
            record = await self.store.get(execution_id)
            if record is not None and record.status in FINAL_STATUSES:
                await self.ensure_final_event(record)
        log.info(
            "execution finished",
            executionId=execution_id,
            status=str(outcome.status),
            attempt=prepared.attempt,
            ms=round((self.clock.monotonic() - prepared.started) * 1000, 2),
        )
        if outcome.status is ExecutionStatus.FAILED:
            # the failure is recorded; a node's own retry policy already had its chances
            raise UnrecoverableError(outcome.error.message if outcome.error else "execution failed")
        return {"executionId": execution_id, "status": str(outcome.status)}

    async def _park(self, prepared: Prepared, outcome: ExecutionOutcome) -> dict[str, Any]:
        """Some nodes wait (for a time, for an answer) and nothing else can run: record it,
        hand the job back to BullMQ as a delayed job that wakes up when the first of them
        wants to, and let go. No worker holds a parked execution."""
        job, execution_id = prepared.job, outcome.execution_id
        await prepared.hooks.durable()
        await self._repair_if_lost(prepared)
        parked = await self.store.transition(
            execution_id,
            ExecutionStatus.WAITING,
            expect=frozenset({ExecutionStatus.RUNNING}),
            progress=outcome.progress.to_dict(),
        )
        if not parked:  # cancelled meanwhile
            record = await self.store.get(execution_id)
            if record is not None and record.status in FINAL_STATUSES:
                await self.ensure_final_event(record)
            return {"executionId": execution_id, "status": "cancelled"}
        resume_at = outcome.resume_at
        waiting = [
            {"nodeId": node_id, **(outcome.nodes[node_id].output or {})}
            for node_id in outcome.parked
        ]
        await self.events.publish(
            execution_id,
            ev.EXECUTION_WAITING,
            {"resumeAt": iso(resume_at), "nodes": waiting, "progress": outcome.progress.to_dict()},
            drop_checkpoint=True,  # the store has it all now
        )
        self.events.leave(prepared.tenant, execution_id)  # parked: not in flight (SPEC 8)
        until = self.clock.now() + PARK_FOREVER_S if resume_at is None else resume_at
        await job.park(int(until * 1000))
        log.info("execution parked", executionId=execution_id, resumeAt=iso(resume_at))
        # a cancel or an answer that came while the job was still active could neither remove
        # it from the queue nor wake it: look again now that it is a delayed job. (A cancel
        # publishes its final event before it removes the job: one of the two sees the other.)
        if await has_final_event(self.events.redis, self.events.keys.events(execution_id)):
            with contextlib.suppress(Exception):  # the canceller removed it first
                await job.remove()
        elif await self._answered(execution_id):
            await job.promote()
        raise DelayedError()

    # -- final events and recorded failures ------------------------------------------------

    async def _publish_final(self, outcome: ExecutionOutcome, tenant: str) -> None:
        event_type, data = ev.final_event(
            outcome.status, outcome.result, outcome.error_dict, outcome.progress.to_dict()
        )
        self.events.publish(outcome.execution_id, event_type, data, final=True)
        await self.events.leave(tenant, outcome.execution_id)

    async def _repair_if_lost(self, prepared: Prepared) -> None:
        """Before an execution's final (or waiting) event: if some of its events were never
        written (Redis was down), or another run had it, write the missing node events again
        from the store (whose node results are all durable by now)."""
        lost = self.events.lost_events(prepared.execution_id)
        if lost or prepared.taken_over:
            await republish_node_events(self.store, self.events, prepared.execution_id)

    async def _adopt(self, job: JobHandle, execution_id: str, tenant: str) -> None:
        """A direct job's record: created from the job the first time; on a later attempt,
        the one created then (not another tenant's execution of that id)."""
        record = await self.store.get(execution_id)
        if record is None:
            queue_class = self.settings.queue_class(job.queue_name)
            await adopt(job, execution_id, self.store, self.plans, self.events, queue_class)
        elif record.tenant_id != tenant:
            raise UnrecoverableError(
                f"job {job.id} cannot run: its id names an execution of another tenant"
            )

    async def _refused(self, execution_id: str) -> dict[str, Any]:
        """The execution is final (cancelled before it started, or done by an earlier attempt
        whose acknowledgement was lost): make sure its final event exists, run nothing."""
        record = await self.store.get(execution_id)
        status = record.status if record is not None else None
        log.info(
            "job skipped: execution not runnable", executionId=execution_id, status=str(status)
        )
        if record is not None and record.status in FINAL_STATUSES:
            await self.ensure_final_event(record)
            if self.queues is not None:  # (a no-op when its end was announced already)
                await announce_end(self.queues, self.settings, record)
        return {"executionId": execution_id, "status": str(status), "ran": False}

    async def ensure_final_event(self, record: ExecutionRecord) -> None:
        """Write the final event of an execution that ended without one reaching Redis, after
        the node events that did not either."""
        if await has_final_event(self.events.redis, self.events.keys.events(record.execution_id)):
            return
        await republish_node_events(self.store, self.events, record.execution_id)
        event_type, data = ev.final_event(
            record.status, record.result, record.error, record.progress, recovered=True
        )
        self.events.publish(record.execution_id, event_type, data, final=True)
        await self.events.leave(record.tenant_id, record.execution_id)
        await self._tell_parent(record.execution_id, record)

    async def _answered(self, execution_id: str) -> bool:
        results = await self.store.node_results(execution_id)
        if self.children is not None and await self.children.deliver_finished_children(
            execution_id, results
        ):
            return True  # a child ended before this execution parked
        return any(
            r.status is NodeStatus.WAITING and isinstance(r.output, dict) and "answer" in r.output
            for r in results
        )

    async def _tell_parent(self, execution_id: str, record: ExecutionRecord | None = None) -> None:
        """The execution ended: if it is a child, its parent's node gets the outcome (and the
        parent wakes up). A failure here is logged, not raised: the execution's own end is
        recorded already; a parent already parked gets it from the recovery sweep
        (``worker/recovery.py``) once the parent has been still for ``recovery_after_s``."""
        if self.children is None:
            return
        try:
            record = record or await self.store.get(execution_id)
            if record is not None:
                await self.children.notify_parent(record)
        except Exception as exc:
            log.warning("could not notify the parent", executionId=execution_id, error=repr(exc))

    async def _record_failure(
        self, execution_id: str, message: str, error_type: str, tenant: str
    ) -> None:
        error = ExecutionError(message, error_type)
        recorded = await self.store.finish(execution_id, ExecutionStatus.FAILED, error=error)
        event_type, data = ev.final_event(ExecutionStatus.FAILED, None, error.to_dict(), None)
        self.events.publish(execution_id, event_type, data, final=True)
        await self.events.leave(tenant, execution_id)
        await self._tell_parent(execution_id)
        record = await self.store.get(execution_id) if recorded else None
        if record is not None:  # (a cancel that came first has announced its own end)
            metrics.execution_ended(record.queue, str(ExecutionStatus.FAILED), None, tenant)
            if self.queues is not None:
                await announce_end(self.queues, self.settings, record)

    async def fail_unfinished(self, execution_id: str, message: str) -> None:
        """Record a failure for an execution whose last job attempt crashed."""
        record = await self.store.get(execution_id)
        if record is not None and record.status not in FINAL_STATUSES:
            await self._record_failure(execution_id, message, "worker_error", record.tenant_id)
