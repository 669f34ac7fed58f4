"""One job -> one execution: mark it running, run the graph with the executor, persist every
node result and the outcome, and only then let BullMQ acknowledge the job."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from bullmq import Job
from bullmq.custom_errors import DelayedError, UnrecoverableError

from workflow_engine.config import Settings
from workflow_engine.engine.cache import PlanCache
from workflow_engine.engine.executor import Executor, WorkflowRun
from workflow_engine.engine.hooks import ExecutionHooks, NodeFinished, ProgressChanged
from workflow_engine.engine.results import NodeResult
from workflow_engine.engine.status import ExecutionStatus, NodeStatus
from workflow_engine.errors import DefinitionError, InputValidationError
from workflow_engine.monitor.logging import get_logger
from workflow_engine.store.base import FINAL_STATUSES, Start, StateStore

log = get_logger(__name__)

RESTORABLE = frozenset({NodeStatus.COMPLETED, NodeStatus.SKIPPED, NodeStatus.FAILED})


@dataclass
class StoreHooks(ExecutionHooks):
    """Queue node results and progress on the store's group commit without waiting for them.
    The outcome is queued behind them and awaited with them (``durable``): the store applies
    writes in order and fails everything behind a failed batch, so an outcome is never
    recorded without its node results. Progress is persisted at most every
    ``progress_interval`` seconds; the outcome carries the final one."""

    store: StateStore
    execution_id: str
    seq: int = 0
    progress_interval: float = 0.25
    pending: list[asyncio.Future[bool]] = field(default_factory=list)
    _last_progress: float = 0.0

    async def on_node_complete(self, event: NodeFinished) -> None:
        self.seq += 1
        self.pending.append(self.store.save_node(self.execution_id, event.result, self.seq))

    async def on_progress(self, event: ProgressChanged) -> None:
        now = time.monotonic()
        if now - self._last_progress >= self.progress_interval:
            self._last_progress = now
            self.pending.append(
                self.store.save_progress(self.execution_id, event.progress.to_dict())
            )

    async def durable(self, *more: asyncio.Future[bool]) -> None:
        futures, self.pending = [*self.pending, *more], []
        if futures:
            await asyncio.gather(*futures)


class JobRunner:
    """The BullMQ processor. Keeps the runs in flight so that shutdown can release them."""

    def __init__(self, settings: Settings, store: StateStore, executor: Executor) -> None:
        self.settings = settings
        self.store = store
        self.executor = executor
        self.plans = PlanCache(executor)
        self.active: dict[str, WorkflowRun] = {}
        self._releasing: set[str] = set()

    def release_all(self) -> None:
        """Stop every run in flight and give its job back to the queue (graceful shutdown
        after the grace period): another worker resumes it from its checkpoints."""
        for execution_id, run in list(self.active.items()):
            self._releasing.add(execution_id)
            run.cancel("released by a worker shutting down")

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
                        "could not record the failure", executionId=execution_id, error=repr(again)
                    )
            raise

    async def _process(self, job: Job, token: str) -> Any:
        data = job.data
        execution_id: str = data["executionId"]
        queue: str = job.queue.name if hasattr(job.queue, "name") else "workflow"
        attempt = max(int(getattr(job, "attemptsStarted", 0) or 0), job.attemptsMade + 1)
        started = time.monotonic()
        start = await self.store.mark_running(execution_id, attempt)
        if start is Start.REFUSED:
            record = await self.store.get(execution_id)
            status = record.status if record is not None else None
            log.info(
                "job skipped: execution not runnable",
                executionId=execution_id,
                status=str(status),
            )
            return {"executionId": execution_id, "status": str(status), "ran": False}
        try:
            plan = self.plans.get(data["workflowDefinition"])
        except DefinitionError as exc:  # cannot happen for jobs from the API, which validates
            await self.store.finish(
                execution_id,
                ExecutionStatus.FAILED,
                error={"message": str(exc), "nodeId": None, "type": "invalid_definition"},
            )
            raise UnrecoverableError(str(exc)) from exc
        restored = await self._checkpoint(execution_id) if start is Start.RESUMED else {}
        hooks = StoreHooks(
            self.store,
            execution_id,
            seq=len(restored),
            progress_interval=self.settings.progress_interval_ms / 1000,
            _last_progress=time.monotonic(),
        )
        timeout = self.settings.queue(queue).timeout_s
        run = self.executor.start(
            plan,
            data.get("inputs") or {},
            execution_id=execution_id,
            attempt=attempt,
            metadata=data.get("metadata") or {},
            hooks=hooks,
            restored=restored,
            timeout=timeout,
        )
        self.active[execution_id] = run
        try:
            outcome = await run.wait()
        except InputValidationError as exc:
            await self.store.finish(
                execution_id,
                ExecutionStatus.FAILED,
                error={"message": str(exc), "nodeId": None, "type": "invalid_input"},
            )
            raise UnrecoverableError(str(exc)) from exc
        finally:
            self.active.pop(execution_id, None)
        if execution_id in self._releasing:
            await hooks.durable()
            self._releasing.discard(execution_id)
            await job.moveToDelayed(int(time.time() * 1000), token)
            log.info("execution released to the queue", executionId=execution_id)
            raise DelayedError()
        finished = self.store.finish_later(
            execution_id,
            outcome.status,
            result=outcome.result,
            error=outcome.error,
            progress=outcome.progress.to_dict(),
        )
        await hooks.durable(finished)
        log.info(
            "execution finished",
            executionId=execution_id,
            status=str(outcome.status),
            attempt=attempt,
            ms=round((time.monotonic() - started) * 1000, 2),
        )
        if outcome.status is ExecutionStatus.FAILED:
            # the failure is recorded; a node's own retry policy already had its chances
            raise UnrecoverableError((outcome.error or {}).get("message", "execution failed"))
        return {"executionId": execution_id, "status": str(outcome.status)}

    async def _checkpoint(self, execution_id: str) -> dict[str, NodeResult]:
        """Node results recorded by an earlier attempt: they are not run again."""
        results = await self.store.node_results(execution_id)
        return {r.node_id: r for r in results if r.status in RESTORABLE}

    async def fail_unfinished(self, execution_id: str, message: str) -> None:
        """Record a failure for an execution whose last job attempt crashed."""
        record = await self.store.get(execution_id)
        if record is not None and record.status not in FINAL_STATUSES:
            await self.store.finish(
                execution_id,
                ExecutionStatus.FAILED,
                error={"message": message, "nodeId": None, "type": "worker_error"},
            )
