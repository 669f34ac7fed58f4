"""Issue 14, finding 13: events published while Redis was down are not lost for good. A client
replaying the stream after the outage sees every node's final event (rebuilt from the store,
marked ``recovered``), then the execution's."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any, cast

import pytest
import redis.asyncio as aioredis

from tests.conftest import make_settings
from tests.support.http_server import LocalHttpServer
from tests.support.processes import wait_until
from workflow_engine.api.services import Services
from workflow_engine.embedded_redis import EmbeddedRedis
from workflow_engine.events.model import decode_entry
from workflow_engine.queue.submit import Submission
from workflow_engine.vocabulary import ExecutionStatus
from workflow_engine.worker.worker import WorkerService


@pytest.fixture
async def durable_redis(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    """A Redis of this test's own that keeps its data over a restart (append-only file)."""
    server = EmbeddedRedis(tmp_path / "redis", persist=True).start()
    yield server
    server.stop()


def workflow(server: LocalHttpServer) -> dict[str, Any]:
    """``call`` streams a body the test releases piece by piece: the outage starts while it
    runs, and ``call``, ``after`` and ``out`` all end while Redis is down."""
    return {
        "id": "outage",
        "nodes": [
            {"id": "first", "type": "transform", "inputs": {"value": "{{ 1 + 1 }}"}},
            {"id": "call", "type": "http", "inputs": {"url": f"{server.base_url}/chunks"}},
            {"id": "after", "type": "transform", "inputs": {"value": "{{ nodes.call.output }}"}},
            {"id": "out", "type": "output", "inputs": {"value": "{{ nodes.after.output }}"}},
        ],
        "edges": [
            {"source": "first", "target": "call"},
            {"source": "call", "target": "after"},
            {"source": "after", "target": "out"},
        ],
    }


async def node_events(client: aioredis.Redis, key: str, execution_id: str) -> dict[str, Any]:
    """Node id -> data of its final event; and ``$final`` -> the execution's final event."""
    found: dict[str, Any] = {}
    for entry_id, fields in cast(Any, await client.xrange(key)):
        event = decode_entry(execution_id, entry_id, fields)
        if event.type in {"node.completed", "node.failed", "node.skipped"}:
            found[event.data["nodeId"]] = event.data
        elif event.final:
            found["$final"] = event
    return found


async def test_node_events_lost_in_a_redis_outage_are_written_again(
    durable_redis: EmbeddedRedis, http_server: LocalHttpServer, tmp_path: Path
) -> None:
    settings = make_settings(durable_redis.url, f"sqlite:///{tmp_path}/wfe.db")
    services = await Services.open(settings)
    worker = WorkerService(settings, services.store, ["workflow"])
    await worker.start()
    reader = aioredis.Redis.from_url(durable_redis.url, decode_responses=True)
    try:
        submitted = await services.submitter.submit(Submission(workflow(http_server)))
        execution_id = submitted.execution_id
        key = services.redis_keys.events(execution_id)

        async def first_piece_sent() -> bool:
            return http_server.pieces_sent >= 1 and "first" in await node_events(
                reader, key, execution_id
            )

        await wait_until(first_piece_sent, 20, "the http node to be streaming")
        durable_redis.stop()
        for sent in (2, 3):  # the rest of the body, while Redis is down
            http_server.send_next.set()
            await wait_until(partial(_at_least, http_server, sent), 10, f"piece {sent}")

        async def completed() -> bool:
            record = await services.store.get(execution_id)
            return record is not None and record.status is ExecutionStatus.COMPLETED

        await wait_until(completed, 20, "the execution to complete with Redis down")
        durable_redis.start()
        await reader.aclose()  # its connection went with the server
        reader = aioredis.Redis.from_url(durable_redis.url, decode_responses=True)

        async def every_node_told() -> dict[str, Any] | None:
            found = await node_events(reader, key, execution_id)
            return found if {"first", "call", "after", "out", "$final"} <= set(found) else None

        found = await wait_until(every_node_told, 30, "every node's final event")
    finally:
        await reader.aclose()
        await worker.stop(grace=5)
        await worker.executor.aclose()
        await services.close()
    assert found["$final"].type == "execution.completed"
    assert found["first"].get("recovered") is None  # written at the time
    # its events were lost (later ones may have got through when Redis came back): rebuilt
    # from the store's node result
    assert found["call"]["recovered"] is True
    assert found["call"]["status"] == "completed"
    assert json.loads(found["call"]["output"]["body"]) == {"drink": "café", "size": 2}
    assert found["out"]["output"] == found["call"]["output"]


async def _at_least(server: LocalHttpServer, count: int) -> bool:
    return server.pieces_sent >= count
