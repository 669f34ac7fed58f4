"""Group commit: concurrent writers share one transaction. Writes submitted while a batch commits
go into the next one, in the order they came; each writer learns whether its write took."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

from workflow_engine.monitor import metrics
from workflow_engine.monitor.logging import get_logger
from workflow_engine.store.errors import StoreUnavailable
from workflow_engine.store.writes import SaveNode, SaveProgress, Write

log = get_logger(__name__)

Apply = Callable[[Sequence[Write]], Awaitable[list[bool]]]
"""Apply writes in one transaction; per write, whether it took (a backend's ``_apply``)."""


class GroupCommit:
    """Batches the writes given to ``submit`` for ``apply``: at most ``max_batch`` a batch, and
    a batch waits ``window_s`` for company (0: only for the tasks that are ready)."""

    def __init__(self, apply: Apply, *, max_batch: int = 1000, window_s: float = 0.0) -> None:
        self._apply = apply
        self._max_batch = max_batch
        self._window = window_s
        self._pending: list[tuple[Write, asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._broken: dict[str, str] = {}
        self.batches = 0
        self.batched_writes = 0

    def submit(self, op: Write) -> asyncio.Future[bool]:
        """Add a write to the next batch. The first write of an idle store is flushed at once;
        writes that arrive while a batch commits go into the next one. A write of an execution
        one of whose writes failed fails too (until ``reset``): no outcome is ever recorded
        without the node results submitted before it."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        broken = self._broken.get(op.execution_id)
        if broken is not None:
            future.set_exception(
                StoreUnavailable(f"an earlier write of {op.execution_id} failed: {broken}")
            )
            future.add_done_callback(_retrieved)
            return future
        self._pending.append((op, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush_loop())
        return future

    def reset(self, execution_id: str) -> None:
        """Forget an execution's failed writes (a new attempt starts from what is stored)."""
        self._broken.pop(execution_id, None)

    async def flush(self) -> None:
        """Wait until every write submitted so far is committed (or failed)."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    async def _flush_loop(self) -> None:
        while self._pending:
            if len(self._pending) < self._max_batch:
                if self._window:
                    await asyncio.sleep(self._window)
                else:  # let the tasks that are ready add their writes to this batch
                    await asyncio.sleep(0)
            batch, self._pending = (
                self._pending[: self._max_batch],
                self._pending[self._max_batch :],
            )
            self.batches += 1
            self.batched_writes += len(batch)
            try:
                began = time.perf_counter()
                results = await self._apply([op for op, _ in batch])
                metrics.STORE_COMMIT_SECONDS.observe(time.perf_counter() - began)
            except Exception as exc:
                # what was queued behind the failed batch fails too: no write may take effect
                # after an earlier one that failed (an outcome without its node results)
                batch, self._pending = batch + self._pending, []
                for op, _ in batch:
                    if isinstance(op, SaveNode | SaveProgress):  # a run's record is incomplete
                        self._broken[op.execution_id] = repr(exc)
                log.warning("store batch failed", writes=len(batch), error=repr(exc))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), ok in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(ok)


def _retrieved(future: asyncio.Future[bool]) -> None:
    if not future.cancelled():
        future.exception()
