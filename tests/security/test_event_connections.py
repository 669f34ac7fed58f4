"""Event connections under stress. Finding 6: a burst of WebSocket subscriptions waits for Redis
connections instead of dropping clients (``MaxConnectionsError``), and ``/reconnect`` keeps
answering meanwhile (Redis is healthy: never a 503). SSE while Redis is unreachable or stalled:
a 503 with ``Retry-After`` before the stream starts, not an empty 200. A WebSocket client that
stops reading: closed with 1013 and the reason, not dropped."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast
from unittest.mock import ANY

import httpx
import pytest
import redis.asyncio as aioredis
import websockets

from tests.conftest import make_settings
from tests.support.live import held_chain, is_final, sse_read, ws_receive
from tests.support.processes import wait_until
from tests.support.served import served
from tests.support.services import RedisServer
from workflow_engine.api.app import create_app
from workflow_engine.api.services import Services
from workflow_engine.config import Settings
from workflow_engine.embedded_redis import EmbeddedRedis
from workflow_engine.events.model import FIELD, encode_entry
from workflow_engine.queue.submit import Submission
from workflow_engine.vocabulary import iso, now_ms
from workflow_engine.worker.worker import WorkerService

SOCKETS = 150  # redis-py's plain asyncio pool fails past 100 connections at once
PAUSE_MS = 4000


@pytest.fixture
async def running(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[tuple[Services, str]]:
    settings = make_settings(redis_server.url, f"sqlite:///{tmp_path}/wfe.db")
    services = await Services.open(settings)
    worker = WorkerService(settings, services.store)
    await worker.start()
    try:
        async with served(create_app(settings, services)) as address:
            yield services, address
    finally:
        await worker.stop(grace=1)
        await worker.executor.aclose()
        await services.close()


def _started(node: str) -> Any:
    return lambda e: e["type"] == "node.started" and e["data"]["nodeId"] == node


async def test_150_subscriptions_at_once_all_get_their_events(
    running: tuple[Services, str],
) -> None:
    services, address = running
    settings: Settings = services.settings
    key = f"k{uuid.uuid4().hex[:6]}"
    submitted = await services.submitter.submit(
        Submission(held_chain(settings, key), client_id="tab")
    )
    execution_id = submitted.execution_id
    redis = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    sockets = await asyncio.gather(
        *(websockets.connect(f"ws://{address}/ws/tab") for _ in range(SOCKETS))
    )
    try:
        await wait_until(lambda: redis.llen(f"{key}:1:entered"), 20, "h1 to start")
        # Redis holds every command for a second (a busy moment): meanwhile each subscription
        # and each reconnect holds a connection, 170 at once. Half the sockets follow the
        # execution, half the whole client.
        await redis.client_pause(1000)
        messages = [
            {"type": "subscribe", "executionId": execution_id} if i % 2 else {"type": "subscribe"}
            for i in range(SOCKETS)
        ]
        async with httpx.AsyncClient(base_url=f"http://{address}") as http:
            reconnects = [http.get("/api/workflow/reconnect/tab") for _ in range(20)]
            sends = [s.send(json.dumps(m)) for s, m in zip(sockets, messages, strict=True)]
            answers = await asyncio.gather(*reconnects, *sends)
        statuses = [a.status_code for a in answers[:20]]
        assert statuses == [200] * 20
        firsts = await asyncio.gather(*(ws_receive(s, _started("h1"), 30) for s in sockets))
        assert all(got[0]["type"] == "execution.queued" for got in firsts)
        await redis.rpush(f"{key}:1:release", "go")
        await wait_until(lambda: redis.llen(f"{key}:2:entered"), 20, "h2 to start")
        await redis.rpush(f"{key}:2:release", "go")
        rests = await asyncio.gather(*(ws_receive(s, is_final, 30) for s in sockets))
        everything = [i for i, _ in await redis.xrange(services.redis_keys.events(execution_id))]
        for first, rest in zip(firsts, rests, strict=True):
            assert [e["id"] for e in first + rest] == everything  # each socket: all, once
    finally:
        await asyncio.gather(*(s.close() for s in sockets))
        await redis.aclose()


# -- SSE while Redis is unreachable: 503 before the stream starts ----------------------------

ONE_NODE = {"id": "one", "nodes": [{"id": "a", "type": "echo", "inputs": {}}], "edges": []}
UNAVAILABLE = "Redis is unreachable; nothing was changed, retry later"


@pytest.fixture
async def persistent_redis(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    """A Redis of this test's own, which it stops and starts again; its streams survive."""
    server = EmbeddedRedis(tmp_path / "redis", persist=True).start()
    yield server
    server.stop()


