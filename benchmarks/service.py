"""The service's pieces of ``python -m benchmarks``: raw BullMQ and the engine, on the same
private Redis.

- ``raw_bullmq``: no-op jobs/s of 1 or 2 plain Python bullmq worker processes (the ceiling for
  a Python worker), first to last completion;
- ``engine_drain``: a trivial 3-node workflow recorded and queued by the Submitter, then
  drained by `wfe worker` processes; first start to last completion, from the store;
- ``engine_latency``: one execution at a time, submit until its final event arrives;
- ``through_api``: executions/s through `wfe api` on a socket (httpx client, 16 in flight).

Every worker is a separate `wfe worker` process; logs at WARNING.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from workflow_engine.api.services import Services
from workflow_engine.config import Settings
from workflow_engine.embedded_redis import free_port
from workflow_engine.events.model import decode_entry
from workflow_engine.keys import Keys
from workflow_engine.queue.submit import Submission

WFE = str(Path(sys.executable).with_name("wfe"))
THREE_NODES = {
    "id": "bench3",
    "nodes": [
        {"id": "a", "type": "transform", "inputs": {"value": "{{ inputs.n }}"}},
        {"id": "b", "type": "transform", "inputs": {"value": "{{ nodes.a.output + 1 }}"}},
        {"id": "c", "type": "output", "inputs": {"value": "{{ nodes.b.output * 2 }}"}},
    ],
    "edges": [{"source": "a", "target": "b"}, {"source": "b", "target": "c"}],
}
CONCURRENCY = 50
WARM_UP = 20

RAW_WORKER = f"""
import asyncio, sys
from bullmq import Worker
async def noop(job, token):
    return None
async def main():
    options = {{"connection": sys.argv[1], "concurrency": {CONCURRENCY}, "prefix": sys.argv[3]}}
    worker = Worker(sys.argv[2], noop, options)
    await asyncio.Event().wait()
try:
    import uvloop; uvloop.run(main())
except ImportError:
    asyncio.run(main())
"""


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    """A ``wfe`` process's environment: this one's without WFE_ variables, the settings the
    benchmark chose, then ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFE_")}
    env.update(
        WFE_REDIS_URL=settings.redis_url,
        WFE_STORE_URL=settings.store_url,
        WFE_QUEUE_PREFIX=settings.queue_prefix,
        WFE_LOG_LEVEL="WARNING",
        WFE_QUEUES__WORKFLOW__CONCURRENCY=str(CONCURRENCY),
    )
    env.update(extra)
    return env


