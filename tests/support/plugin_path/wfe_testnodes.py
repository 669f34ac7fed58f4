"""Node types for tests that run in separate worker processes, installed as a real plugin
(an entry point in ``wfe_testnodes-1.0.dist-info``) by putting this folder on PYTHONPATH.

- ``record`` appends {executionId, nodeId, attempt, pid} to a Redis list: who ran what, how often;
- ``hold`` announces itself on ``<key>:entered`` and waits for a value on ``<key>:release``;
- ``peek`` returns the statuses in a Redis hash (a checkpoint) as the node sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis

from workflow_engine.nodes.base import NodeContext, NodeInputs, NodeType


@contextlib.asynccontextmanager
async def _connected(url: str) -> AsyncIterator[aioredis.Redis]:
    """A client for one node run, closed when it ends however it ends (a cancelled node
    included): a client left open would be a ResourceWarning once its event loop is gone."""
    # no read timeout: ``hold`` blocks in BLPOP for up to a minute (redis-py >= 6 would give
    # up after 5 s)
    client = aioredis.Redis.from_url(url, decode_responses=True, socket_timeout=None)
    try:
        yield client
    finally:
        await client.aclose()


class RecordInputs(NodeInputs):
    redis_url: str
    key: str
    seconds: float = 0
    """Work this long after recording (so that a kill can land in the middle of the node)."""


class Record(NodeType[RecordInputs]):
    type_name = "record"
    Inputs = RecordInputs

    async def run(self, ctx: NodeContext, inputs: RecordInputs) -> Any:
        entry = {
            "executionId": ctx.execution_id,
            "nodeId": ctx.node_id,
            "attempt": ctx.attempt,
            "pid": os.getpid(),
        }
        async with _connected(inputs.redis_url) as client:
            await client.rpush(inputs.key, json.dumps(entry))
        if inputs.seconds:
            await asyncio.sleep(inputs.seconds)
        return {"pid": os.getpid(), "node": ctx.node_id}


class HoldInputs(NodeInputs):
    redis_url: str
    key: str
    seconds: float = 60


class Hold(NodeType[HoldInputs]):
    type_name = "hold"
    Inputs = HoldInputs

    async def run(self, ctx: NodeContext, inputs: HoldInputs) -> Any:
        async with _connected(inputs.redis_url) as client:
            await client.rpush(f"{inputs.key}:entered", ctx.execution_id)
            released = await client.blpop([f"{inputs.key}:release"], timeout=inputs.seconds)
        return {"released": released is not None, "pid": os.getpid()}


class PeekInputs(NodeInputs):
    redis_url: str
    key: str


class Peek(NodeType[PeekInputs]):
    type_name = "peek"
    Inputs = PeekInputs

    async def run(self, ctx: NodeContext, inputs: PeekInputs) -> Any:
        async with _connected(inputs.redis_url) as client:
            raw = await client.hgetall(inputs.key)
        return {field: json.loads(value)["status"] for field, value in raw.items()}
