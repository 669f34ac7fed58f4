"""Recovery of executions whose job is gone: BullMQ gives up a job that stalled more than
``max_stalled_count`` times (workers kept dying while running it) without any worker hearing
of it, and a Redis that lost its data loses jobs. The store still says the execution is
active. Every few minutes one worker looks at the executions that have not changed for a while
and asks BullMQ about their jobs:

- the job failed: the execution fails (``type: "lost"``) and its final event is written;
- the job is gone and the execution had started (running, waiting): the job is queued again
  and the next run resumes from the store's checkpoint;
- the job is gone and the execution never started: it fails (it may have been a submit whose
  caller was told it failed, so it is not run behind the caller's back);
- the execution is parked on a child (``workflow`` node) that has ended, but the child's
  outcome or the wake-up did not reach it (the store or Redis was down then): it is delivered
  and the parent woken.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from workflow_engine.events import model as ev
from workflow_engine.events.publisher import EventPublisher
from workflow_engine.keys import Keys
from workflow_engine.monitor import metrics
from workflow_engine.monitor.logging import get_logger
from workflow_engine.queue.callbacks import announce_end
from workflow_engine.queue.children import notify_parent, wake_if_children_ended
from workflow_engine.queue.queues import JOB_NAME, QueueSet
from workflow_engine.queue.submit import job_data
from workflow_engine.store.base import StateStore
from workflow_engine.store.records import ExecutionRecord
from workflow_engine.vocabulary import ACTIVE_STATUSES, ExecutionError, ExecutionStatus, now_ms
from workflow_engine.worker.periodic import my_turn
from workflow_engine.worker.repair import republish_node_events

log = get_logger(__name__)

FINE = frozenset({"active", "waiting", "delayed", "prioritized", "waiting-children", "paused"})


@dataclass
class Recovered:
    failed: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    woken: list[str] = field(default_factory=list)


class Recovery:
    def __init__(
        self,
        store: StateStore,
        queues: QueueSet,
        redis: aioredis.Redis,
        keys: Keys,
        events: EventPublisher,
        *,
        interval_s: float,
        stale_s: float,
    ) -> None:
        self.store = store
        self.queues = queues
        self.redis = redis
        self.keys = keys
        self.events = events
        self.interval_s = interval_s
        self.stale_s = stale_s

    async def run_once(self) -> Recovered | None:
        """Look once, unless another worker did within the interval (then None)."""
        if not await my_turn(self.redis, self.keys.maintenance("recovery-due"), self.interval_s):
            return None
        return await self.sweep()

    async def sweep(self) -> Recovered:
        found = Recovered()
        cutoff = now_ms() - int(self.stale_s * 1000)
        for record in await self.store.stale_active(cutoff):
            queue = self.queues.queues.get(record.queue)
            if queue is None:  # (a named queue this process is not configured with)
                log.warning(
                    "stale execution of an unknown queue",
                    queue=record.queue,
                    executionId=record.execution_id,
                )
                continue
            state = await queue.getJobState(record.execution_id)
            if state in FINE:
                if (
                    state == "delayed"
                    and record.status is ExecutionStatus.WAITING
                    and await wake_if_children_ended(self.store, self.queues, record)
                ):
                    found.woken.append(record.execution_id)
                continue
            if state == "failed":
                await self._fail(
                    record,
                    "its job was given up by the queue (it stalled more than max_stalled_count "
                    "times: the workers running it died)",
                    found,
                )
            elif state == "unknown" and record.status is ExecutionStatus.PENDING:
                await self._fail(record, "its job was lost before it started", found)
            elif state == "unknown":
                full = await self.store.get(record.execution_id, with_definition=True)
                if full is not None and full.status in ACTIVE_STATUSES:
                    await queue.add(JOB_NAME, job_data(full), {"jobId": full.execution_id})
                    found.requeued.append(full.execution_id)
                    log.warning("lost job queued again", executionId=full.execution_id)
        return found

    async def _fail(self, record: ExecutionRecord, message: str, found: Recovered) -> None:
        error = ExecutionError(message, "lost")
        if not await self.store.transition(
            record.execution_id,
            ExecutionStatus.FAILED,
            expect=frozenset({record.status}),
            error=error,
            completed_at=now_ms(),
        ):
            return  # it moved on meanwhile
        await republish_node_events(self.store, self.events, record.execution_id)
        event_type, data = ev.final_event(
            ExecutionStatus.FAILED, None, error.to_dict(), record.progress_or_empty()
        )
        self.events.publish(record.execution_id, event_type, data, final=True)
        await self.events.leave(record.tenant_id, record.execution_id)
        found.failed.append(record.execution_id)
        log.warning("execution with a lost job failed", executionId=record.execution_id)
        metrics.execution_ended(record.queue, str(ExecutionStatus.FAILED), None, record.tenant_id)
        failed = await self.store.get(record.execution_id)
        if failed is not None:
            await announce_end(self.queues, self.queues.settings, failed)
            with contextlib.suppress(Exception):  # a child: its parent's node learns it
                await notify_parent(self.store, self.queues, failed)
