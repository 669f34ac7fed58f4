"""Rolling restart without loss (issue 21): two ``wfe api`` processes behind nginx (the real
deploy/nginx/nginx.conf, upstream and listen address swapped as in test_nginx.py) and two
``wfe worker`` processes, on the session's private Redis (a keyspace of its own) and a fresh
PostgreSQL database. A client submits executions through nginx at a steady pace while every
worker, then every API process, is replaced one at a time: SIGTERM, wait for it to exit (on its
own, code 0), start a new one on the same port, wait for its /ready, then the next.

What must hold: every submit got its 202 (no 5xx, no connection error: one API process is
always up); every accepted execution completes; none ran twice; nothing else was created.
"Ran twice" is judged outside the system under test: each execution's two ``record`` nodes
(the test plugin) append {executionId, nodeId, attempt, pid} to a Redis list when they run, so
the list must hold exactly one entry per node per execution, all attempt 1. The store must say
``attempts`` 1 for each, and each execution's event stream must hold one ``execution.started``
(a worker that hands a job back before starting it publishes none: that is allowed).

Each submit carries an idempotency key of its own (a client could retry one safely), but none
is retried: nginx never passes a POST on to another process once it was sent, and the client
counts any failure. So the executions in the store must be exactly the accepted ones.

nginx marks an upstream that failed 3 times down for 10 s (``max_fails=3 fail_timeout=10s``),
in each nginx worker process on its own. Before the next API process is stopped, every nginx
worker that the replaced one failed must have had an answer from the new one, or have waited
out ``fail_timeout`` (then it tries it again): otherwise it could find no live upstream at all.
nginx's error log (which worker, when) and access log (with the nginx worker's pid added to
its format, the one other change to the file) say when.

This test found two ways a POST failed (503 from nginx) while an API process was replaced,
both fixed in ``workflow_engine/serve.py`` (``DrainingServer``, ``KEEP_ALIVE_S``): uvicorn
closed idle upstream connections at SIGTERM ("recv() failed (104: Connection reset by peer)
while reading response header from upstream") and after 5 s idle, as nginx reused them
("upstream prematurely closed connection while reading response header").
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from tests.conftest import REQUIRE_POSTGRES, make_settings
from tests.deploy.test_nginx import CONF, nginx_argv, render
from tests.support.processes import Process, start_api, start_worker, wait_http, wait_until
from tests.support.services import (
    RedisServer,
    create_postgres_database,
    drop_postgres_database,
    free_port,
)
from workflow_engine.config import Settings
from workflow_engine.events.model import EXECUTION_STARTED, entry_type
from workflow_engine.keys import Keys
from workflow_engine.store import open_store

PER_TICK = 1  # submits every TICK_S: 50/s, about what 2 workers on 2 CPUs keep up with
TICK_S = 0.02
RECORD_S = 0.1  # the first record node works this long after recording
DELAY_S = 0.1  # then a delay node: ~0.2 s per execution, so some run at every restart
MAX_IN_FLIGHT = 16  # a tick skips its submits while this many wait for answers
WORKERS = 2
APIS = 2
EXECUTE = "/api/workflow/execute"
_FAIL_TIMEOUT = re.search(r"max_fails=\d+ fail_timeout=(\d+)s;", CONF.read_text())
assert _FAIL_TIMEOUT is not None
FAIL_TIMEOUT_S = int(_FAIL_TIMEOUT.group(1))
ERROR_LINE = re.compile(
    r"^(\S+ \S+) \[\w+\] (\d+)#\d+: .*upstream: \"http://127\.0\.0\.1:(\d+)/", re.MULTILINE
)
LOG_LINE = re.compile(r'"(\S+) (\S+) [^"]*" (\d{3}) .* pid=(\d+) upstream=([^ ,]+(?:, [^ ,]+)*) ')


@pytest.fixture
def postgres_store() -> Iterator[str]:
    """A fresh PostgreSQL database of the test's own, dropped afterwards."""
    url = asyncio.run(create_postgres_database())
    if url is None:
        if REQUIRE_POSTGRES:
            pytest.fail("PostgreSQL is required (WFE_REQUIRE_POSTGRES=1) but cannot be reached")
        pytest.skip("PostgreSQL cannot be reached")
    yield url
    asyncio.run(drop_postgres_database(url))


