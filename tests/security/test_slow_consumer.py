"""Finding 12 (slow consumer): a client that stops reading while a burst of large events
arrives is cut off with the documented close code 1013, after what was already sent."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import redis.asyncio as aioredis
import websockets

from tests.conftest import make_settings
from tests.support.live import ws_receive
from tests.support.processes import wait_until
from tests.support.served import served
from tests.support.services import RedisServer
from workflow_engine.api.app import create_app
from workflow_engine.api.services import Services
from workflow_engine.queue.submit import Submission
from workflow_engine.worker.worker import WorkerService


async def test_a_client_that_stops_reading_gets_1013(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    settings = make_settings(redis_server.url, f"sqlite:///{tmp_path}/wfe.db", ws_queue_size=5)
    services = await Services.open(settings)
    worker = WorkerService(settings, services.store)
    await worker.start()
    redis = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    key = f"k{uuid.uuid4().hex[:6]}"
    hold = {"redis_url": settings.redis_url, "key": key, "seconds": 60}
    big = "x" * 100_000  # every node event carries it: megabytes, past the socket buffers
    nodes = [{"id": "wait", "type": "hold", "inputs": hold}]
    nodes += [{"id": f"n{i}", "type": "echo", "inputs": {"i": i, "big": big}} for i in range(40)]
    edges = [{"source": "wait", "target": f"n{i}"} for i in range(40)]
    try:
        async with served(create_app(settings, services)) as address:
            submitted = await services.submitter.submit(
                Submission({"id": "burst", "nodes": nodes, "edges": edges})
            )
            await wait_until(lambda: redis.llen(f"{key}:entered"), 20, "the hold node")
            # max_queue=1: the client library stops reading the socket when the app does
            async with websockets.connect(
                f"ws://{address}/ws/slow", max_queue=1, max_size=None
            ) as socket:
                await socket.send(
                    json.dumps({"type": "subscribe", "executionId": submitted.execution_id})
                )
                await ws_receive(socket, lambda e: e["type"] == "node.started")
                await redis.rpush(f"{key}:release", "go")

                async def finished() -> bool:
                    record = await services.store.get(submitted.execution_id)
                    return record is not None and record.status == "completed"

                await wait_until(finished, 30, "the burst to be over")
                codes: list[int] = []
                try:
                    while True:
                        await socket.recv()
                except websockets.ConnectionClosed as closed:
                    codes.append(closed.rcvd.code if closed.rcvd is not None else 1006)
                assert codes == [1013]
    finally:
        await worker.stop(grace=1)
        await worker.executor.aclose()
        await services.close()
        await redis.aclose()
