"""One job -> one execution: mark it running, run the graph with the executor, persist every
node result and the outcome, publish the final event, and only then let BullMQ acknowledge
the job."""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime
from typing import Any, NoReturn

from bullmq import Job
from bullmq.custom_errors import DelayedError, UnrecoverableError

from workflow_engine.config import Settings
from workflow_engine.engine.executor import Executor, WorkflowRun
from workflow_engine.engine.results import ExecutionOutcome
from workflow_engine.errors import DefinitionError, InputValidationError
from workflow_engine.events import model as ev
from workflow_engine.events.publisher import EventPublisher, has_final_event, read_checkpoint
from workflow_engine.monitor.logging import get_logger
from workflow_engine.plan import PlanCache
from workflow_engine.queue.schedules import TICK_KEY, tick_submission
from workflow_engine.queue.submit import announce, new_record
from workflow_engine.store.base import Start, StateStore
from workflow_engine.store.records import ExecutionRecord
from workflow_engine.vocabulary import (
    FINAL_STATUSES,
    ExecutionError,
    ExecutionStatus,
    NodeResult,
    NodeStatus,
    iso,
    now_ms,
)
from workflow_engine.worker.hooks import RunHooks

log = get_logger(__name__)

RESTORABLE = frozenset({NodeStatus.COMPLETED, NodeStatus.SKIPPED, NodeStatus.FAILED})
PARK_FOREVER_S = 365 * 86_400.0
"""A run parked on answers only (no timeout) is looked at again after a year."""
CANCEL_MEMORY_S = 120.0
CANCEL_REASON = "cancelled by request"


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
        self.plans = PlanCache(executor.compiler)
        self.active: dict[str, WorkflowRun] = {}
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
        now = time.monotonic()
        self._cancelled[execution_id] = now
        for old in [k for k, t in self._cancelled.items() if now - t > CANCEL_MEMORY_S]:
            del self._cancelled[old]
        run = self.active.get(execution_id)
        if run is not None:
            log.info("cancelling execution", executionId=execution_id)
            run.cancel(CANCEL_REASON)

    # -- the processor ----------------------------------------------------------------------

    async def process(self, job: Job, token: str) -> Any:
        try:
            return await self._process(job, token)
        except (DelayedError, UnrecoverableError):
            raise
        except Exception as exc:
            # an infrastructure error (store or Redis down): BullMQ retries the job; after the
            # last attempt, record the failure so the execution does not stay "running"
            attempts = int(job.opts.get("attempts", 1) or 1)
            execution_id = job.data.get("executionId", "?")
            log.warning("job attempt failed", executionId=execution_id, error=repr(exc))
            if job.attemptsMade + 1 >= attempts:
                try:
                    await self.fail_unfinished(execution_id, f"worker error: {exc}")
                except Exception as again:
                    log.error(
                        "could not record the failure",
                        executionId=execution_id,
                        error=repr(again),
                    )
            raise

    async def _process(self, job: Job, token: str) -> Any:
        data = job.data
        queue: str = job.queue.name if hasattr(job.queue, "name") else "workflow"
        if "executionId" not in data and TICK_KEY in data:
            if self.stopping:
                await self._give_back(job, token)
            ticked = await self._tick(job, queue)
            if ticked is None:
                return {"scheduleId": data[TICK_KEY], "status": "skipped"}
            data = ticked
        execution_id: str = data["executionId"]
        attempt = max(int(getattr(job, "attemptsStarted", 0) or 0), job.attemptsMade + 1)
        started = time.monotonic()
        if self.stopping:  # fetched as the worker was shutting down: not started, given back
            await self._give_back(job, token)
        self.store.reset(execution_id)  # this attempt starts from what the store has
        start = await self.store.mark_running(execution_id, attempt)
        if start is Start.REFUSED:
            return await self._refused(execution_id)
        self.events.publish(
            execution_id,
            ev.EXECUTION_STARTED,
            {
                "attempt": attempt,
                "workerId": self.settings.worker_id,
                "resumed": start is Start.RESUMED,
            },
        )
        try:
            plan = self.plans.get(data["workflowDefinition"])
        except DefinitionError as exc:  # cannot happen for jobs from the API, which validates
            await self._record_failure(execution_id, str(exc), "invalid_definition")
            raise UnrecoverableError(str(exc)) from exc
        restored, prior, unsaved = await self._restore(
            execution_id, data, resumed=start is Start.RESUMED
        )
        hooks = RunHooks(
            self.store,
            self.events,
            execution_id,
            seq=len(restored),
            progress_interval=self.settings.progress_interval_ms / 1000,
            pure=plan.pure_nodes,
        )
        for result in unsaved:  # outputs reused from another run, or only in the checkpoint
            hooks.save(result, announce=start is Start.STARTED)
        run = self.executor.start(
            plan,
            data.get("inputs") or {},
            execution_id=execution_id,
            attempt=attempt,
            metadata=data.get("metadata") or {},
            hooks=hooks,
            restored=restored,
            prior_attempts=prior,
            timeout=self.settings.queue(queue).timeout_s,
        )
        self.active[execution_id] = run
        if execution_id in self._cancelled:  # the request came before the run existed
            run.cancel(CANCEL_REASON)
        try:
            outcome = await run.wait()
        except InputValidationError as exc:
            await self._record_failure(execution_id, str(exc), "invalid_input")
            raise UnrecoverableError(str(exc)) from exc
        finally:
            self.active.pop(execution_id, None)
        if outcome.released:
            await hooks.durable()
            await job.moveToDelayed(int(time.time() * 1000), token)
            log.info("execution released to the queue", executionId=execution_id)
            raise DelayedError()
        if outcome.status is ExecutionStatus.WAITING:
            return await self._park(job, token, hooks, outcome)
        finished = self.store.finish_later(
            execution_id,
            outcome.status,
            result=outcome.result,
            error=outcome.error_dict,
            progress=outcome.progress.to_dict(),
        )
        await hooks.durable(finished)
        if finished.result():
            await self._publish_final(outcome)
        else:  # cancelled meanwhile by the API (no worker answered in time): it has the say
            record = await self.store.get(execution_id)
            if record is not None and record.status in FINAL_STATUSES:
                await self.ensure_final_event(record)
        log.info(
            "execution finished",
            executionId=execution_id,
            status=str(outcome.status),
            attempt=attempt,
            ms=round((time.monotonic() - started) * 1000, 2),
        )
        if outcome.status is ExecutionStatus.FAILED:
            # the failure is recorded; a node's own retry policy already had its chances
            raise UnrecoverableError(outcome.error.message if outcome.error else "execution failed")
        return {"executionId": execution_id, "status": str(outcome.status)}

    async def _tick(self, job: Job, queue: str) -> dict[str, Any] | None:
        """A schedule's tick: record its execution (once, however often the job is tried)
        and return the job data to run it with; None when the maintenance window skips it."""
        submission = tick_submission(job.data, queue, str(job.id))
        try:
            plan = self.plans.get(submission.definition)
        except DefinitionError as exc:
            raise UnrecoverableError(str(exc)) from exc
        record, fresh = await self.store.create(new_record(submission, plan))
        if fresh:
            await announce(self.events, record)
        data = {
            **job.data,
            "executionId": record.execution_id,
            "tenantId": submission.tenant_id,
            "metadata": submission.metadata,
        }
        window = self.settings.window()
        if window is None or not window.contains(datetime.now(UTC)):
            return data
        error = ExecutionError(f"skipped: in the maintenance window ({window})", "maintenance")
        if await self.store.transition(
            record.execution_id,
            ExecutionStatus.SKIPPED,
            expect=frozenset({ExecutionStatus.PENDING}),
            error=error.to_dict(),
            completed_at=now_ms(),
        ):
            event_type, event = ev.final_event(
                ExecutionStatus.SKIPPED,
                None,
                error.to_dict(),
                record.progress_or_empty(len(plan.nodes)),
            )
            await self.events.publish(record.execution_id, event_type, event, final=True)
            log.info("schedule tick skipped", executionId=record.execution_id, window=str(window))
            return None
        return data  # a retried tick whose execution had started: it goes on

    async def _publish_final(self, outcome: ExecutionOutcome) -> None:
        event_type, data = ev.final_event(
            outcome.status, outcome.result, outcome.error_dict, outcome.progress.to_dict()
        )
        await self.events.publish(outcome.execution_id, event_type, data, final=True)

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
        return {"executionId": execution_id, "status": str(status), "ran": False}

    async def ensure_final_event(self, record: ExecutionRecord) -> None:
        if await has_final_event(self.events.redis, self.events.keys.events(record.execution_id)):
            return
        event_type, data = ev.final_event(
            record.status, record.result, record.error, record.progress, recovered=True
        )
        await self.events.publish(record.execution_id, event_type, data, final=True)

    async def _restore(
        self, execution_id: str, data: dict[str, Any], *, resumed: bool
    ) -> tuple[dict[str, NodeResult], dict[str, int], list[NodeResult]]:
        """What this run starts from: the node results it must not run again (the outputs a
        rerun reuses; for a resumed execution also what the store and the Redis checkpoint
        hold, the checkpoint being the newer), the attempts earlier runs made of the nodes
        they were running, and which of those results the store does not have yet."""
        given = {r["nodeId"]: NodeResult.from_dict(r) for r in data.get("restored") or ()}
        if not resumed:
            return given, {}, sorted(given.values(), key=_finish_time)
        stored = {r.node_id: r for r in await self.store.node_results(execution_id)}
        merged = {**given, **stored}
        prior: dict[str, int] = {}
        for node_id, entry in (
            await read_checkpoint(self.events.redis, self.events.keys, execution_id)
        ).items():
            if entry.get("status") == "running":
                prior[node_id] = max(prior.get(node_id, 0), int(entry.get("attempt") or 1))
            else:
                merged[node_id] = NodeResult.from_dict(entry)
        for node_id, result in merged.items():
            if result.status is NodeStatus.CANCELLED:  # interrupted: it runs again
                prior[node_id] = max(prior.get(node_id, 0), result.attempt)
        restored = {
            node_id: result
            for node_id, result in merged.items()
            if result.status in RESTORABLE or result.status is NodeStatus.WAITING
        }
        unsaved = [
            result
            for node_id, result in restored.items()
            if node_id not in stored or stored[node_id].status is not result.status
        ]
        return restored, prior, sorted(unsaved, key=_finish_time)

    async def _give_back(self, job: Job, token: str) -> NoReturn:
        """Hand a job fetched as the worker stops back to the queue, not started."""
        await _delay_untried(job, token, int(time.time() * 1000))
        raise DelayedError()

    async def _park(
        self, job: Job, token: str, hooks: RunHooks, outcome: ExecutionOutcome
    ) -> dict[str, Any]:
        """Some nodes wait (for a time, for an answer) and nothing else can run: record it,
        hand the job back to BullMQ as a delayed job that wakes up when the first of them
        wants to, and let go. No worker holds a parked execution."""
        execution_id = outcome.execution_id
        await hooks.durable()
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
        until = time.time() + PARK_FOREVER_S if resume_at is None else resume_at
        await _delay_untried(job, token, int(until * 1000))  # waking up is not trying again
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

    async def _answered(self, execution_id: str) -> bool:
        return any(
            r.status is NodeStatus.WAITING and isinstance(r.output, dict) and "answer" in r.output
            for r in await self.store.node_results(execution_id)
        )

    async def _record_failure(self, execution_id: str, message: str, error_type: str) -> None:
        error = ExecutionError(message, error_type)
        await self.store.finish(execution_id, ExecutionStatus.FAILED, error=error.to_dict())
        event_type, data = ev.final_event(ExecutionStatus.FAILED, None, error.to_dict(), None)
        await self.events.publish(execution_id, event_type, data, final=True)

    async def fail_unfinished(self, execution_id: str, message: str) -> None:
        """Record a failure for an execution whose last job attempt crashed."""
        record = await self.store.get(execution_id)
        if record is not None and record.status not in FINAL_STATUSES:
            await self._record_failure(execution_id, message, "worker_error")


async def _delay_untried(job: Job, token: str, until_ms: int) -> None:
    """``job.moveToDelayed`` for a job going back to the queue without having been tried
    (given back unstarted, or parked until it is woken). BullMQ counts every move to active
    as an attempt started, and the execution's attempt number is taken from that count: the
    same script sets it back by one, or the next run would be recorded as an attempt more
    than were made."""
    now = int(time.time() * 1000)
    started = max(int(job.attemptsStarted or 0) - 1, 0)
    await job.backend.moveToDelayed(
        str(job.id),
        now,
        max(until_ms - now, 0),
        token,
        {"skipAttempt": True, "fieldsToUpdate": {"ats": started}},
    )


def _finish_time(result: NodeResult) -> float:
    return result.completed_at or result.started_at or 0.0
