"""Durability with worker processes as a user runs them: a parked delay resumes on another
worker, and a chaos run of ``kill -9`` loses nothing and re-runs only nodes in flight."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import Counter
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis

from tests.support.processes import Process, start_worker, wait_until
from tests.worker.test_runner import records
from workflow_engine.api.services import Services
from workflow_engine.config import Settings
from workflow_engine.events.model import Event, decode_entry
from workflow_engine.queue.submit import Submission
from workflow_engine.vocabulary import ExecutionStatus


async def events_of(settings: Settings, execution_id: str) -> list[Event]:
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        key = f"{settings.queue_prefix}:wfe:events:{execution_id}"
        return [decode_entry(execution_id, i, f) for i, f in await client.xrange(key)]
    finally:
        await client.aclose()


def moment(event: Event) -> float:
    return datetime.fromisoformat(event.timestamp).timestamp()


async def test_a_parked_2s_delay_resumes_on_another_worker_within_2_5s(
    services: Services,
) -> None:
    settings = services.settings
    env = {"WFE_PARK_AFTER_S": "1"}
    workers = {
        name: await asyncio.to_thread(start_worker, settings, WFE_WORKER_ID=name, **env)
        for name in ("first", "second")
    }
    try:
        definition = {
            "id": "nap",
            "nodes": [
                {"id": "nap", "type": "delay", "inputs": {"seconds": 2}},
                {"id": "done", "type": "output", "inputs": {"value": "awake"}},
            ],
            "edges": [{"source": "nap", "target": "done"}],
        }
        submitted = await services.submitter.submit(Submission(definition))
        execution_id = submitted.execution_id

        async def parked() -> list[Event] | None:
            events = await events_of(settings, execution_id)
            return events if any(e.type == "execution.waiting" for e in events) else None

        events = await wait_until(parked, 20, "the execution to park")
        parker = next(e for e in events if e.type == "execution.started").data["workerId"]
        # the worker that parked it leaves: only the other one can resume it
        assert await asyncio.to_thread(workers.pop(parker).stop) == 0

        async def completed() -> list[Event] | None:
            events = await events_of(settings, execution_id)
            return events if events[-1].type == "execution.completed" else None

        events = await wait_until(completed, 20, "the execution to complete")
    finally:
        for worker in workers.values():
            await asyncio.to_thread(worker.stop)
    waiting = next(e for e in events if e.type == "execution.waiting")
    started = [e for e in events if e.type == "execution.started"]
    assert len(started) == 2
    resumed = started[1]
    assert resumed.data["resumed"] is True
    assert resumed.data["workerId"] != parker
    latency = moment(resumed) - moment(waiting)
    assert latency <= 2.5, f"resumed {latency:.2f}s after parking"
    record = await services.store.get(execution_id)
    assert record is not None
    assert record.status is ExecutionStatus.COMPLETED
    assert record.result == "awake"


CHAOS_EXECUTIONS = 200
RECORDING_NODES = 9


def chaos_workflow(settings: Settings, key: str) -> dict[str, Any]:
    """Nine recording nodes in a chain, then an output of what they returned: ten nodes."""
    nodes: list[dict[str, Any]] = [
        {
            "id": f"n{i}",
            "type": "record",
            "inputs": {"redis_url": settings.redis_url, "key": key, "seconds": 0.05},
        }
        for i in range(RECORDING_NODES)
    ]
    names = ", ".join(f"nodes.n{i}.output.node" for i in range(RECORDING_NODES))
    nodes.append({"id": "out", "type": "output", "inputs": {"value": f"{{{{ [{names}] }}}}"}})
    edges = [
        {"source": f"n{i}", "target": f"n{i + 1}" if i + 1 < RECORDING_NODES else "out"}
        for i in range(RECORDING_NODES)
    ]
    return {"id": "chaos", "nodes": nodes, "edges": edges}


async def test_chaos_kill_9_loses_no_execution_and_reruns_only_nodes_in_flight(
    services: Services,
) -> None:
    settings = services.settings
    key = f"{settings.queue_prefix}:chaos"
    env = {
        "WFE_MAX_STALLED_COUNT": "1000",  # a job may be caught in many kills
        "WFE_LOCK_DURATION_MS": "4000",
        "WFE_QUEUES__WORKFLOW__CONCURRENCY": "8",
    }
    rng = random.Random(5)
    spawned = 0

    def spawn() -> Process:
        nonlocal spawned
        spawned += 1
        return start_worker(settings, WFE_WORKER_ID=f"chaos{spawned}", **env)

    workers = [await asyncio.to_thread(spawn) for _ in range(3)]
    killed_pids: set[int] = set()
    definition = chaos_workflow(settings, key)
    ids = [
        (await services.submitter.submit(Submission(definition))).execution_id
        for _ in range(CHAOS_EXECUTIONS)
    ]

    async def unfinished() -> int:
        counts = await services.store.count_by_status()
        return sum(counts[s] for s in ("pending", "running", "waiting"))

    try:
        kills = 0
        while await unfinished() and kills < 10:
            await asyncio.sleep(rng.uniform(0.3, 1.2))  # a random moment
            victim = workers.pop(rng.randrange(len(workers)))
            killed_pids.add(victim.proc.pid)
            await asyncio.to_thread(victim.kill)
            kills += 1
            workers.append(await asyncio.to_thread(spawn))

        async def all_finished() -> bool:
            return await unfinished() == 0

        await wait_until(all_finished, 120, "every execution to finish")
    finally:
        for worker in workers:
            await asyncio.to_thread(worker.stop)

    expected = [f"n{i}" for i in range(RECORDING_NODES)]
    for execution_id in ids:
        record = await services.store.get(execution_id)
        assert record is not None
        assert record.status is ExecutionStatus.COMPLETED, (execution_id, record.error)
        assert record.result == expected

    runs: dict[str, list[tuple[int, int]]] = {}
    for entry in await records(settings, key):
        runs.setdefault(entry["executionId"], []).append((int(entry["nodeId"][1:]), entry["pid"]))
    interrupted = 0
    reruns = Counter[str]()
    for execution_id in ids:
        calls = runs[execution_id]
        # split the calls by the process that made them, in order
        segments: list[list[tuple[int, int]]] = []
        for call in calls:
            if segments and segments[-1][-1][1] == call[1]:
                segments[-1].append(call)
            else:
                segments.append([call])
        for segment in segments:
            indices = [i for i, _ in segment]
            assert indices == list(range(indices[0], indices[0] + len(indices))), calls
        for before, after in itertools.pairwise(segments):
            assert before[-1][1] in killed_pids, calls  # only a killed process leaves a run
            last, first = before[-1][0], after[0][0]
            # the next run starts with the node in flight (again) or the one after it: a node
            # whose successor had started never runs again
            assert first in (last, last + 1), calls
            if first == last:
                reruns[execution_id] += 1
        assert segments[-1][-1][0] == RECORDING_NODES - 1, calls
        interrupted += len(segments) > 1
    print(
        f"chaos: {kills} kills, {interrupted} executions interrupted and resumed, "
        f"{sum(reruns.values())} in-flight nodes re-run"
    )
    assert interrupted >= 5  # the kills did land in the middle of runs
