"""Clients of the live event endpoints for tests over real sockets: a WebSocket reader, an SSE
reader, and a workflow that waits where the test says (the ``hold`` test node)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import httpx

from workflow_engine.config import Settings
from workflow_engine.sse import SseParser


def held_chain(settings: Settings, key: str) -> dict[str, Any]:
    """start -> first hold -> middle -> second hold -> end: the test decides when it moves."""
    hold = {"redis_url": settings.redis_url, "seconds": 60}
    return {
        "id": "held",
        "nodes": [
            {"id": "start", "type": "echo", "inputs": {"n": 1}},
            {"id": "h1", "type": "hold", "inputs": {**hold, "key": f"{key}:1"}},
            {"id": "middle", "type": "echo", "inputs": {"n": 2}},
            {"id": "h2", "type": "hold", "inputs": {**hold, "key": f"{key}:2"}},
            {"id": "end", "type": "output", "inputs": {"value": "done"}},
        ],
        "edges": [
            {"source": "start", "target": "h1"},
            {"source": "h1", "target": "middle"},
            {"source": "middle", "target": "h2"},
            {"source": "h2", "target": "end"},
        ],
    }


async def ws_receive(socket: Any, until: Any, timeout: float = 20) -> list[dict[str, Any]]:
    """Events (not heartbeats) until ``until(event)`` holds."""
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while True:
            message = json.loads(await socket.recv())
            if message.get("type") == "heartbeat":
                continue
            got.append(message)
            if until(message):
                return got


def is_final(event: dict[str, Any]) -> bool:
    return event["type"] in {"execution.completed", "execution.failed", "execution.cancelled"}


async def sse_read(
    url: str, headers: dict[str, str], until: Any, then: Any = None
) -> list[dict[str, Any]]:
    """Read SSE events until ``until(event)`` (then call ``then``) or until the stream ends."""
    got: list[dict[str, Any]] = []
    parser = SseParser()
    with contextlib.suppress(httpx.TransportError):
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(20, read=20)) as client,
            client.stream("GET", url, headers=headers) as response,
        ):
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            async for chunk in response.aiter_bytes():
                for message in parser.feed(chunk):
                    event = message["data"]
                    assert message["id"] == event["id"]
                    assert message["event"] == event["type"]
                    got.append(event)
                    if until is not None and until(event):
                        then()
    return got
