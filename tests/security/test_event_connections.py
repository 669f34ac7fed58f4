"""Finding 6: a burst of WebSocket subscriptions waits for Redis connections instead of dropping
clients (``MaxConnectionsError``), and ``/reconnect`` keeps answering meanwhile (Redis is
healthy: never a 503)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import websockets

from tests.conftest import make_settings
from tests.support.live import held_chain, is_final, ws_receive
from tests.support.processes import wait_until
from tests.support.served import served
from tests.support.services import RedisServer
from workflow_engine.api.app import create_app
from workflow_engine.api.services import Services
from workflow_engine.config import Settings
from workflow_engine.queue.submit import Submission
from workflow_engine.worker.worker import WorkerService

SOCKETS = 150  # redis-py's plain asyncio pool fails past 100 connections at once


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
