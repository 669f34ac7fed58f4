"""What a run tells the world: node results and progress to the store (group commit, not
awaited), and every event to the execution's stream (pipelined, not awaited)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any

from workflow_engine.engine.hooks import (
    ExecutionHooks,
    NodeFinished,
    NodeLogged,
    NodeRetrying,
    NodeStarted,
    NodeStreamed,
    ProgressChanged,
)
from workflow_engine.engine.loop import iteration_of
from workflow_engine.events import model as ev
from workflow_engine.events.publisher import EventPublisher
from workflow_engine.monitor import metrics, tracing
from workflow_engine.monitor.logging import get_logger
from workflow_engine.store.base import StateStore
from workflow_engine.vocabulary import NodeResult, NodeStatus, iso

log = get_logger(__name__)

UNCOPIED = frozenset({ev.NODE_STREAM, ev.NODE_LOG})
"""A child's events its ancestors' streams do not get: its tokens and printed text are many
and stay on its own stream (copied, they would push the ancestors' own events out of their
capped streams)."""

NODE_EVENT = {
    NodeStatus.COMPLETED: ev.NODE_COMPLETED,
    NodeStatus.FAILED: ev.NODE_FAILED,
    NodeStatus.SKIPPED: ev.NODE_SKIPPED,
}


def node_event(data: dict[str, Any]) -> dict[str, Any]:
    """A node event's data, with ``loopId`` and ``iteration`` for a loop body's node."""
    node_id = data["nodeId"]
    where = iteration_of(node_id) if "[" in node_id else None
    if where is None:
        return data
    return {**data, "loopId": where[0], "iteration": where[1]}


@dataclass
class RunHooks(ExecutionHooks):
    """The outcome is queued on the store behind the node results and awaited with them
    (``durable``): the store applies writes in order and fails everything behind a failed
    batch, so an outcome is never recorded without its node results. Progress reaches the
    store at most every ``progress_interval`` seconds (the outcome carries the final one) and
    the event stream every time.

    Checkpoints: the result of every node that is not ``pure`` also goes to the execution's
    checkpoint hash in Redis, in the same round trip as its event, and ``checkpoint`` waits for
    that write before the node's dependants start. Such a node leaves a marker there with its
    attempt when it starts. Pure nodes cost nothing extra: a resumed run may run them again."""

    store: StateStore
    events: EventPublisher
    execution_id: str
    seq: int = 0
    progress_interval: float = 0.25
    pending: list[asyncio.Future[bool]] = field(default_factory=list)
    last_progress: float = field(default_factory=time.monotonic)
    last_checkpoint: asyncio.Future[None] | None = None
    pure: Container[str] = frozenset()
    """Node ids (loop iterations' too) whose results need no checkpoint."""
    ancestors: tuple[tuple[str, str], ...] = ()
    """A child execution's: (execution id, node id) of each execution above it (the
    ``workflow`` node it runs under). Its node events are copied to their streams."""
    trace: dict[str, str] | None = None
    """The run's span (a W3C carrier) when tracing is on: each node's span is its child."""

    def _emit(self, event_type: str, data: dict[str, Any]) -> None:
        """A node event: to this execution's stream, and (but ``UNCOPIED``) a copy to each
        ancestor's stream with ``childExecutionId`` (this execution, for a UI to open) and
        ``parentNodeId`` (the node of that ancestor it runs under)."""
        data = node_event(data)
        self.events.publish(self.execution_id, event_type, data)
        if event_type in UNCOPIED:
            return
        for execution_id, node_id in self.ancestors:
            copy = {**data, "childExecutionId": self.execution_id, "parentNodeId": node_id}
            self.events.mirror(execution_id, event_type, copy)

    async def on_node_start(self, event: NodeStarted) -> None:
        self._emit(
            ev.NODE_STARTED,
            {
                "nodeId": event.node_id,
                "nodeType": event.node_type,
                "input": event.input,
                "attempt": event.attempt,
                "startedAt": iso(event.started_at),
            },
        )
        self._mark_running(event.node_id, event.attempt)

    def _mark_running(self, node_id: str, attempt: int) -> None:
        if node_id in self.pure:
            return
        self.events.checkpoint(
            self.execution_id, node_id, {"status": "running", "attempt": attempt}
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
        self._mark_running(event.node_id, event.attempt + 1)

    async def on_node_complete(self, event: NodeFinished) -> None:
        self.save(event.result)

    def save(self, result: NodeResult, *, announce: bool = True) -> None:
        """Record a node result: store (batched), event (unless not ``announce``d: it was
        before) and checkpoint (in the event's round trip)."""
        self.seq += 1
        self.pending.append(self.store.save_node(self.execution_id, result, self.seq))
        data = result.to_dict()
        event_type = NODE_EVENT.get(result.status)
        if event_type is not None and announce:
            self._emit(event_type, data)
            duration = result.duration_ms
            metrics.node_ended(
                result.node_type, str(result.status), None if duration is None else duration / 1000
            )
            if self.trace is not None:
                error = (result.error or {}).get("message")
                tracing.record(
                    f"node {result.node_id}",
                    self.trace,
                    result.started_at,
                    result.completed_at,
                    error=error if isinstance(error, str) else None,
                    **{"wfe.node.id": result.node_id, "wfe.node.type": result.node_type},
                    **{"wfe.node.status": str(result.status)},
                )
        if result.node_id not in self.pure:
            self.last_checkpoint = self.events.checkpoint(self.execution_id, result.node_id, data)

    async def checkpoint(self) -> None:
        """Wait until the node results reported so far are in Redis. If Redis cannot take
        them, wait for the store instead: either way a resumed run finds them."""
        last, self.last_checkpoint = self.last_checkpoint, None
        if last is None:
            return
        try:
            await last
        except Exception as exc:
            log.warning(
                "checkpoint not written to Redis; waiting for the store",
                executionId=self.execution_id,
                error=repr(exc),
            )
            await self.durable()

    async def on_node_stream(self, event: NodeStreamed) -> None:
        self._emit(ev.NODE_STREAM, {"nodeId": event.node_id, "chunk": event.chunk})

    async def on_node_log(self, event: NodeLogged) -> None:
        self._emit(ev.NODE_LOG, {"nodeId": event.node_id, "text": event.text})

    async def on_progress(self, event: ProgressChanged) -> None:
        progress = event.progress.to_dict()
        self.events.publish(self.execution_id, ev.EXECUTION_PROGRESS, progress)
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
