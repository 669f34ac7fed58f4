"""What a run tells the world: node results and progress to the store (group commit, not
awaited), and every event to the execution's stream (pipelined, not awaited)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from workflow_engine.engine.hooks import (
    ExecutionHooks,
    NodeFinished,
    NodeRetrying,
    NodeStarted,
    NodeStreamed,
    ProgressChanged,
)
from workflow_engine.engine.results import iso
from workflow_engine.engine.status import NodeStatus
from workflow_engine.events import model as ev
from workflow_engine.events.publisher import EventPublisher
from workflow_engine.store.base import StateStore

NODE_EVENT = {
    NodeStatus.COMPLETED: ev.NODE_COMPLETED,
    NodeStatus.FAILED: ev.NODE_FAILED,
    NodeStatus.SKIPPED: ev.NODE_SKIPPED,
}


@dataclass
class RunHooks(ExecutionHooks):
    """The outcome is queued on the store behind the node results and awaited with them
    (``durable``): the store applies writes in order and fails everything behind a failed
    batch, so an outcome is never recorded without its node results. Progress reaches the
    store at most every ``progress_interval`` seconds (the outcome carries the final one) and
    the event stream every time."""

    store: StateStore
    events: EventPublisher
    execution_id: str
    seq: int = 0
    progress_interval: float = 0.25
    pending: list[asyncio.Future[bool]] = field(default_factory=list)
    last_progress: float = field(default_factory=time.monotonic)

    def _emit(self, event_type: str, data: Any) -> None:
        self.events.publish(self.execution_id, event_type, data)

    async def on_node_start(self, event: NodeStarted) -> None:
        self._emit(
            ev.NODE_STARTED,
            {
                "nodeId": event.node_id,
                "nodeType": event.node_type,
                "input": event.input,
                "startedAt": iso(event.started_at),
            },
        )

    async def on_node_retry(self, event: NodeRetrying) -> None:
        self._emit(
            ev.NODE_RETRYING,
            {
                "nodeId": event.node_id,
                "attempt": event.attempt,
                "error": event.error,
                "delay": event.delay,
            },
        )

    async def on_node_complete(self, event: NodeFinished) -> None:
        self.seq += 1
        result = event.result
        self.pending.append(self.store.save_node(self.execution_id, result, self.seq))
        event_type = NODE_EVENT.get(result.status)
        if event_type is not None:
            self._emit(event_type, result.to_dict())

    async def on_node_stream(self, event: NodeStreamed) -> None:
        self._emit(ev.NODE_STREAM, {"nodeId": event.node_id, "chunk": event.chunk})

    async def on_progress(self, event: ProgressChanged) -> None:
        progress = event.progress.to_dict()
        self._emit(ev.EXECUTION_PROGRESS, progress)
        now = time.monotonic()
        if now - self.last_progress >= self.progress_interval:
            self.last_progress = now
            self.pending.append(self.store.save_progress(self.execution_id, progress))

    async def durable(self, last: asyncio.Future[bool] | None = None) -> None:
        """Wait for the writes queued so far (and ``last``, queued after them). The store
        applies writes in order, so once the last one is done the others are too; any of them
        that failed raises here."""
        futures, self.pending = self.pending, []
        if last is not None:
            futures.append(last)
        if not futures:
            return
        await asyncio.wait([futures[-1]])
        for future in futures:
            if not future.done():
                await future
            elif future.exception() is not None:
                raise future.exception()  # type: ignore[misc]
