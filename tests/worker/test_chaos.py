"""Chaos (issue 14): two ``wfe worker`` processes are each killed with SIGKILL at a random moment
(and replaced), and their Redis is stopped and started again once, while executions whose nodes
have effects outside the engine run. Every accepted execution completes; node runs repeated
(at-least-once) are counted and reported per kill.

The parts are real: a private redis-server with an append-only file (a restart keeps the queue),
a SQLite store, the API in this process (ASGI transport), two ``wfe worker`` processes. The
effects are counted outside the system under test: ``reserve`` (the test plugin's ``record``
node) appends to a list on the session's Redis (never restarted), ``charge`` and ``ship``
(``http`` nodes) POST to a local HTTP server, ``ship`` to an endpoint that answers slowly.

The seed is random unless ``WFE_CHAOS_SEED`` is set; it is printed, and ``WFE_CHAOS_REPORT``
names a file to write the summary line to.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import redis.asyncio as aioredis

from tests.support.http_server import LocalHttpServer
from tests.support.processes import Process, start_worker, wait_until
from tests.support.services import RedisServer
from workflow_engine.api.app import create_app
from workflow_engine.api.services import Services
from workflow_engine.config import Settings
from workflow_engine.embedded_redis import EmbeddedRedis
from workflow_engine.events.model import Event, decode_entry
from workflow_engine.keys import Keys
from workflow_engine.store import StateStore
from workflow_engine.vocabulary import FINAL_STATUSES, ExecutionStatus

EXECUTIONS = 60
CONCURRENCY = 4  # per worker, on the workflow queue: the work outlasts the chaos
EFFECTFUL = ("reserve", "charge", "ship")
KILLS = 2
REDIS_RESTARTS = 1
WORKER_ENV = {
    "WFE_QUEUES__WORKFLOW__CONCURRENCY": str(CONCURRENCY),
    "WFE_SHUTDOWN_GRACE_S": "5",
}


def chaos_settings(redis_url: str, store_url: str) -> Settings:
    """As ``tests.conftest.make_settings``: a keyspace of its own, recovery fast enough for a
    test (a lock lost 3 s after its worker, looked for every second), loopback allowed."""
    return Settings(
        redis_url=redis_url,
        store_url=store_url,
        queue_prefix=f"t{uuid.uuid4().hex[:10]}",
        stalled_interval_ms=1000,
        lock_duration_ms=3000,
        shutdown_grace_s=5,
        worker_id="chaos-api",
        egress_allow="127.0.0.0/8,::1",
    )


async def recorded(redis_url: str, key: str) -> list[dict[str, Any]]:
    """What the ``record`` nodes appended to ``key``."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return [json.loads(x) for x in await client.lrange(key, 0, -1)]
    finally:
        await client.aclose()


async def events_of(settings: Settings, execution_id: str) -> list[Event]:
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        key = Keys(settings.queue_prefix).events(execution_id)
        # (decode_responses: str ids and fields, whatever the client's annotations say)
        entries = cast(list[tuple[str, dict[str, str]]], await client.xrange(key))
        return [decode_entry(execution_id, i, f) for i, f in entries]
    finally:
        await client.aclose()


