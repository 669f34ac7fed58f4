"""Queue administration (SPEC section 11, scope ``admin``): pause and resume a queue class,
clean its jobs by state, retry its failed jobs; every action leaves the store consistent with
the queue.

- Pausing stops the workers taking jobs from the queue; submits still queue (BullMQ's pause).
- Cleaning ``completed`` or ``failed`` jobs removes queue entries only (their executions stay
  as they ended). Cleaning ``wait`` (with the prioritized and paused jobs) or ``delayed``
  jobs removes executions that have not ended: each is cancelled (``error.type``
  ``cancelled``, its final event published), so no execution stays pending for ever.
- Retrying failed jobs puts each failed execution back to ``pending`` (its error and end
  cleared, its event stream started afresh) and its job back in the queue: the run restores
  the nodes that completed and runs the rest. A failed job whose execution is not ``failed``
  (cancelled since) is left alone."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Final

import redis.asyncio as aioredis

from workflow_engine.keys import Keys
from workflow_engine.monitor.logging import get_logger
from workflow_engine.queue.cancel import Canceller
from workflow_engine.queue.queues import QueueSet
from workflow_engine.queue.submit import Conflict, NotFound
from workflow_engine.store.base import StateStore
from workflow_engine.vocabulary import ExecutionError, ExecutionStatus, now_ms

log = get_logger(__name__)

CLEANABLE: Final[Mapping[str, tuple[str, ...]]] = {
    "completed": ("completed",),
    "failed": ("failed",),
    "delayed": ("delayed",),
    "wait": ("wait", "prioritized", "paused"),
}
"""A state to clean -> BullMQ's sets it covers (a waiting job with a priority is in
``prioritized``, one of a paused queue in ``paused``)."""
UNFINISHED: Final = frozenset({"delayed", "wait"})
MAX_LIMIT: Final = 10_000
CANCEL_CONCURRENCY: Final = 32


class QueueAdmin:
    def __init__(
        self,
        store: StateStore,
        queues: QueueSet,
        redis: aioredis.Redis,
        keys: Keys,
        canceller: Canceller,
    ) -> None:
        self.store = store
        self.queues = queues
        self.redis = redis
        self.keys = keys
        self.canceller = canceller

    def _queue(self, name: str) -> Any:
        try:
            return self.queues[name]
        except KeyError:
            known = ", ".join(self.queues.queues)
            raise NotFound(f"no queue {name!r} (queues: {known})") from None

    async def overview(self) -> list[dict[str, Any]]:
        """Each queue class: whether it is paused, its jobs by state, its workers."""
        states = await self.queues.states()
        out = []
        for name, queue in self.queues.queues.items():
            out.append(
                {
                    "name": name,
                    "paused": bool(await queue.isPaused()),
                    "jobs": states[name],
                    "workers": int(await queue.get_workers_count()),
                }
            )
        return out

    async def pause(self, name: str) -> dict[str, Any]:
        await self._queue(name).pause()
        log.info("queue paused", queue=name)
        return {"name": name, "paused": True}

    async def resume(self, name: str) -> dict[str, Any]:
        await self._queue(name).resume()
        log.info("queue resumed", queue=name)
        return {"name": name, "paused": False}

    async def clean(self, name: str, state: str, grace_ms: int, limit: int) -> dict[str, Any]:
        """Remove up to ``limit`` jobs in ``state`` older than ``grace_ms``; the executions
        of removed unfinished jobs are cancelled."""
        queue = self._queue(name)
        removed: list[str] = []
        for bullmq_state in CLEANABLE[state]:
            if len(removed) >= limit:
                break
            ids = await queue.clean(grace_ms, limit - len(removed), bullmq_state)
            removed += [i.decode() if isinstance(i, bytes) else str(i) for i in ids or ()]
        cancelled = await self._cancel_all(removed) if state in UNFINISHED else 0
        log.info("queue cleaned", queue=name, state=state, removed=len(removed))
        return {"name": name, "state": state, "removed": len(removed), "cancelled": cancelled}

    async def _cancel_all(self, execution_ids: list[str]) -> int:
        """Cancel the executions of removed jobs, ``CANCEL_CONCURRENCY`` at a time (one whose
        record says running waits for its worker's answer); how many were cancelled."""
        slots = asyncio.Semaphore(CANCEL_CONCURRENCY)

        async def cancel(execution_id: str) -> bool:
            async with slots:
                try:
                    await self.canceller.cancel(execution_id, None)
                except (NotFound, Conflict):
                    return False
                return True

        return sum(await asyncio.gather(*(cancel(i) for i in execution_ids)))

    async def retry_failed(self, name: str, limit: int = MAX_LIMIT) -> dict[str, Any]:
        """Send the queue's failed jobs (up to ``limit``) back: each execution ``pending``
        again, then its job retried."""
        queue = self._queue(name)
        retried = 0
        for job in await queue.getFailed(0, limit - 1):
            if job is None:
                continue
            execution_id = str(job.id)
            if not await self.store.transition(
                execution_id,
                ExecutionStatus.PENDING,
                expect=frozenset({ExecutionStatus.FAILED}),
                error=None,
                completed_at=None,
            ):
                continue
            # the stream starts afresh: a client following the retried run must not stop at
            # the failure's final event
            await self.redis.delete(self.keys.events(execution_id))
            try:  # a retried run gets the queue class's attempts again
                await job.retry("failed", {"resetAttemptsMade": True, "resetAttemptsStarted": True})
            except Exception as exc:  # gone or moved meanwhile: the execution stays failed
                log.warning("failed job not retried", executionId=execution_id, error=repr(exc))
                await self.store.transition(
                    execution_id,
                    ExecutionStatus.FAILED,
                    expect=frozenset({ExecutionStatus.PENDING}),
                    error=ExecutionError("not retried: its job is gone", "lost"),
                    completed_at=now_ms(),
                )
                continue
            retried += 1
        log.info("failed jobs retried", queue=name, retried=retried)
        return {"name": name, "retried": retried}