def counted_workflow(settings: Settings, key: str) -> dict[str, Any]:
    """record (counted, then 0.1 s of work) -> delay 0.1 s -> record (counted) -> output."""
    redis_url = settings.redis_url
    return {
        "id": "rolling",
        "nodes": [
            {
                "id": "first",
                "type": "record",
                "inputs": {"redis_url": redis_url, "key": key, "seconds": RECORD_S},
            },
            {"id": "pause", "type": "delay", "inputs": {"seconds": DELAY_S}},
            {"id": "last", "type": "record", "inputs": {"redis_url": redis_url, "key": key}},
            {"id": "out", "type": "output", "inputs": {"value": "{{ inputs.n }}"}},
        ],
        "edges": [
            {"source": "first", "target": "pause"},
            {"source": "pause", "target": "last"},
            {"source": "last", "target": "out"},
        ],
    }


@dataclass
class Load:
    """Submits ``PER_TICK`` executions every ``TICK_S`` through nginx, each with an
    idempotency key of its own, without waiting for the answers before the next tick (but
    not past ``MAX_IN_FLIGHT`` unanswered: on a busy machine the pace drops rather than the
    client queueing submits for ever)."""

    client: httpx.AsyncClient
    definition: dict[str, Any]
    accepted: dict[int, str] = field(default_factory=dict)
    """Submit number -> execution id, for each 202."""
    errors: list[str] = field(default_factory=list)
    sent: int = 0
    skipped: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def _submit(self, n: int) -> None:
        body = {
            "workflowDefinition": self.definition,
            "inputs": {"n": n},
            "idempotencyKey": f"r{n}",
        }
        sent = time.strftime("%H:%M:%S")
        try:
            response = await self.client.post(EXECUTE, json=body)
        except httpx.HTTPError as exc:
            self.errors.append(f"#{n} sent {sent}, {time.strftime('%H:%M:%S')}: {exc!r}")
            return
        if response.status_code != 202:
            answer = f"{response.status_code} {response.text[:300]}"
            self.errors.append(f"#{n} sent {sent}, {time.strftime('%H:%M:%S')}: {answer}")
            return
        self.accepted[n] = response.json()["executionId"]

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        in_flight: set[asyncio.Task[None]] = set()
        next_tick = loop.time()
        while not self.stop.is_set():
            for _ in range(PER_TICK):
                if len(in_flight) >= MAX_IN_FLIGHT:
                    self.skipped += 1
                    continue
                task = asyncio.ensure_future(self._submit(self.sent))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                self.sent += 1
            next_tick = max(next_tick + TICK_S, loop.time())  # behind: no burst to catch up
            await asyncio.sleep(next_tick - loop.time())  # the pace, not a wait for a condition
        await asyncio.gather(*in_flight)


