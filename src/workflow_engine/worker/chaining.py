"""A BullMQ ``Worker`` that finishes a job and fetches the next one in a single round trip.

The Python port completes a job with ``moveToFinished(fetchNext=False)`` and then asks for the
next job with ``moveToActive``: two Lua calls and a trip through the worker's scheduling loop
per job. Node BullMQ passes ``fetchNext`` and goes straight on with the job it gets back. This
subclass does the same: each concurrency lane keeps running jobs while the queue has them.
Locks, lock renewal, stalled-job detection, retries and events are BullMQ's own, unchanged.
"""

from __future__ import annotations

import time
from typing import Any

from bullmq import Job, Worker
from bullmq.custom_errors import DelayedError, UnrecoverableError, WaitingChildrenError


class ChainingWorker(Worker):  # type: ignore[misc]
    async def processJob(self, job: Job, token: str) -> None:
        current: Job | None = job
        while current is not None:
            current = await self._process_one(current, token)

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