@pytest.fixture
async def chaos_redis(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    """A redis-server of this test's own (the session's must not be restarted under the other
    tests), persistent: SIGTERM flushes its append-only file, a start on the same port loads
    it."""
    server = EmbeddedRedis(tmp_path / "chaos-redis", persist=True)
    await asyncio.to_thread(server.start)
    yield server
    await asyncio.to_thread(server.stop)


def effectful_workflow(records_url: str, key: str, base_url: str) -> dict[str, Any]:
    """reserve -> charge -> ship -> out. Each run of the first three is counted outside the
    engine, with the execution and the attempt that ran it; ``reserve`` works 0.3 s after
    recording and ``ship``'s endpoint answers in ~0.6 s, so that kills land mid-node."""
    whose = {"executionId": "{{ execution.id }}", "attempt": "{{ execution.attempt }}"}
    nodes: list[dict[str, Any]] = [
        {
            "id": "reserve",
            "type": "record",
            "inputs": {"redis_url": records_url, "key": key, "seconds": 0.3},
        },
        {
            "id": "charge",
            "type": "http",
            "inputs": {"method": "POST", "url": f"{base_url}/echo/charge", "json": whose},
        },
        {
            "id": "ship",
            "type": "http",
            "inputs": {
                "method": "POST",
                "url": f"{base_url}/trickle",
                "query": {"bytes": 6, "every": 0.1},
                "json": whose,
            },
        },
        {
            "id": "out",
            "type": "output",
            "inputs": {
                "value": "{{ [nodes.reserve.output.node, nodes.charge.output.status, "
                "nodes.ship.output.status] }}"
            },
        },
    ]
    edges = [
        {"source": "reserve", "target": "charge"},
        {"source": "charge", "target": "ship"},
        {"source": "ship", "target": "out"},
    ]
    return {"id": "chaos-effects", "nodes": nodes, "edges": edges}


EXPECTED_RESULT = ["reserve", 200, 200]


@dataclass
class Kill:
    worker_id: str
    pid: int
    at: float
    """Seconds after the first submit."""


@dataclass
class Chaos:
    """The worker processes, and what was done to them and to Redis."""

    settings: Settings
    redis: EmbeddedRedis
    rng: random.Random
    store: StateStore
    records_url: str
    records_key: str
    workers: dict[str, Process] = field(default_factory=dict)
    dead: dict[str, Process] = field(default_factory=dict)
    kills: list[Kill] = field(default_factory=list)
    redis_restarts: list[tuple[float, float]] = field(default_factory=list)
    """(seconds after the first submit, seconds down)"""
    spawned: int = 0

    async def spawn(self) -> None:
        self.spawned += 1
        worker_id = f"chaos-w{self.spawned}"
        self.workers[worker_id] = await asyncio.to_thread(
            start_worker, self.settings, WFE_WORKER_ID=worker_id, **WORKER_ENV
        )

    async def running_on(self, pid: int) -> bool:
        """Whether process ``pid`` is running an execution now: it made the last recorded run
        of an execution that has not finished."""
        last_pid: dict[str, int] = {}
        for entry in await recorded(self.records_url, self.records_key):
            last_pid[entry["executionId"]] = entry["pid"]
        for execution_id in [e for e, p in last_pid.items() if p == pid][-CONCURRENCY:]:
            record = await self.store.get(execution_id)
            if record is not None and record.status not in FINAL_STATUSES:
                return True
        return False

    async def kill(self, worker_id: str, t0: float) -> None:
        """SIGKILL ``worker_id`` at the first moment it runs an execution (at once, unless it
        has not taken a job since Redis came back: a worker's BullMQ connection waits out a
        back-off of seconds after Redis went away), then start its replacement."""
        victim = self.workers.pop(worker_id)
        pid = victim.proc.pid
        try:
            await wait_until(lambda: self.running_on(pid), 20, f"{worker_id} to run something")
        except AssertionError:
            raise AssertionError(
                f"{worker_id} took no job for 20 s:\n" + "\n".join(victim.lines[-40:])
            ) from None
        at = time.monotonic() - t0
        await asyncio.to_thread(victim.kill)  # SIGKILL
        self.dead[worker_id] = victim
        self.kills.append(Kill(worker_id, victim.proc.pid, at))
        print(f"chaos: t={at:.2f}s SIGKILL {worker_id} (pid {victim.proc.pid})")
        await self.spawn()  # its replacement

    async def restart_redis(self, t0: float) -> None:
        at = time.monotonic() - t0
        down = self.rng.uniform(0.5, 2.0)
        await asyncio.to_thread(self.redis.stop)
        await asyncio.sleep(down)  # Redis stays away this long: chaos, not a wait for something
        await asyncio.to_thread(self.redis.start)
        self.redis_restarts.append((at, down))
        print(f"chaos: t={at:.2f}s redis restarted after {down:.2f}s down")

    async def run(self, t0: float) -> None:
        """The first kill takes one of the two first workers, the second the other one (both
        die); the Redis restart comes before, between or after them. Each at a random moment in
        its own window, 1-2.5 s, 3.5-5 s, 6-7.5 s after the first submit (or as soon as the one
        before it is done); a kill waits further for its victim to be running something."""
        first_two = list(self.workers)
        self.rng.shuffle(first_two)
        plan = ["kill", "kill", "redis"]
        self.rng.shuffle(plan)
        for i, action in enumerate(plan):
            moment = t0 + 1.0 + 2.5 * i + self.rng.uniform(0, 1.5)
            await asyncio.sleep(max(0.0, moment - time.monotonic()))  # a random moment
            if action == "redis":
                await self.restart_redis(t0)
            else:
                await self.kill(first_two.pop(), t0)

    def logs(self) -> str:
        parts = []
        for worker_id, process in {**self.dead, **self.workers}.items():
            parts.append(f"--- {worker_id} (pid {process.proc.pid}):\n" + "\n".join(process.lines))
        return "\n".join(parts)

    async def stop(self) -> None:
        for process in self.workers.values():
            await asyncio.to_thread(process.stop)


async def submit_all(
    api: httpx.AsyncClient, definition: dict[str, Any], rng: random.Random, tag: str
) -> tuple[list[str], int]:
    """EXECUTIONS submits, a random short pause apart. A 503 (Redis away) is retried with the
    same idempotency key, as a client does; the ids accepted (202), and how many 503s."""
    accepted: list[str] = []
    refused = 0
    for i in range(EXECUTIONS):
        body = {"workflowDefinition": definition, "idempotencyKey": f"{tag}-{i}"}
        deadline = time.monotonic() + 30
        while True:
            response = await api.post("/api/workflow/execute", json=body)
            if response.status_code == 202:
                accepted.append(response.json()["executionId"])
                break
            assert response.status_code == 503, response.text
            refused += 1
            assert time.monotonic() < deadline, f"submit {i} still refused: {response.text}"
            await asyncio.sleep(0.2)  # the client's pause before it retries
        await asyncio.sleep(rng.uniform(0.02, 0.2))
    return accepted, refused


@dataclass
class Run:
    """One run of an effectful node, as the outside world saw it."""

    execution_id: str
    node_id: str
    attempt: int


async def effect_runs(records_url: str, records_key: str, server: LocalHttpServer) -> list[Run]:
    runs = [
        Run(r["executionId"], r["nodeId"], int(r["attempt"]))
        for r in await recorded(records_url, records_key)
    ]
    paths = {"/echo/charge": "charge", "/trickle": "ship"}
    for request in server.requests:
        if request.path in paths:
            sent = json.loads(request.body)
            runs.append(Run(sent["executionId"], paths[request.path], int(sent["attempt"])))
    return runs


async def test_two_kills_and_a_redis_restart_lose_no_execution(
    tmp_path: Path,
    chaos_redis: EmbeddedRedis,
    redis_server: RedisServer,
    http_server: LocalHttpServer,
) -> None:
    seed = int(os.environ.get("WFE_CHAOS_SEED") or random.SystemRandom().randrange(2**32))
    print(f"\nchaos: seed={seed} (WFE_CHAOS_SEED={seed} replays the same choices)")
    settings = chaos_settings(chaos_redis.url, f"sqlite:///{tmp_path}/wfe.db")
    # the records live on the session's Redis, which is never restarted
    records_key = f"{settings.queue_prefix}:chaos-effects"
    definition = effectful_workflow(redis_server.url, records_key, http_server.base_url)
    services = await Services.open(settings)
    chaos = Chaos(
        settings, chaos_redis, random.Random(seed), services.store, redis_server.url, records_key
    )
    started = time.monotonic()
    try:
        await asyncio.gather(chaos.spawn(), chaos.spawn())
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(settings, services)),
            base_url="http://api",
        ) as api:
            t0 = time.monotonic()
            (accepted, refused), _ = await asyncio.gather(
                submit_all(api, definition, random.Random(seed + 1), settings.queue_prefix),
                chaos.run(t0),
            )
            submitted_s = time.monotonic() - t0

            unfinished = set(accepted)

            async def all_finished() -> bool:
                for execution_id in list(unfinished):
                    record = await services.store.get(execution_id)
                    if record is not None and record.status in {"completed", "failed"}:
                        unfinished.discard(execution_id)
                return not unfinished

            try:
                await wait_until(all_finished, 60, "every accepted execution to finish")
            except AssertionError:
                statuses = {
                    execution_id: (record.status, record.attempts, record.error)
                    if (record := await services.store.get(execution_id)) is not None
                    else None
                    for execution_id in sorted(unfinished)
                }
                raise AssertionError(
                    f"seed {seed}: {len(unfinished)} executions never finished: {statuses}\n"
                    + chaos.logs()
                ) from None
            done_s = time.monotonic() - t0

            for execution_id in accepted:
                record = await services.store.get(execution_id)
                assert record is not None
                assert record.status is ExecutionStatus.COMPLETED, (
                    f"seed {seed}: {execution_id} {record.status}: {record.error}\n" + chaos.logs()
                )
                assert record.result == EXPECTED_RESULT
                nodes = await services.store.node_results(execution_id)
                assert {n.node_id: str(n.status) for n in nodes} == dict.fromkeys(
                    [*EFFECTFUL, "out"], "completed"
                )
            status = await api.get(f"/api/workflow/status/{accepted[-1]}")
            assert status.json()["context"]["status"] == "completed"
            # who ran which attempt of each execution (the started events survive the restart)
            attempt_worker: dict[tuple[str, int], str] = {}
            for execution_id in accepted:
                for event in await events_of(settings, execution_id):
                    if event.type == "execution.started":
                        key = (execution_id, int(event.data["attempt"]))
                        attempt_worker[key] = event.data["workerId"]
    finally:
        await chaos.stop()
        await services.close()

    assert len(chaos.kills) == KILLS
    assert len(chaos.redis_restarts) == REDIS_RESTARTS
    assert len(accepted) == EXECUTIONS

    runs = await effect_runs(redis_server.url, records_key, http_server)
    by_node: defaultdict[tuple[str, str], list[int]] = defaultdict(list)
    for run in runs:
        by_node[run.execution_id, run.node_id].append(run.attempt)
    missing = [
        (execution_id, node_id)
        for execution_id in accepted
        for node_id in EFFECTFUL
        if (execution_id, node_id) not in by_node
    ]
    assert not missing, f"seed {seed}: effectful nodes that never ran: {missing}"
    assert set(by_node) == {(e, n) for e in accepted for n in EFFECTFUL}  # nothing else ran

    # A repeated run is one beyond the first of its (execution, node). It is put down to the
    # process that ran the node before it: a kill when that process was killed.
    killed = {k.worker_id: i for i, k in enumerate(chaos.kills)}
    repeats_by_cause = Counter[str]()
    repeats_by_node = Counter[str]()
    for (execution_id, node_id), attempts in by_node.items():
        attempts.sort()
        repeats_by_node[node_id] += len(attempts) - 1
        for before, _again in itertools.pairwise(attempts):
            worker_id = attempt_worker.get((execution_id, before), "?")
            cause = f"kill{killed[worker_id] + 1}" if worker_id in killed else "other"
            repeats_by_cause[cause] += 1
        # a node runs again only after something stopped its run: at most once per disruption
        assert len(attempts) <= 1 + KILLS + REDIS_RESTARTS, (execution_id, attempts)
    # the executions each kill interrupted: an attempt of theirs ran on the victim, and a later
    # attempt finished them
    last_attempt: dict[str, int] = {}
    for execution_id, attempt in attempt_worker:
        last_attempt[execution_id] = max(attempt, last_attempt.get(execution_id, 0))
    interrupted = Counter[str]()
    for (execution_id, attempt), worker_id in attempt_worker.items():
        if worker_id in killed and attempt < last_attempt[execution_id]:
            interrupted[worker_id] += 1
    repeated = sum(repeats_by_cause.values())
    per_kill = ", ".join(
        f"kill{i + 1}={k.worker_id}@{k.at:.1f}s interrupted={interrupted[k.worker_id]} "
        f"repeated={repeats_by_cause[f'kill{i + 1}']}"
        for i, k in enumerate(chaos.kills)
    )
    restart_at, down = chaos.redis_restarts[0]
    line = (
        f"chaos: seed={seed} kills={KILLS} redis_restarts={REDIS_RESTARTS} "
        f"executions={len(accepted)} repeated_node_runs={repeated} "
        f"({repeated / KILLS:g} per kill)"
    )
    details = (
        f"chaos: {per_kill}; redis@{restart_at:.1f}s down={down:.1f}s "
        f"repeated_otherwise={repeats_by_cause['other']}; repeated_by_node="
        f"{','.join(f'{n}={repeats_by_node[n]}' for n in EFFECTFUL)}; "
        f"submits_refused_503={refused}; "
        f"submitted in {submitted_s:.1f}s, all completed {done_s:.1f}s after the first submit, "
        f"test {time.monotonic() - started:.1f}s"
    )
    print(line)
    print(details)
    report = os.environ.get("WFE_CHAOS_REPORT")
    if report:
        await asyncio.to_thread(Path(report).write_text, f"{line}\n{details}\n")
    for kill in chaos.kills:  # each kill landed in the middle of some runs
        assert interrupted[kill.worker_id] >= 1, (seed, kill, interrupted)
