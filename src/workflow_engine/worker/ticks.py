"""A schedule's tick: BullMQ's job scheduler adds a job without an execution; the worker that
takes it records the execution the tick starts, unless the maintenance window skips it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from workflow_engine.clock import Clock
from workflow_engine.config import Settings
from workflow_engine.errors import DefinitionError
from workflow_engine.events import model as ev
from workflow_engine.events.publisher import EventPublisher
from workflow_engine.monitor.logging import get_logger
from workflow_engine.plan import PlanCache
from workflow_engine.queue.bullmq_adapter import JobHandle, UnrecoverableError
from workflow_engine.queue.schedules import TICK_KEY, tick_submission
from workflow_engine.queue.submit import announce, new_record
from workflow_engine.store.base import StateStore
from workflow_engine.vocabulary import ExecutionError, ExecutionStatus

log = get_logger(__name__)


def is_tick(data: dict[str, Any]) -> bool:
    return "executionId" not in data and TICK_KEY in data


class ScheduleTicks:
    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        events: EventPublisher,
        plans: PlanCache,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.store = store
        self.events = events
        self.plans = plans
        self.clock = clock

    async def record(self, job: JobHandle) -> dict[str, Any] | None:
        """Record the tick's execution (once, however often the job is tried) and return the
        job data to run it with; None when the maintenance window skips it."""
        submission = tick_submission(job.data, job.queue_name, job.id)
        try:
            plan = self.plans.get(submission.definition)
        except DefinitionError as exc:
            raise UnrecoverableError(str(exc)) from exc
        record, fresh = await self.store.create(new_record(submission, plan))
        if fresh:
            await announce(self.events, record, 0, self.settings.queue_class(record.queue))
        data = {
            **job.data,
            "executionId": record.execution_id,
            "tenantId": submission.tenant_id,
            "metadata": submission.metadata,
        }
        window = self.settings.window()
        if window is None or not window.contains(datetime.fromtimestamp(self.clock.now(), UTC)):
            return data
        error = ExecutionError(f"skipped: in the maintenance window ({window})", "maintenance")
        if await self.store.transition(
            record.execution_id,
            ExecutionStatus.SKIPPED,
            expect=frozenset({ExecutionStatus.PENDING}),
            error=error,
            completed_at=int(self.clock.now() * 1000),
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
