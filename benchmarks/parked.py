"""Parked executions at scale: what one worker holds while many executions wait for input, and
how fast they finish when all are answered at once.

    python -m benchmarks.parked [--count 100000] [--store sqlite|postgres] [--concurrency 64]
                                [--in-flight 256] [--resume-in-flight N] [--timeout 1800]

On a private Redis (EmbeddedRedis, no persistence) and a fresh store (a SQLite file by default;
``--store postgres``: a private database on ``WFE_TEST_POSTGRES_URL``'s server, else
``postgresql://postgres@127.0.0.1:5432``, dropped at the end), with ONE ``wfe worker`` process:

1. submit ``count`` executions of a workflow whose first node is ``wait_input`` (the shape of
   tests/worker/test_parked_scale.py) through the Submitter, ``in_flight`` at a time;
2. wait, polling with a deadline, until all are parked: ``waiting`` in the store and each one a
   delayed job in Redis; print the time to park them all (first submit to all parked), the
   worker's RSS and peak RSS (``VmRSS``/``VmHWM``) and Redis ``used_memory``;
3. answer every one at once through ``Resumer.resume`` (what ``POST /api/workflow/resume/{id}``
   calls), ``resume_in_flight`` (default ``in_flight``) at a time, the ones refused as
   ``StoreUnavailable`` (a 503 from the API) counted and answered again one at a time, and wait
   until all are completed; print the resume calls/s,
   the completed executions/s from the first resume to the last completion, and the worker's
   memory afterwards.

The target (issue 21): peak worker RSS under 300 MB at 100,000 parked executions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from benchmarks.service import WFE, env_for
from benchmarks.stats import cpu_seconds
from workflow_engine.api.services import Services
from workflow_engine.config import Settings
from workflow_engine.embedded_redis import EmbeddedRedis, free_port
from workflow_engine.queue.submit import Submission
from workflow_engine.store.errors import StoreUnavailable

RSS_TARGET_MB = 300
DEFINITION: dict[str, Any] = {
    "id": "ask_a_number",
    "nodes": [
        {
            "id": "ask",
            "type": "wait_input",
            "inputs": {"prompt": "A number?", "schema": {"type": "integer"}},
        },
        {"id": "double", "type": "output", "inputs": {"value": "{{ nodes.ask.output * 2 }}"}},
    ],
    "edges": [{"source": "ask", "target": "double"}],
}


def memory_mb(pid: int) -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident memory of a process, in MB."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in {"VmRSS", "VmHWM"}:
            values[name] = int(rest.split()[0]) / 1024
    return values


async def redis_used_mb(redis_url: str) -> float:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        info: dict[str, Any] = await client.info("memory")
    finally:
        await client.aclose()
    return float(info["used_memory"]) / 1024 / 1024


async def poll(
    check: Callable[[], Awaitable[bool]], timeout: float, what: str, every: float = 0.25
) -> None:
    """Poll ``check`` until it is true; a TimeoutError naming ``what`` past the deadline."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(every)


def worker_env(settings: Settings, concurrency: int, metrics_port: int) -> dict[str, str]:
    return env_for(
        settings,
        WFE_METRICS_PORT=str(metrics_port),
        WFE_QUEUES__WORKFLOW__CONCURRENCY=str(concurrency),
        WFE_TENANT_MAX_ACTIVE="0",
    )


async def start_worker(settings: Settings, concurrency: int) -> subprocess.Popen[bytes]:
    """One ``wfe worker`` on the workflow queue, once its ``/ready`` probe answers 200."""
    port = free_port()
    proc = subprocess.Popen(
        [WFE, "worker", "--queues", "workflow"],
        env=worker_env(settings, concurrency, port),
        stdout=subprocess.DEVNULL,
    )
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2) as client:

        async def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"wfe worker exited with code {proc.returncode}")
            try:
                return (await client.get("/ready")).status_code == 200
            except httpx.TransportError:
                return False

        await poll(ready, 60, "the worker to be ready", every=0.05)
    return proc


