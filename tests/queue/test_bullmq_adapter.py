"""The adapter over BullMQ's internals, against a real Redis and the real bullmq port: what a
bullmq upgrade must keep working."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from benchmarks.redis_cost import snapshot
from bullmq import Job, Queue

from tests.support.processes import wait_until
from tests.support.services import RedisServer
from workflow_engine.auto_pipeline import AutoPipeline
from workflow_engine.embedded_redis import EmbeddedRedis
from workflow_engine.queue.bullmq_adapter import (
    ChainingWorker,
    DelayedError,
    JobHandle,
    find_job_scheduler,
)

Processor = Callable[[Job, str], Awaitable[Any]]


class Lane:
    """A queue of its own and a ChainingWorker on it (one job at a time)."""

    def __init__(self, redis_url: str) -> None:
        self.name = "lane"
        self.opts = {"connection": redis_url, "prefix": f"adapter-{uuid.uuid4().hex[:8]}"}
        self.queue = Queue(self.name, self.opts)
        self.worker: ChainingWorker | None = None
        self._task: asyncio.Future[Any] | None = None

    def start(self, processor: Processor, concurrency: int = 1) -> None:
        self.worker = ChainingWorker(
            self.name, processor, {**self.opts, "concurrency": concurrency, "autorun": False}
        )
        self._task = asyncio.ensure_future(self.worker.run())

    async def state(self, job_id: str) -> str:
        return str(await self.queue.getJobState(job_id))

    async def stop(self) -> None:
        """Close the worker and wait for its loop to end (``start`` may run a new one)."""
        if self.worker is not None:
            await self.worker.close()
        if self._task is not None:
            await self._task

    async def close(self) -> None:
        await self.stop()
        await self.queue.close()


@pytest.fixture
async def lane(redis_server: RedisServer) -> AsyncIterator[Lane]:
    opened = Lane(redis_server.url)
    yield opened
    await opened.close()


async def completed(lane: Lane, job_id: str) -> None:
    async def check() -> bool:
        return await lane.state(job_id) == "completed"

    await wait_until(check, 10, f"job {job_id} to complete")


async def test_a_job_handed_back_unstarted_keeps_its_attempt_number(lane: Lane) -> None:
    """BullMQ counts each fetch as an attempt started; ``hand_back`` takes it back."""
    seen: list[tuple[int, str]] = []

    async def processor(job: Job, token: str) -> str:
        handle = JobHandle(job, token)
        seen.append((handle.attempt, handle.queue_name))
        if len(seen) < 3:
            await handle.hand_back()
        return "done"

    job = await lane.queue.add("j", {"n": 1}, {"attempts": 3})
    lane.start(processor)
    await completed(lane, job.id)
    assert seen == [(1, "lane"), (1, "lane"), (1, "lane")]


async def test_a_released_job_counts_the_attempt_it_made(lane: Lane) -> None:
    seen: list[tuple[int, bool]] = []

    async def processor(job: Job, token: str) -> str:
        handle = JobHandle(job, token)
        seen.append((handle.attempt, handle.last_attempt))
        if len(seen) == 1:
            await handle.release()
            raise DelayedError()
        return "done"

    job = await lane.queue.add("j", {}, {"attempts": 2})
    lane.start(processor)
    await completed(lane, job.id)
    # last_attempt reads BullMQ's failure count: a release is not a failure
    assert seen == [(1, False), (2, False)]


async def test_the_last_attempt_is_known(lane: Lane) -> None:
    seen: list[bool] = []

    async def processor(job: Job, token: str) -> str:
        seen.append(JobHandle(job, token).last_attempt)
        if len(seen) == 1:
            raise RuntimeError("first attempt fails")
        return "done"

    job = await lane.queue.add("j", {}, {"attempts": 2})
    lane.start(processor)
    await completed(lane, job.id)
    assert seen == [False, True]


async def test_a_parked_job_waits_delayed_and_wakes_when_promoted_without_an_attempt(
    lane: Lane,
) -> None:
    seen: list[int] = []
    states: list[str] = []

    async def processor(job: Job, token: str) -> str:
        handle = JobHandle(job, token)
        seen.append(handle.attempt)
        if len(seen) == 1:
            await handle.park(int(handle.clock.now() * 1000) + 3_600_000)
            states.append(await lane.state(handle.id))
            await handle.promote()
            raise DelayedError()
        return "done"

    job = await lane.queue.add("j", {}, {"attempts": 3})
    lane.start(processor)
    await completed(lane, job.id)
    assert states == ["delayed"]
    assert seen == [1, 1]


async def test_a_lane_runs_the_jobs_queued_behind_each_other_without_returning(
    lane: Lane,
) -> None:
    """Finishing a job fetches the next one in the same call: one task runs them all."""
    tasks: list[asyncio.Task[Any] | None] = []

    async def processor(job: Job, token: str) -> int:
        tasks.append(asyncio.current_task())
        return int(job.data["n"])

    jobs = [await lane.queue.add("j", {"n": n}) for n in range(5)]
    lane.start(processor)
    for job in jobs:
        await completed(lane, job.id)
    assert len(tasks) == 5
    assert len({id(t) for t in tasks}) == 1
    returned = [(await Job.fromId(lane.queue, job.id)).returnvalue for job in jobs]
    assert returned == [0, 1, 2, 3, 4]


class Hold:
    """Holds a worker's Redis call after it returned a job until ``go_on`` is set: the window
    in which the worker starts to close."""

    def __init__(self, call: Callable[..., Awaitable[Any]], brought_a_job: Callable[[Any], bool]):
        self.call = call
        self.brought_a_job = brought_a_job
        self.holding = asyncio.Event()
        self.go_on = asyncio.Event()

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        answer = await self.call(*args, **kwargs)
        if self.brought_a_job(answer):
            self.holding.set()
            await self.go_on.wait()
        return answer


async def close_while_held(worker: ChainingWorker, hold: Hold) -> None:
    await asyncio.wait_for(hold.holding.wait(), 10)
    closing = asyncio.ensure_future(worker.close())

    async def began_closing() -> bool:
        return bool(worker.closing)

    await wait_until(began_closing, 10, "the worker to begin closing")
    hold.go_on.set()
    await closing


async def test_a_job_fetched_as_the_worker_closes_is_given_back_unstarted(lane: Lane) -> None:
    """BullMQ's close waits for the fetch, not for the job it brings: that job must not be
    left active (its lock would expire and it would run again as a second attempt)."""
    ran: list[int] = []

    async def processor(job: Job, token: str) -> str:
        ran.append(JobHandle(job, token).attempt)
        return "done"

    lane.start(processor)
    assert lane.worker is not None
    hold = Hold(lane.worker.backend.moveToActive, lambda answer: bool(answer and answer[0]))
    lane.worker.backend.moveToActive = hold
    job = await lane.queue.add("j", {})
    await close_while_held(lane.worker, hold)
    await lane.stop()
    assert await lane.state(job.id) in ("waiting", "delayed")
    assert ran == []
    lane.start(processor)  # the next worker runs it as its first attempt
    await completed(lane, job.id)
    assert ran == [1]


async def test_a_job_chained_as_the_worker_closes_is_given_back_unstarted(lane: Lane) -> None:
    """Finishing a job fetched the next one just as the worker began to close."""
    ran: list[tuple[int, int]] = []

    async def processor(job: Job, token: str) -> str:
        ran.append((int(job.data["n"]), JobHandle(job, token).attempt))
        return "done"

    first = await lane.queue.add("j", {"n": 0})
    second = await lane.queue.add("j", {"n": 1})
    lane.start(processor)
    assert lane.worker is not None
    hold = Hold(
        lane.worker.backend.moveToCompleted,
        lambda answer: isinstance(answer, dict) and bool(answer.get("result")),
    )
    lane.worker.backend.moveToCompleted = hold
    await close_while_held(lane.worker, hold)
    await lane.stop()
    assert await lane.state(first.id) == "completed"
    assert await lane.state(second.id) in ("waiting", "delayed")
    assert ran == [(0, 1)]
    lane.start(processor)
    await completed(lane, second.id)
    assert ran == [(0, 1), (1, 1)]


async def test_close_waits_for_a_job_given_back_after_it_began(lane: Lane) -> None:
    """A job fetched just before ``close``, whose task the run loop starts just after: it is
    given back, and ``close`` returns only once that reached Redis (BullMQ's own waits for the
    tasks it saw when it began, and closes the connections under the give-back)."""
    ran: list[str] = []

    async def processor(job: Job, token: str) -> None:
        ran.append(job.data["n"])

    lane.start(processor, concurrency=2)
    worker = lane.worker
    assert worker is not None
    closing: list[asyncio.Future[None]] = []
    fetch = worker.getNextJob

    async def fetch_then_close(token: str) -> Job | None:
        job = await fetch(token)
        if job is not None and not closing:  # close lands between the fetch and its run
            closing.append(asyncio.ensure_future(worker.close()))
        return job

    worker.getNextJob = fetch_then_close  # type: ignore[method-assign]
    give_back = worker.backend.moveToDelayed

    async def slow_give_back(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.3)  # the round trip of a loaded Redis (latency, not a wait)
        return await give_back(*args, **kwargs)

    worker.backend.moveToDelayed = slow_give_back
    job = await lane.queue.add("j", {"n": "late"})

    async def began_closing() -> bool:
        return bool(closing)

    await wait_until(began_closing, 10, "the worker to begin closing")
    await closing[0]
    assert await lane.state(job.id) in ("waiting", "delayed")
    assert ran == []


async def test_a_job_scheduler_is_found_by_id_and_an_unknown_one_is_none(lane: Lane) -> None:
    await lane.queue.upsertJobScheduler("every-hour", {"every": 3_600_000}, "tick", {"n": 1}, {})
    found = await find_job_scheduler(lane.queue, "every-hour")
    assert found is not None
    assert found["every"] == 3_600_000
    assert await find_job_scheduler(lane.queue, "no-such-scheduler") is None


async def test_a_worker_finds_a_restarted_redis_within_two_seconds(tmp_path: Path) -> None:
    """The port's connections wait 2, 4, 8, 16 s between retries: after a 3 s outage its
    worker fetched nothing for 3 s more (7 s more after a 7 s outage, measured); ours retry
    from 0.1 s, doubling up to 2 s."""
    server = EmbeddedRedis(tmp_path / "redis", persist=True).start()
    lane = Lane(server.url)
    ran = asyncio.Event()

    async def note(job: Job, token: str) -> Any:
        ran.set()
        return None

    lane.start(note)
    try:
        await lane.queue.add("job", {})
        await asyncio.wait_for(ran.wait(), 10)
        ran.clear()
        server.stop()
        await asyncio.sleep(3)  # the outage itself: nothing to poll while Redis is away
        server.start()
        back = asyncio.get_running_loop().time()
        await lane.queue.add("job", {})
        await asyncio.wait_for(ran.wait(), 30)
        assert asyncio.get_running_loop().time() - back < 2.5
    finally:
        await lane.close()
        server.stop()


async def test_lanes_finish_jobs_through_a_batching_client_and_fetch_on_bullmqs_own(
    lane: Lane,
) -> None:
    """BullMQ's single connection made every lane's finish-and-fetch wait for the others'; the
    scripts go through an AutoPipeline, but the fetch that starts a lane (see the next test)."""

    async def double(job: Job, token: str) -> int:
        await asyncio.sleep(0.01)  # (so that the lanes finish together)
        return 2 * int(job.data["n"])

    jobs = await lane.queue.addBulk([{"name": "j", "data": {"n": n}} for n in range(200)])
    lane.start(double, concurrency=50)
    assert lane.worker is not None
    connection = lane.worker.redisConnection
    assert isinstance(connection.commands["moveToFinished"].registered_client, AutoPipeline)
    assert isinstance(connection.commands["extendLocks"].registered_client, AutoPipeline)
    assert connection.commands["moveToActive"].registered_client is connection.conn
    for job in jobs:
        await completed(lane, job.id)
    returned = [(await Job.fromId(lane.queue, job.id)).returnvalue for job in jobs]
    assert returned == [2 * n for n in range(200)]


async def lua_calls(redis_url: str) -> int:
    return (await snapshot(redis_url)).calls.get("evalsha", 0)


async def test_an_idle_worker_of_50_lanes_takes_a_job_with_a_few_lua_calls(
    own_redis: EmbeddedRedis,
) -> None:
    """After each job of an idle queue BullMQ starts a fetch for every free lane; batched, all
    50 ran as Lua calls (submit-to-complete p50 4.5 -> 8.4 ms); on BullMQ's connection the
    first to find the queue empty stops the rest."""
    lane = Lane(own_redis.url)
    ran = asyncio.Event()

    async def note(job: Job, token: str) -> None:
        ran.set()

    lane.start(note, concurrency=50)
    try:
        for _ in range(3):  # warm: the lanes' first fetches
            ran.clear()
            await lane.queue.add("j", {})
            await asyncio.wait_for(ran.wait(), 10)
        before = await lua_calls(own_redis.url)
        for _ in range(10):
            ran.clear()
            await lane.queue.add("j", {})
            await asyncio.wait_for(ran.wait(), 10)
        per_job = (await lua_calls(own_redis.url) - before) / 10
    finally:
        await lane.close()
    assert per_job < 10, f"{per_job} Lua calls per job (add, fetch, finish: ~3)"