async def wait_for(
    check: Callable[[], Awaitable[bool]], timeout: float, every: float = 0.005
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark step did not finish")
        await asyncio.sleep(every)


async def span_seconds(services: Services, ids: list[str]) -> float:
    """From the first start to the last completion, as the store recorded them (through the
    store's API: the same for every backend)."""
    records = await asyncio.gather(*(services.store.get(i) for i in ids))
    first = min(r.started_at for r in records if r is not None and r.started_at is not None)
    last = max(r.completed_at for r in records if r is not None and r.completed_at is not None)
    return float(last - first) / 1000


async def raw_bullmq(redis_url: str, n: int, workers: int) -> float:
    from bullmq import Queue

    prefix = f"raw{time.monotonic_ns()}"
    queue = Queue("raw", {"connection": redis_url, "prefix": prefix})
    for start in range(0, n, 1000):
        await queue.addBulk([{"name": "noop", "data": {}} for _ in range(min(1000, n - start))])
    procs = [
        subprocess.Popen([sys.executable, "-c", RAW_WORKER, redis_url, "raw", prefix])
        for _ in range(workers)
    ]

    async def drained() -> bool:
        counts: dict[str, int] = await queue.getJobCounts("completed")
        return counts["completed"] >= n

    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        await wait_for(drained, 600)
        # BullMQ scores its completed set by finish time: first to last finish, as the engine's
        # rate is taken from its records (worker start-up is not part of either)
        completed = f"{prefix}:raw:completed"
        first = await client.zrange(completed, 0, 0, withscores=True)
        last = await client.zrange(completed, -1, -1, withscores=True)
        elapsed = (float(last[0][1]) - float(first[0][1])) / 1000
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        await queue.obliterate(force=True)
        await queue.close()
        await client.aclose()
    return n / elapsed


async def engine_drain(settings: Settings, services: Services, n: int, workers: int) -> float:
    """Executions recorded and queued first; then worker processes drain them. The rate is
    taken from the store's own timestamps (first start to last completion)."""
    semaphore = asyncio.Semaphore(64)
    ids: list[str] = []

    async def one(i: int) -> None:
        async with semaphore:
            submitted = await services.submitter.submit(Submission(THREE_NODES, {"n": i}))
            ids.append(submitted.execution_id)

    before = await services.store.count_by_status()
    await asyncio.gather(*(one(i) for i in range(n)))
    procs = [
        subprocess.Popen(
            [WFE, "worker", "--queues", "workflow"],
            env=env_for(settings),
            stderr=subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]

    async def drained() -> bool:
        counts = await services.store.count_by_status()
        done = counts["completed"] + counts["failed"]
        return done - before["completed"] - before["failed"] >= n

    try:
        await wait_for(drained, 600, every=0.25)  # seldom: the store is what is measured
    finally:
        for p in procs:
            p.terminate()
            p.wait()
    counts = await services.store.count_by_status()
    assert counts["completed"] - before["completed"] >= n, counts
    return n / await span_seconds(services, ids)


async def engine_latency(
    settings: Settings,
    services: Services,
    n: int,
    definition: dict[str, Any] = THREE_NODES,
) -> list[float]:
    """One at a time, a worker waiting: ms from submit (durable record + job) until the
    execution's final event arrives (it is written after the outcome is committed). The event
    is awaited with a blocking XREAD, so the measurement adds no polling delay."""
    proc = subprocess.Popen(
        [WFE, "worker", "--queues", "workflow"], env=env_for(settings), stderr=subprocess.DEVNULL
    )
    reader = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    keys = Keys(settings.queue_prefix)
    samples: list[float] = []
    try:
        for i in range(n + WARM_UP):
            t0 = time.perf_counter()
            submitted = await services.submitter.submit(Submission(definition, {"n": i}))
            stream = keys.events(submitted.execution_id)
            position, final = "0-0", None
            while final is None:
                reply: Any = await reader.xread({stream: position}, block=30_000)
                if not reply:
                    raise TimeoutError(f"{submitted.execution_id} did not finish")
                for entry_id, fields in reply[0][1]:
                    position = entry_id
                    event = decode_entry(submitted.execution_id, entry_id, fields)
                    if event.final:
                        final = event
            if final.type != "execution.completed":
                raise RuntimeError(f"{submitted.execution_id} ended {final.type}")
            if i >= WARM_UP:  # the first ones wait for the worker to connect and warm up
                samples.append((time.perf_counter() - t0) * 1000)
    finally:
        proc.terminate()
        proc.wait()
        await reader.aclose()
    return samples


async def through_api(settings: Settings, services: Services, n: int, workers: int) -> float:
    port = free_port()
    env = env_for(settings) | {"WFE_PORT": str(port)}
    api = subprocess.Popen([WFE, "api"], env=env, stderr=subprocess.DEVNULL)
    procs = [
        subprocess.Popen(
            [WFE, "worker", "--queues", "workflow"],
            env=env_for(settings),
            stderr=subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:

            async def up() -> bool:
                try:
                    return (await client.get("/health")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for(up, 30)
            before = (await services.store.count_by_status())["completed"]
            semaphore = asyncio.Semaphore(16)

            async def one(i: int) -> None:
                async with semaphore:
                    r = await client.post(
                        "/api/workflow/execute",
                        json={"workflowDefinition": THREE_NODES, "inputs": {"n": i}},
                    )
                    assert r.status_code == 202, r.text

            started = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(n)))

            async def drained() -> bool:
                return (await services.store.count_by_status())["completed"] - before >= n

            await wait_for(drained, 600)
            return n / (time.perf_counter() - started)
    finally:
        for p in [api, *procs]:
            p.terminate()
            p.wait()


async def postgres_url() -> str | None:
    try:
        import asyncpg
    except ImportError:
        return None
    admin = os.environ.get("WFE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    name = f"wfe_bench_{os.getpid()}"
    try:
        conn = await asyncpg.connect(admin, timeout=5)
    except OSError:
        return None
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return admin.rsplit("/", 1)[0] + "/" + name