@dataclass
class NginxLogs:
    """nginx's access log (which upstream answered what, through which nginx worker process)
    and error log (which upstream failed for which nginx worker, when)."""

    access: Path
    errors: Path

    def size(self) -> int:
        return self.access.stat().st_size

    def entries(self, since: int) -> list[tuple[str, str, int, str, list[str]]]:
        """(method, uri, status, nginx pid, upstream addresses tried) after byte ``since``."""
        with self.access.open("rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
        found = []
        for line in text.splitlines():
            m = LOG_LINE.search(line)
            if m:
                method, uri, status, pid, upstreams = m.groups()
                found.append((method, uri, int(status), pid, upstreams.split(", ")))
        return found

    def failures(self, port: int) -> dict[str, float]:
        """nginx worker pid -> when (epoch seconds) the upstream on ``port`` last failed it."""
        last: dict[str, float] = {}
        for m in ERROR_LINE.finditer(self.errors.read_text()):
            when, pid, failed_port = m.groups()
            if int(failed_port) == port:
                last[pid] = time.mktime(time.strptime(when, "%Y/%m/%d %H:%M:%S"))
        return last

    def back_in_rotation(self, port: int, since_ready: int) -> bool:
        """Every nginx worker that the upstream on ``port`` failed (while it was replaced) has
        had an answer from it after byte ``since_ready``, or has waited out ``fail_timeout``
        since and will try it again."""
        address = f"127.0.0.1:{port}"
        answered = {
            pid
            for _, _, status, pid, upstreams in self.entries(since_ready)
            if upstreams[-1] == address and status < 500
        }
        now = time.time()
        return all(
            # (the log has whole seconds, and nginx was seen to wait a second more)
            pid in answered or now > failed + FAIL_TIMEOUT_S + 3
            for pid, failed in self.failures(port).items()
        )


class Stack:
    """The processes, each replaceable."""

    def __init__(self, settings: Settings, tmp_path: Path) -> None:
        self.settings = settings
        self.tmp_path = tmp_path
        self.api_ports = [free_port() for _ in range(APIS)]
        self.apis: list[Process] = []
        self.workers: list[Process] = []
        self.worker_ports: list[int] = []
        self.retired_apis: list[Process] = []
        self.retired_workers: list[Process] = []
        self.started = 0
        self._ids = threading.Lock()
        self.nginx: subprocess.Popen[bytes] | None = None
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.began = time.monotonic()
        self.timeline: list[str] = []
        self.log = NginxLogs(tmp_path / "access.log", tmp_path / "error.log")

    def start_api(self, index: int) -> Process:
        port = self.api_ports[index]
        process = start_api(self.settings, port)
        wait_http(f"http://127.0.0.1:{port}/ready")
        return process

    def start_worker(self) -> tuple[Process, int]:
        port = free_port()
        with self._ids:
            self.started += 1
            worker_id = f"w{self.started}"
        process = start_worker(self.settings, WFE_WORKER_ID=worker_id, WFE_METRICS_PORT=str(port))
        wait_http(f"http://127.0.0.1:{port}/ready")
        return process, port

    def start(self) -> None:
        with ThreadPoolExecutor(APIS + WORKERS) as pool:  # (starting one is mostly imports)
            apis = [pool.submit(self.start_api, i) for i in range(APIS)]
            workers = [pool.submit(self.start_worker) for _ in range(WORKERS)]
            self.apis = [f.result() for f in apis]
            for f in workers:
                process, port = f.result()
                self.workers.append(process)
                self.worker_ports.append(port)
        text = render(self.api_ports, self.port)
        fmt = "upstream=$upstream_addr"
        assert text.count(fmt) == 1
        conf = self.tmp_path / "nginx.conf"
        conf.write_text(text.replace(fmt, f"pid=$pid {fmt}"))
        with self.log.access.open("w") as out, self.log.errors.open("w") as err:
            self.nginx = subprocess.Popen(
                nginx_argv(self.tmp_path, conf, "-g", "daemon off;"), stdout=out, stderr=err
            )
        wait_http(f"{self.base}/nginx-health")

    def stop(self) -> None:
        if self.nginx is not None:
            self.nginx.terminate()
            self.nginx.wait(timeout=10)
        for process in [*self.apis, *self.workers]:
            process.stop()
        # what each process said, for a failure's post-mortem (pytest keeps tmp_path)
        for kind, processes in (
            ("api", [*self.retired_apis, *self.apis]),
            ("worker", [*self.retired_workers, *self.workers]),
        ):
            for process in processes:
                out = self.tmp_path / f"{kind}-{process.proc.pid}.log"
                out.write_text("\n".join(process.lines))

    def note(self, what: str) -> None:
        wall = time.time()
        at = time.strftime("%H:%M:%S", time.localtime(wall)) + f".{int(wall % 1 * 1000):03d}"
        self.timeline.append(f"{at} (+{time.monotonic() - self.began:.1f}s) {what}")

    def nginx_errors(self) -> str:
        return self.log.errors.read_text()


def finished_after_stop(process: Process) -> int:
    """Executions a worker process finished after it was told to stop (it logs "worker
    stopping" when the signal arrives): those running at SIGTERM, let finish."""
    said = process.lines
    stopping = next(i for i, line in enumerate(said) if "worker stopping" in line)
    return sum("execution finished" in line for line in said[stopping:])


async def running_on(settings: Settings, key: str, pid: int) -> bool:
    """Whether an execution is in its first node on the worker process ``pid`` (recorded by
    ``first``, not yet by ``last``), judging by the last records."""
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        recent = [json.loads(x) for x in await client.lrange(key, -500, -1)]
    finally:
        await client.aclose()
    first = {r["executionId"] for r in recent if r["nodeId"] == "first" and r["pid"] == pid}
    return bool(first - {r["executionId"] for r in recent if r["nodeId"] == "last"})


async def replace_worker(stack: Stack, index: int, key: str) -> None:
    old = stack.workers[index]

    async def running() -> bool:
        return await running_on(stack.settings, key, old.proc.pid)

    await wait_until(running, 30, f"an execution running on worker {old.proc.pid}")
    stack.note(f"SIGTERM worker {old.proc.pid}")
    old.signal(signal.SIGTERM)
    assert await asyncio.to_thread(old.wait_exit, stack.settings.shutdown_grace_s + 15) == 0
    stack.note(f"worker {old.proc.pid} exited, {finished_after_stop(old)} finished after SIGTERM")
    stack.retired_workers.append(old)
    new, port = await asyncio.to_thread(stack.start_worker)
    stack.workers[index], stack.worker_ports[index] = new, port
    stack.note(f"worker {new.proc.pid} ready")


async def replace_api(stack: Stack, index: int) -> None:
    old, port = stack.apis[index], stack.api_ports[index]
    stack.note(f"SIGTERM api {old.proc.pid} on {port}")
    old.signal(signal.SIGTERM)
    assert await asyncio.to_thread(old.wait_exit, 20) == 0
    stack.note(f"api {old.proc.pid} exited")
    stack.retired_apis.append(old)
    stack.apis[index] = await asyncio.to_thread(stack.start_api, index)
    since_ready = stack.log.size()
    stack.note(f"api {stack.apis[index].proc.pid} ready on {port}")

    async def back() -> bool:
        return stack.log.back_in_rotation(port, since_ready)

    await wait_until(back, 30, f"nginx to send requests to the new API process on {port}")
    stack.note(f"nginx sends requests to {port} again")


async def started_events(settings: Settings, execution_ids: list[str]) -> Counter[str]:
    """How many ``execution.started`` events each execution's stream holds."""
    keys = Keys(settings.queue_prefix)
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        pipe = client.pipeline(transaction=False)
        for execution_id in execution_ids:
            pipe.xrange(keys.events(execution_id))
        streams = await pipe.execute()
    finally:
        await client.aclose()
    return Counter(
        {
            execution_id: sum(entry_type(fields) == EXECUTION_STARTED for _, fields in entries)
            for execution_id, entries in zip(execution_ids, streams, strict=True)
        }
    )


async def recorded(settings: Settings, key: str) -> list[dict[str, Any]]:
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        return [json.loads(x) for x in await client.lrange(key, 0, -1)]
    finally:
        await client.aclose()


@pytest.mark.timeout(240)  # ~40 s on an idle machine; much more when others load it
async def test_a_rolling_restart_under_load_loses_and_repeats_nothing(
    redis_server: RedisServer, postgres_store: str, tmp_path: Path
) -> None:
    # production's lock and stall timings: a job is never taken from a live worker here
    settings = make_settings(
        redis_server.url, postgres_store, lock_duration_ms=30_000, stalled_interval_ms=30_000
    )
    key = f"{settings.queue_prefix}:runs"
    store = open_store(settings.store_url)
    stack = Stack(settings, tmp_path)
    began = time.monotonic()
    try:
        await asyncio.to_thread(stack.start)
        setup_s = time.monotonic() - began
        async with httpx.AsyncClient(
            base_url=stack.base,
            timeout=30,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        ) as client:
            load = Load(client, counted_workflow(settings, key))
            loading = asyncio.ensure_future(load.run())
            try:

                async def some_completed() -> bool:
                    return (await store.count_by_status()).get("completed", 0) >= 50

                await wait_until(some_completed, 30, "the first executions to complete")
                stack.note("the first executions completed")
                for index in range(WORKERS):
                    await replace_worker(stack, index, key)
                for index in range(APIS):
                    await replace_api(stack, index)

                async def new_ones_work() -> bool:  # the last new processes took part too
                    ran = {r["pid"] for r in await recorded(settings, key)}
                    return {w.proc.pid for w in stack.workers} <= ran

                await wait_until(new_ones_work, 30, "the new workers to run executions")
            finally:
                load.stop.set()
                await loading
        load_s = time.monotonic() - began - setup_s
        assert load.errors == [], (
            f"{len(load.errors)} of {load.sent} submits failed:\n"
            + "\n".join(load.errors[:20])
            + "\n"
            + "\n".join(stack.timeline)
            + f"\nnginx said:\n{stack.nginx_errors()[-3000:]}"
        )
        assert len(load.accepted) == load.sent
        ids = list(load.accepted.values())
        assert len(set(ids)) == len(ids)  # one execution per submit

        async def all_ended() -> bool:
            counts = await store.count_by_status()
            return counts.get("completed", 0) + counts.get("failed", 0) >= len(ids) and not (
                counts.get("pending", 0) or counts.get("running", 0)
            )

        try:
            await wait_until(all_ended, 60, f"{len(ids)} executions to end")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the store has {await store.count_by_status()}") from None
        drained_s = time.monotonic() - began - setup_s - load_s
        counts = {k: v for k, v in (await store.count_by_status()).items() if v}
        assert counts == {"completed": len(ids)}  # all completed, nothing else recorded
        records = (await store.list_executions(None, limit=len(ids) + 1)).items
        assert {r.execution_id for r in records} == set(ids)
        assert Counter(r.attempts for r in records) == {1: len(ids)}
        runs = await recorded(settings, key)
        per_node = Counter((r["executionId"], r["nodeId"]) for r in runs)
        twice = {k: v for k, v in per_node.items() if v != 1}
        assert twice == {}, f"nodes run more than once: {list(twice.items())[:10]}"
        assert set(per_node) == {(i, node) for i in ids for node in ("first", "last")}
        assert Counter(r["attempt"] for r in runs) == {1: 2 * len(ids)}
        started = await started_events(settings, ids)
        assert Counter(started.values()) == {1: len(ids)}
        # every restart landed among running executions, and every process took part
        stopping = [finished_after_stop(p) for p in stack.retired_workers]
        assert len(stopping) == WORKERS
        assert all(stopping), stopping
        pids = Counter(r["pid"] for r in runs)
        every_worker = [*stack.workers, *stack.retired_workers]
        assert {w.proc.pid for w in every_worker} <= set(pids), pids
        upstreams = Counter(
            upstreams[-1]
            for method, uri, status, _, upstreams in stack.log.entries(0)
            if method == "POST" and status == 202
        )
        assert set(upstreams) == {f"127.0.0.1:{p}" for p in stack.api_ports}
        print(
            f"\nrolling restart: {load.sent} submits (ticks skipped {load.skipped} at the cap), "
            "all accepted and completed once; "
            f"setup {setup_s:.1f}s, load {load_s:.1f}s, drain {drained_s:.1f}s; "
            f"finished after each worker's SIGTERM: {stopping}; per API: {dict(upstreams)}\n"
            + "\n".join(stack.timeline)
        )
    finally:
        await asyncio.to_thread(stack.stop)
        await store.close()


async def http_get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """GET /health on an open connection; the response's head (status line and headers)."""
    writer.write(b"GET /health HTTP/1.1\r\nHost: api\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
    assert length is not None, head
    await asyncio.wait_for(reader.readexactly(int(length.group(1))), 10)
    return head


async def test_a_stopping_api_process_answers_a_request_on_an_idle_connection(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """What nginx does at the worst moment: a request on a kept-alive connection right after
    the process began to stop. It gets its answer, with ``Connection: close``, not a reset."""
    settings = make_settings(redis_server.url, f"sqlite:///{tmp_path}/wfe.db")
    port = free_port()
    api = start_api(settings, port)
    try:
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/ready")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            assert b"connection: close" not in (await http_get(reader, writer)).lower()
            api.signal(signal.SIGTERM)

            async def refused() -> bool:  # the listening socket is closed: it is stopping
                try:
                    _, probe = await asyncio.open_connection("127.0.0.1", port)
                except ConnectionRefusedError:
                    return True
                probe.close()
                await probe.wait_closed()
                return False

            await wait_until(refused, 20, "the API process to stop listening")
            head = await http_get(reader, writer)
            assert head.startswith(b"HTTP/1.1 200"), head
            assert b"connection: close" in head.lower()
            assert await asyncio.wait_for(reader.read(), 10) == b""  # then it closes it
        finally:
            writer.close()
            await writer.wait_closed()
        assert await asyncio.to_thread(api.wait_exit, 20) == 0
    finally:
        api.stop()