async def gather_limited(count: int, in_flight: int, one: Callable[[int], Awaitable[None]]) -> None:
    """``one(0)`` .. ``one(count - 1)``, at most ``in_flight`` at a time (a fixed pool of tasks,
    not ``count`` tasks at once)."""
    position = 0

    async def lane() -> None:
        nonlocal position
        while position < count:
            i = position
            position += 1
            await one(i)

    await asyncio.gather(*(lane() for _ in range(min(in_flight, count))))


async def park_and_resume(
    settings: Settings,
    count: int,
    concurrency: int,
    in_flight: int,
    resume_in_flight: int,
    timeout: float,
) -> dict[str, Any]:
    services = await Services.open(settings)
    worker: subprocess.Popen[bytes] | None = None
    try:
        worker = await start_worker(settings, concurrency)
        pid = worker.pid
        idle = memory_mb(pid)
        print(f"worker pid {pid} ready: RSS {idle['VmRSS']:.0f} MB", flush=True)
        ids: list[str] = [""] * count

        async def submit(i: int) -> None:
            submitted = await services.submitter.submit(Submission(DEFINITION))
            ids[i] = submitted.execution_id

        worker_cpu = cpu_seconds(pid)
        started = time.perf_counter()
        await gather_limited(count, in_flight, submit)
        submitted_s = time.perf_counter() - started
        print(f"submitted {count} in {submitted_s:.1f}s ({count / submitted_s:.0f}/s)", flush=True)

        async def all_parked() -> bool:  # recorded waiting, and each a delayed job in Redis
            if worker is not None and worker.poll() is not None:
                raise RuntimeError(f"wfe worker exited with code {worker.returncode}")
            waiting = (await services.store.count_by_status())["waiting"]
            delayed = (await services.queues.counts())["workflow"]["delayed"]
            return waiting == delayed == count

        await poll(all_parked, timeout, f"{count} executions to park", every=0.5)
        park_s = time.perf_counter() - started
        parked = memory_mb(pid)
        park_cpu_ms = (cpu_seconds(pid) - worker_cpu) * 1000 / count
        worker_cpu, own_cpu = cpu_seconds(pid), cpu_seconds(os.getpid())
        redis_parked = await redis_used_mb(settings.redis_url)
        print(
            f"{count} parked in {park_s:.1f}s (first submit to all parked): worker RSS "
            f"{parked['VmRSS']:.0f} MB, peak {parked['VmHWM']:.0f} MB; "
            f"Redis used_memory {redis_parked:.0f} MB",
            flush=True,
        )

        refused: list[int] = []  # what the API would answer 503 (StoreUnavailable, say)

        async def resume(i: int) -> None:
            try:
                await services.resumer.resume(ids[i], None, None, i)
            except StoreUnavailable:
                refused.append(i)

        before = (await services.store.count_by_status())["completed"]
        started = time.perf_counter()
        await gather_limited(count, resume_in_flight, resume)
        resumed_s = time.perf_counter() - started
        resume_cpu_ms = (cpu_seconds(os.getpid()) - own_cpu) * 1000 / count
        print(
            f"resumed {count} in {resumed_s:.1f}s ({count / resumed_s:.0f} calls/s, "
            f"{resume_in_flight} at a time); refused as store unavailable: {len(refused)}",
            flush=True,
        )
        for i in refused:  # answered again one at a time, as a client retrying would
            await services.resumer.resume(ids[i], None, None, i)

        async def all_completed() -> bool:
            if worker is not None and worker.poll() is not None:
                raise RuntimeError(f"wfe worker exited with code {worker.returncode}")
            counts = await services.store.count_by_status()
            if counts["failed"]:
                raise RuntimeError(f"{counts['failed']} executions failed")
            return counts["completed"] - before >= count

        await poll(all_completed, timeout, f"{count} executions to complete", every=0.25)
        completed_s = time.perf_counter() - started
        finish_cpu_ms = (cpu_seconds(pid) - worker_cpu) * 1000 / count
        after = memory_mb(pid)
        redis_after = await redis_used_mb(settings.redis_url)
        for i in (0, count // 2, count - 1):  # a sample checked end to end
            record = await services.store.get(ids[i])
            if record is None or record.result != i * 2:
                raise RuntimeError(f"execution {ids[i]} ended {record}, not with {i * 2}")
        print(
            f"{count} completed {completed_s:.1f}s after the first resume "
            f"({count / completed_s:.0f} executions/s): worker RSS {after['VmRSS']:.0f} MB, "
            f"peak {after['VmHWM']:.0f} MB; Redis used_memory {redis_after:.0f} MB",
            flush=True,
        )
        print(
            f"CPU per execution: worker {park_cpu_ms:.2f} ms to run and park it, "
            f"{finish_cpu_ms:.2f} ms to resume and complete it; the resume call "
            f"{resume_cpu_ms:.2f} ms (this process: Resumer.resume as the API runs it); "
            f"machine load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
            flush=True,
        )
        verdict = "under" if parked["VmHWM"] < RSS_TARGET_MB else "OVER"
        print(f"peak RSS while parked {parked['VmHWM']:.0f} MB: {verdict} {RSS_TARGET_MB} MB")
        return {
            "count": count,
            "worker_concurrency": concurrency,
            "submit_per_s": count / submitted_s,
            "park_s": park_s,
            "worker_idle_rss_mb": idle["VmRSS"],
            "parked_rss_mb": parked["VmRSS"],
            "parked_peak_rss_mb": parked["VmHWM"],
            "parked_redis_used_mb": redis_parked,
            "worker_cpu_ms_per_park": park_cpu_ms,
            "worker_cpu_ms_per_completion": finish_cpu_ms,
            "resume_call_cpu_ms": resume_cpu_ms,
            "resume_calls_per_s": count / resumed_s,
            "resume_refused": len(refused),
            "resume_to_completed_s": completed_s,
            "completed_per_s": count / completed_s,
            "after_rss_mb": after["VmRSS"],
            "after_peak_rss_mb": after["VmHWM"],
            "after_redis_used_mb": redis_after,
        }
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        await services.close()


async def store_url_for(store: str, tmp: str) -> str:
    """A fresh store: a SQLite file in ``tmp``, or a private PostgreSQL database (drop it with
    ``benchmarks.dbos_peer.drop_database``)."""
    from benchmarks import service

    if store == "sqlite":
        return f"sqlite:///{tmp}/{store}-{time.time_ns()}.db"
    if store != "postgres":
        raise ValueError(f"unknown store {store!r}: sqlite or postgres")
    url = await service.postgres_url()
    if url is None:
        raise RuntimeError("PostgreSQL is unreachable")
    return url


async def run(
    count: int = 100_000,
    store: str = "sqlite",
    concurrency: int = 64,
    in_flight: int = 256,
    timeout: float = 1800,
    resume_in_flight: int | None = None,
) -> dict[str, Any]:
    """Park ``count`` executions with one worker, then resume them all; the figures."""
    from benchmarks import dbos_peer

    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedRedis(Path(tmp) / "redis", persist=False) as redis,
    ):
        store_url = await store_url_for(store, tmp)
        settings = Settings(
            redis_url=redis.url,
            store_url=store_url,
            queue_prefix=f"parked{time.time_ns()}",
            tenant_max_active=0,  # 100,000 in flight at once: past the default cap of 10,000
        )
        print(
            f"{count} parked executions, {store}, one worker (concurrency {concurrency}), "
            f"private redis-server on {redis.url}",
            flush=True,
        )
        try:
            results = await park_and_resume(
                settings, count, concurrency, in_flight, resume_in_flight or in_flight, timeout
            )
        finally:
            if store == "postgres":
                with contextlib.suppress(Exception):
                    await dbos_peer.drop_database(store_url)
    return {"store": store, **results}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--concurrency", type=int, default=64, help="the worker's, workflow queue")
    parser.add_argument("--in-flight", type=int, default=256, help="submits/resumes at a time")
    parser.add_argument(
        "--resume-in-flight", type=int, help="resumes at a time (default: --in-flight)"
    )
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per phase")
    args = parser.parse_args()
    runner: Any = asyncio.run
    try:  # as `wfe api` and `wfe worker` run: on uvloop when it is installed
        import uvloop

        runner = uvloop.run
    except ImportError:
        pass
    runner(
        run(
            args.count,
            args.store,
            args.concurrency,
            args.in_flight,
            args.timeout,
            args.resume_in_flight,
        )
    )


if __name__ == "__main__":
    main()