async def _ended_execution(services: Services) -> tuple[str, list[str]]:
    """An execution whose stream holds its queued and its final event (written here: no
    worker runs it); its id and the stream's ids."""
    submitted = await services.submitter.submit(Submission(ONE_NODE))
    key = services.redis_keys.events(submitted.execution_id)
    await wait_until(lambda: services.redis.xlen(key), 10, "the queued event")
    done = encode_entry("execution.completed", iso(now_ms() / 1000) or "", {"result": None})
    await services.redis.xadd(key, {FIELD: done})
    return submitted.execution_id, await _stream_ids(services, key)


async def _stream_ids(services: Services, key: str) -> list[str]:
    entries: list[tuple[str, dict[str, str]]] = cast(Any, await services.redis.xrange(key))
    return [entry_id for entry_id, _ in entries]


def _assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"error": {"code": "unavailable", "message": ANY, "details": []}}


async def test_sse_while_redis_is_down_is_503_then_replays_once_it_is_back(
    persistent_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    """Redis stopped, the store up (the execution is found): a 503 with the error shape and
    ``Retry-After`` before the stream starts, not a 200 that ends empty. Once Redis is back
    the same request replays the stream."""
    settings = make_settings(persistent_redis.url, f"sqlite:///{tmp_path}/wfe.db")
    services = await Services.open(settings)
    try:
        async with served(create_app(settings, services)) as address:
            execution_id, ids = await _ended_execution(services)
            url = f"http://{address}/api/workflow/events/{execution_id}"
            persistent_redis.stop()  # the store is up: the execution is found
            async with httpx.AsyncClient(timeout=httpx.Timeout(20)) as client:
                started = time.monotonic()
                down = await client.get(url)
            assert time.monotonic() - started < 5  # an answer, not a hang
            _assert_unavailable(down)
            assert down.json()["error"]["message"] == UNAVAILABLE
            persistent_redis.start()
            events = await sse_read(url, {}, until=None)
            assert [e["id"] for e in events] == ids
            assert events[-1]["type"] == "execution.completed"
    finally:
        await services.close()


async def test_sse_while_redis_does_not_answer_is_503_in_bounded_time(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Redis accepts connections but holds every command (``CLIENT PAUSE``, as a stalled or
    overloaded server does): the request is refused after a short wait, not hung."""
    settings = make_settings(redis_server.url, f"sqlite:///{tmp_path}/wfe.db")
    services = await Services.open(settings)
    redis = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        async with served(create_app(settings, services)) as address:
            execution_id, ids = await _ended_execution(services)
            url = f"http://{address}/api/workflow/events/{execution_id}"
            await redis.client_pause(PAUSE_MS)
            async with httpx.AsyncClient(timeout=httpx.Timeout(20)) as client:
                started = time.monotonic()
                stalled = await client.get(url)
            assert time.monotonic() - started < PAUSE_MS / 1000  # refused before Redis answered
            _assert_unavailable(stalled)
            await redis.client_unpause()
            events = await sse_read(url, {}, until=None)
            assert [e["id"] for e in events] == ids
    finally:
        await redis.client_unpause()
        await redis.aclose()
        await services.close()


# -- a WebSocket client that stops reading: closed with 1013 ----------------------------------

QUEUE_SIZE = 5
CHUNK = "x" * 256_000
TOO_SLOW = "too slow: reconnect and resume from lastEventId"


def _burst() -> int:
    """Events enough for twice what can wait in the socket buffers: the server's send buffer
    grows up to ``net.ipv4.tcp_wmem``'s maximum, the client's receive buffer is kept small."""
    try:
        most = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, ValueError, IndexError):
        most = 4 * 2**20
    return 2 * (most + 2**20) // len(CHUNK) + QUEUE_SIZE


async def _stalled_socket(address: str) -> socket.socket:
    """A connected socket whose receive buffer stays small (set before the handshake, so the
    kernel does not grow it): a client that stops reading fills it at once."""
    host, port = address.rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    return sock


async def _subscribe(client: Any, execution_id: str, after: str | None = None) -> None:
    message: dict[str, Any] = {"type": "subscribe", "executionId": execution_id}
    if after is not None:
        message["lastEventId"] = after
    await client.send(json.dumps(message))


async def _read_until_closed(
    client: Any, timeout: float = 20
) -> tuple[list[dict[str, Any]], int, str]:
    """Every event the client still gets, then the close code and reason (1006: none)."""
    got: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                message = json.loads(await client.recv())
                if message.get("type") != "heartbeat":
                    got.append(message)
    except websockets.ConnectionClosed as closed:
        if closed.rcvd is None:  # the connection dropped without a close frame
            return got, 1006, ""
        return got, closed.rcvd.code, closed.rcvd.reason
    except TimeoutError:
        raise AssertionError(f"not closed within {timeout} s, after {len(got)} events") from None


def _number(i: int) -> Any:
    return lambda e: e["type"] == "node.stream" and e["data"]["i"] == i


async def test_a_websocket_client_that_stops_reading_is_closed_with_1013(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Over a real socket: one client stops reading while large events arrive live, one at a
    time (each waits until a second client, which keeps reading, has it: the hub delivers one
    entry at a time, never a burst bigger than the queue). Once the socket buffers are full the
    server's sends wait, the slow client's queue of 5 fills, and the next event cuts it off:
    when it reads again it gets what was sent, then a close frame 1013 with the reason; it
    resumes from its last event id and misses nothing. The reading client is not affected."""
    settings = make_settings(
        redis_server.url, f"sqlite:///{tmp_path}/wfe.db", ws_queue_size=QUEUE_SIZE
    )
    services = await Services.open(settings)
    submitted = await services.submitter.submit(Submission(ONE_NODE))
    execution_id = submitted.execution_id
    key = services.redis_keys.events(execution_id)
    try:
        async with (
            served(create_app(settings, services)) as address,
            websockets.connect(
                f"ws://{address}/ws/slow",
                sock=await _stalled_socket(address),
                compression=None,  # the bytes sent are the bytes buffered
                max_queue=1,  # the library stops reading the socket when the test does
                max_size=None,
                ping_interval=None,
            ) as slow,
            websockets.connect(f"ws://{address}/ws/fast", compression=None, max_size=None) as fast,
        ):
            for client in (slow, fast):
                await _subscribe(client, execution_id)
                await ws_receive(client, lambda e: e["type"] == "execution.queued")
            burst = _burst()
            for i in range(burst):  # the slow client reads none of these for now
                entry = encode_entry(
                    "node.stream", iso(now_ms() / 1000) or "", {"i": i, "c": CHUNK}
                )
                await services.redis.xadd(key, {FIELD: entry})
                await ws_receive(fast, _number(i))
            ids = await _stream_ids(services, key)
            got, code, reason = await _read_until_closed(slow)
            assert (code, reason) == (1013, TOO_SLOW)
            # what it got: the stream's first events, in order, and not all of them
            assert 0 < len(got) < burst
            assert [e["id"] for e in got] == ids[1 : len(got) + 1]
            # it resumes from its last event id: the rest, once
            async with websockets.connect(f"ws://{address}/ws/slow", max_size=None) as again:
                await _subscribe(again, execution_id, got[-1]["id"])
                rest = await ws_receive(again, _number(burst - 1))
            assert [e["id"] for e in got + rest] == ids[1:]
            # the client that kept reading is still served
            await services.redis.xadd(key, {FIELD: encode_entry("node.stream", "", {"i": burst})})
            await ws_receive(fast, _number(burst))
    finally:
        await services.redis.delete(key)
        await services.close()
