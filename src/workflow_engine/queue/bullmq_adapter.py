"""Everything this package knows of BullMQ's internals, in one module: ``bullmq`` is pinned
``<4``, and an upgrade should touch this file and its tests only.

- ``JobHandle``: the job a worker runs, as the runner needs it (its queue, its attempt number,
  handing it back to the queue with or without counting an attempt, removing, promoting).
- ``ChainingWorker``: a BullMQ ``Worker`` that finishes a job and fetches the next one in a
  single round trip, batches its lanes' Lua calls, gives back unstarted a job it fetched as it
  closes, and finds a restarted Redis again within ~2 s.
- ``promote_job``: wake a delayed job by id, without loading it; ``find_job_scheduler``: a job
  scheduler by id, or None.
- ``DelayedError`` / ``UnrecoverableError``: what a processor raises to tell BullMQ that the
  job went back to the delayed set, or failed for good.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, NoReturn

from bullmq import Job, Queue, Worker
from bullmq.custom_errors import DelayedError, UnrecoverableError, WaitingChildrenError
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError

from workflow_engine.auto_pipeline import AutoPipeline
from workflow_engine.clock import Clock, SystemClock
from workflow_engine.monitor.logging import get_logger
from workflow_engine.reconnect import FIRST_WAIT_S, LONGEST_WAIT_S

__all__ = [
    "ChainingWorker",
    "DelayedError",
    "JobHandle",
    "UnrecoverableError",
    "find_job_scheduler",
    "promote_job",
]

DEFAULT_QUEUE = "workflow"

log = get_logger(__name__)

UNBATCHED_SCRIPTS = frozenset({"moveToActive"})
"""BullMQ's worker starts a fetch for every free lane at once; on one connection they take turns
and the first to find the queue empty stops the rest. Batched, all of them ran: ~50 Lua calls
after every job of an idle queue (submit-to-complete p50 4.5 -> 8.4 ms)."""


RETRIES = 30
"""A command is retried this many times (about a minute of waiting) before it fails."""


def quick_retry() -> Retry:
    return Retry(
        ExponentialBackoff(cap=LONGEST_WAIT_S, base=FIRST_WAIT_S),
        RETRIES,
        supported_errors=(ConnectionError, TimeoutError, BusyLoadingError),
    )


async def promote_job(queue: Queue, job_id: str) -> None:
    """Move a delayed job to the wait list now; raises when the job is not delayed (active,
    waiting, or gone)."""
    await queue.backend.promote(job_id)


async def find_job_scheduler(queue: Queue, scheduler_id: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] | None = await queue.getJobScheduler(scheduler_id)
    except ValueError:  # bullmq 3.4: an unknown id fails to unpack instead of giving None
        return None
    return found


class JobHandle:
    def __init__(self, job: Job, token: str, clock: Clock | None = None) -> None:
        self.job = job
        self.token = token
        self.clock: Clock = clock if clock is not None else SystemClock()

    @property
    def id(self) -> str:
        return str(self.job.id)

    @property
    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = self.job.data
        return data

    @property
    def queue_name(self) -> str:
        """The queue the job came from (a job built outside a worker has none: the default)."""
        queue = self.job.queue
        return str(queue.name) if hasattr(queue, "name") else DEFAULT_QUEUE

    @property
    def attempt(self) -> int:
        """This run's number. BullMQ counts every move to active (``attemptsStarted``), and the
        moves that are not tries (``hand_back``, ``park``) take theirs back, so the count is
        the number of runs; ``attemptsMade`` (failures) + 1 covers a job without the count."""
        started = int(getattr(self.job, "attemptsStarted", 0) or 0)
        return max(started, int(self.job.attemptsMade) + 1)

    @property
    def last_attempt(self) -> bool:
        """Whether BullMQ gives up on the job if this attempt fails."""
        attempts = int(self.job.opts.get("attempts", 1) or 1)
        return bool(self.job.attemptsMade + 1 >= attempts)

    def _now_ms(self) -> int:
        return int(self.clock.now() * 1000)

    async def release(self) -> None:
        """Back to the queue at once, for another worker to resume; this attempt counts. The
        processor must raise ``DelayedError`` afterwards."""
        await self.job.moveToDelayed(self._now_ms(), self.token)

    async def give_back(self) -> None:
        """Back to the queue at once, not started: this fetch is not an attempt."""
        await self.park(self._now_ms())

    async def hand_back(self) -> NoReturn:
        """``give_back`` from inside the processor (which BullMQ must then leave alone)."""
        await self.give_back()
        raise DelayedError()

    async def park(self, until_ms: int) -> None:
        """Into the delayed set until ``until_ms`` (or a ``promote``), without counting an
        attempt: waking up is not trying again. The processor must raise ``DelayedError``
        afterwards (``hand_back`` does)."""
        now = self._now_ms()
        started = max(int(self.job.attemptsStarted or 0) - 1, 0)
        # job.moveToDelayed cannot update fields; the same script can, atomically and only
        # while the lock is still ours ("ats" is the hash field of attemptsStarted)
        await self.job.backend.moveToDelayed(
            self.id,
            now,
            max(until_ms - now, 0),
            self.token,
            {"skipAttempt": True, "fieldsToUpdate": {"ats": started}},
        )

    async def remove(self) -> None:
        await self.job.remove()

    async def promote(self) -> None:
        """A delayed job to the wait list now."""
        await self.job.promote()


class ChainingWorker(Worker):  # type: ignore[misc]
    """The Python port completes a job with ``moveToFinished(fetchNext=False)`` and then asks
    for the next job with ``moveToActive``: two Lua calls and a trip through the worker's
    scheduling loop per job. Node BullMQ passes ``fetchNext`` and goes straight on with the job
    it gets back. This subclass does the same: each concurrency lane keeps running jobs while
    the queue has them. Locks, lock renewal, stalled-job detection, retries and events are
    BullMQ's own, unchanged.

    Its connections retry a failed command with our backoff (0.1 s doubling to 2 s) instead of
    the port's (2 s doubling to 20 s): after Redis restarts, the port's worker would fetch,
    renew locks and acknowledge nothing for up to 16 s more (6 s after a 3 s outage, measured),
    long enough for running jobs' locks to expire and their nodes to run twice."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for connection in (self.redisConnection, self.blockingRedisConnection):
            if connection is not None:
                kwargs_of_new_connections = connection.conn.connection_pool.connection_kwargs
                kwargs_of_new_connections["retry"] = quick_retry()
        # BullMQ's main client is a single connection (``single_connection_client=True``), so
        # every lane's Lua call (finish and fetch the next job, renew locks) waited for the one
        # before it. Its scripts go through an AutoPipeline over that client's pool instead:
        # the calls of one loop iteration share a round trip, and lanes no longer queue.
        if self.redisConnection is not None:
            batched = AutoPipeline(connection_pool=self.redisConnection.conn.connection_pool)
            for name, script in self.redisConnection.commands.items():
                if name not in UNBATCHED_SCRIPTS:
                    script.registered_client = batched

    async def close(self, force: bool = False) -> None:
        """BullMQ's ``close``, once every lane has ended: the port's waits for the tasks it
        sees when it starts, and its run loop may start one more for a job fetched just before
        (which ``processJob`` gives back: that must reach Redis before the connections close)."""
        if not force:
            self.closing = True
            if self.waiting:
                self.waiting.cancel()
            while busy := {task for task in self.processing if not task.done()}:
                await asyncio.wait(busy)
        await super().close(force)

    async def getNextJob(self, token: str) -> Job | None:
        """BullMQ's fetch, except that a job it takes while the worker closes is given back.
        The port's ``close`` waits for the fetches in flight, not for the jobs they return:
        such a job would start after the worker let go of its locks and its connections, be
        left active when the process exits, and run again, as a second attempt, once its lock
        expired."""
        job: Job | None = await super().getNextJob(token)
        if job is not None and self.closing:
            await self._give_back(job, token)
            return None
        return job

    async def processJob(self, job: Job, token: str) -> None:
        current: Job | None = job
        while current is not None:
            if self.closing:  # fetched as the worker began to close: not started, given back
                await self._give_back(current, token)
                return
            current = await self._process_one(current, token)

    async def _give_back(self, job: Job, token: str) -> None:
        """Back to the queue, not started: another worker runs it as the same attempt."""
        try:
            await JobHandle(job, token).give_back()
        except Exception as exc:  # its lock expires and the stalled-job check brings it back
            log.warning("could not give a job back", jobId=job.id, error=repr(exc))

    async def _process_one(self, job: Job, token: str) -> Job | None:
        """BullMQ's ``processJob`` for one job, returning the next job when the queue had one."""
        following: Job | None = None
        try:
            if "removeOnComplete" not in job.opts and "removeOnComplete" in self.opts:
                job.opts["removeOnComplete"] = self.opts["removeOnComplete"]
            if "removeOnFail" not in job.opts and "removeOnFail" in self.opts:
                job.opts["removeOnFail"] = self.opts["removeOnFail"]
            self.jobs.add((job, token))
            controller = self.lockManager.track_job(
                job.id,
                token,
                int(time.time() * 1000),
                should_create_controller=self._processor_wants_signal,
            )
            if job.deferredFailure:
                await job.moveToFailed(UnrecoverableError(job.deferredFailure), token)
                self.emit("failed", job, UnrecoverableError(job.deferredFailure))
                return None
            if controller is not None:
                result = await self.processor(job, token, controller.signal)
            else:
                result = await self.processor(job, token)
            if not self.forceClosing:
                fetch = not (self.closing or self.paused)
                done = await self.backend.moveToCompleted(
                    job, result, job.opts.get("removeOnComplete", False), token, fetch_next=fetch
                )
                job.returnvalue = result
                job.attemptsMade = job.attemptsMade + 1
                if fetch:
                    following = await self._next_from(done, token)
            self.emit("completed", job, result)
        except (DelayedError, WaitingChildrenError):
            return None
        except Exception as err:
            try:
                if not self.forceClosing:
                    await job.moveToFailed(err, token)
                self.emit("failed", job, err)
            except Exception as again:
                self.emit("error", again, job)
        finally:
            self.jobs.discard((job, token))
            self.lockManager.untrack_job(job.id)
        return following

    async def _next_from(self, done: Any, token: str) -> Job | None:
        raw = done.get("result") if isinstance(done, dict) else None
        if not raw:
            return None
        data, job_id, limit_until, delay_until = raw
        following: Job | None = await self.nextJobFromJobData(
            data, job_id, int(limit_until or 0), int(delay_until or 0), token
        )
        if following is not None:
            self.emit("active", following, "waiting")
        return following
