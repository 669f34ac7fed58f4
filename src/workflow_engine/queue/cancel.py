"""Cancelling an execution, wherever it is: a pending one leaves the queue; a running one is
cancelled by the worker that runs it (any process, any machine) and the call waits for it."""

from __future__ import annotations

import asyncio
import contextlib

import redis.asyncio as aioredis

from workflow_engine.events import model as ev
from workflow_engine.events.hub import Overflow, StreamHub
from workflow_engine.events.publisher import EventPublisher
from workflow_engine.keys import Keys
from workflow_engine.monitor.logging import get_logger
from workflow_engine.queue.callbacks import announce_end_of
from workflow_engine.queue.children import notify_parent, waiting_children
from workflow_engine.queue.queues import QueueSet
from workflow_engine.queue.submit import Conflict, NotFound
from workflow_engine.store.base import StateStore
from workflow_engine.store.records import ExecutionRecord
from workflow_engine.vocabulary import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    ExecutionError,
    ExecutionStatus,
    now_ms,
)

log = get_logger(__name__)

S = ExecutionStatus

_UNCLAIMED = frozenset({S.PENDING, S.WAITING})
"""No worker holds an execution in these: the record decides, and the job leaves the queue."""


class Canceller:
    def __init__(
        self,
        store: StateStore,
        queues: QueueSet,
        redis: aioredis.Redis,
        keys: Keys,
        events: EventPublisher,
        hub: StreamHub,
        wait_s: float = 5.0,
    ) -> None:
        self.store = store
        self.queues = queues
        self.redis = redis
        self.keys = keys
        self.events = events
        self.hub = hub
        self.wait_s = wait_s

    async def cancel(self, execution_id: str, tenant_id: str | None) -> ExecutionRecord:
        """Returns the cancelled record. ``NotFound``; ``Conflict`` when it finished first.
        The children its ``workflow`` nodes wait for are cancelled with it (and theirs); a
        cancelled child's parent node learns it (and fails, ``cancelled``)."""
        cancelled = await self._cancel(execution_id, tenant_id)
        await self._cascade(cancelled)
        return cancelled

    async def _cascade(self, record: ExecutionRecord) -> None:
        try:
            children = waiting_children(await self.store.node_results(record.execution_id))
            for child_id in children.values():
                with contextlib.suppress(NotFound, Conflict):
                    await self.cancel(child_id, record.tenant_id)
            await notify_parent(self.store, self.queues, record)
        except Exception as exc:  # the cancel itself took: this is its aftermath
            log.warning(
                "could not cancel children or tell the parent",
                executionId=record.execution_id,
                error=repr(exc),
            )

    async def _cancel(self, execution_id: str, tenant_id: str | None) -> ExecutionRecord:
        record = await self.store.get(execution_id, tenant_id)
        if record is None:
            raise NotFound(f"execution {execution_id} not found")
        if record.status in FINAL_STATUSES:
            raise Conflict(f"execution {execution_id} already finished ({record.status})")
        if record.status in _UNCLAIMED and await self._force(record, _UNCLAIMED):
            return await self._reload(record)
        await self._ask_the_worker(execution_id)
        current = await self._reload(record)
        if current.status is S.CANCELLED:
            return current
        if current.status in FINAL_STATUSES:
            raise Conflict(f"execution {execution_id} already finished ({current.status})")
        # no worker answered in time (none runs it, or it is stuck): the record decides, and
        # a worker that finishes it later finds it cancelled
        log.warning(
            "no worker confirmed the cancel; cancelling the record", executionId=execution_id
        )
        if await self._force(current, ACTIVE_STATUSES):
            return await self._reload(current)
        current = await self._reload(current)
        if current.status is S.CANCELLED:
            return current
        raise Conflict(f"execution {execution_id} already finished ({current.status})")

    async def _ask_the_worker(self, execution_id: str) -> None:
        """Publish the request and wait for the execution's final event."""
        subscriber = self.hub.subscriber()
        try:
            await subscriber.follow_execution_from_now(execution_id)
            await self.redis.publish(self.keys.cancel_channel, execution_id)
            with contextlib.suppress(TimeoutError, Overflow):
                async with asyncio.timeout(self.wait_s):
                    while not (await subscriber.next()).final:
                        pass
        finally:
            subscriber.close()

    async def _force(self, record: ExecutionRecord, expect: frozenset[ExecutionStatus]) -> bool:
        error = ExecutionError("cancelled", "cancelled")
        if not await self.store.transition(
            record.execution_id, S.CANCELLED, expect=expect, completed_at=now_ms(), error=error
        ):
            return False
        # the final event first: a worker parking this execution right now looks for it after
        # handing the job back, and removes the job itself if this removal comes too early
        event_type, data = ev.final_event(S.CANCELLED, None, error.to_dict(), record.progress)
        self.events.publish(record.execution_id, event_type, data, final=True)
        await self.events.leave(record.tenant_id, record.execution_id)
        await announce_end_of(
            self.queues, self.queues.settings, self.store, record.execution_id, record.metadata
        )
        try:
            await self.queues[record.queue].remove(record.execution_id)
        except Exception as exc:  # taken by a worker meanwhile: it finds the record cancelled
            log.info("job not removed", executionId=record.execution_id, error=repr(exc))
        return True

    async def _reload(self, record: ExecutionRecord) -> ExecutionRecord:
        current = await self.store.get(record.execution_id)
        if current is None:
            raise NotFound(f"execution {record.execution_id} not found")
        return current
