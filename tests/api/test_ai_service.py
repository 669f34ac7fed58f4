"""The `llm` node through the real service, as a user runs it (issue 15): the API on a real
socket, a `wfe worker` process, the OpenAI-compatible stand-in as the model server, and a
WebSocket client watching the tokens arrive."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.conftest import make_settings
from tests.support.live import is_final, ws_receive
from tests.support.model_server import Answer, Failure, ModelServer, model_server
from tests.support.processes import Process, start_worker, wait_until
from tests.support.served import served
from tests.support.services import RedisServer
from workflow_engine.api.app import create_app
from workflow_engine.api.services import Services

KEY = "sk-service-test-9Qm2Wx7Lp4"
MODEL = "stand-in-1"


class Service:
    """The API served here, one worker process, and the model stand-in."""

    def __init__(self, address: str, services: Services, models: ModelServer) -> None:
        self.address = address
        self.services = services
        self.models = models
        self.http = httpx.AsyncClient(base_url=f"http://{address}", timeout=10)

    async def execute(self, definition: dict[str, Any], client_id: str) -> str:
        answer = await self.http.post(
            "/api/workflow/execute",
            json={"workflowDefinition": definition, "clientId": client_id},
        )
        assert answer.status_code == 202, answer.text
        execution_id: str = answer.json()["executionId"]
        return execution_id

    async def status(self, execution_id: str) -> dict[str, Any]:
        answer = await self.http.get(f"/api/workflow/status/{execution_id}?nodes=true")
        body: dict[str, Any] = answer.json()
        return body

    async def final(self, execution_id: str) -> dict[str, Any]:
        async def ended() -> dict[str, Any] | None:
            body = await self.status(execution_id)
            done = body["context"]["status"] in {"completed", "failed", "cancelled"}
            return body if done else None

        body: dict[str, Any] = await wait_until(ended, 30, f"{execution_id} to end")
        return body


@pytest.fixture
async def service(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[Service]:
    async with model_server() as models:
        settings = make_settings(redis_server.url, f"sqlite:///{tmp_path}/wfe.db")
        worker: Process = await asyncio.to_thread(
            start_worker,
            settings,
            WFE_CONNECTIONS__DEFAULT__BASE_URL=models.base_url,
            WFE_CONNECTIONS__DEFAULT__API_KEY=KEY,
        )
        services = await Services.open(settings)
        try:
            async with served(create_app(settings, services)) as address:
                running = Service(address, services, models)
                yield running
                await running.http.aclose()
        finally:
            await services.close()
            await asyncio.to_thread(worker.stop)


def chat(**node: Any) -> dict[str, Any]:
    inputs = {"model": MODEL, "system": "Be brief.", "prompt": "Tell me a story", **node}
    return {"id": "chat", "nodes": [{"id": "ask", "type": "llm", "inputs": inputs}]}


async def subscribe(address: str, client: str, execution_id: str, after: str | None = None) -> Any:
    socket = await websockets.connect(f"ws://{address}/ws/{client}")
    message: dict[str, Any] = {"type": "subscribe", "executionId": execution_id}
    if after is not None:
        message["lastEventId"] = after
    await socket.send(json.dumps(message))
    return socket


def after_streams(count: int) -> Callable[[dict[str, Any]], bool]:
    """``until`` for ``ws_receive``: true at the ``count``th ``node.stream`` event."""
    streamed = 0

    def until(event: dict[str, Any]) -> bool:
        nonlocal streamed
        streamed += event["type"] == "node.stream"
        return streamed >= count

    return until


def stream_ids(events: list[dict[str, Any]]) -> list[tuple[int, int]]:
    return [tuple(int(p) for p in e["id"].split("-")) for e in events]  # type: ignore[misc]


async def test_tokens_stream_live_and_a_reconnect_mid_answer_misses_nothing(
    service: Service,
) -> None:
    pieces = [f"word{i} " for i in range(40)]
    service.models.script(Answer(pieces, delay=0.06))  # slower than the 50 ms coalescing
    execution_id = await service.execute(chat(), "reader")
    first = await subscribe(service.address, "reader", execution_id)
    try:  # a client that drops after ten token events ...
        seen = await ws_receive(first, after_streams(10))
    finally:
        await first.close()
    # ... and comes back with the last id it saw
    second = await subscribe(service.address, "reader", execution_id, after=seen[-1]["id"])
    try:
        rest = await ws_receive(second, is_final)
    finally:
        await second.close()
    events = seen + rest
    ids = stream_ids(events)
    assert ids == sorted(set(ids)), "a gap or a duplicate across the reconnect"
    types = [e["type"] for e in events]
    completed = types.index("node.completed")
    streamed = [e["data"] for e in events[:completed] if e["type"] == "node.stream"]
    assert len(streamed) >= 20
    assert "".join(d["chunk"]["text"] for d in streamed) == "".join(pieces)
    assert events[completed]["data"]["output"]["text"] == "".join(pieces)
    assert events[-1]["type"] == "execution.completed"
    body = await service.final(execution_id)
    assert body["context"]["usage"]["completionTokens"] == 40


async def test_cancel_mid_answer_closes_the_upstream_stream(service: Service) -> None:
    service.models.script(Answer([f"w{i} " for i in range(100)], delay=0.05))
    execution_id = await service.execute(chat(), "canceller")
    socket = await subscribe(service.address, "canceller", execution_id)
    try:
        await ws_receive(socket, lambda e: e["type"] == "node.stream")
        answer = await service.http.post(f"/api/workflow/cancel/{execution_id}")
        assert answer.json() == {"executionId": execution_id, "status": "cancelled"}
        rest = await ws_receive(socket, is_final)
    finally:
        await socket.close()
    assert rest[-1]["type"] == "execution.cancelled"
    (exchange,) = service.models.exchanges
    async with asyncio.timeout(5):
        await exchange.closed.wait()  # the model server saw the client hang up
    assert exchange.deltas_sent < 100
    assert (await service.final(execution_id))["context"]["status"] == "cancelled"


async def test_a_429_is_retried_after_retry_after_and_json_schema_gives_json(
    service: Service,
) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    }
    service.models.script(
        Failure(429, "slow down", retry_after="1"), Answer.json({"city": "Paris", "days": 3})
    )
    definition = chat(json_schema=schema, prompt="Plan a trip")
    definition["nodes"][0]["retry"] = {"attempts": 2, "backoff": 0.1}
    execution_id = await service.execute(definition, "planner")
    body = await service.final(execution_id)
    assert body["context"]["status"] == "completed", body
    (node,) = body["nodes"]
    assert node["output"]["json"] == {"city": "Paris", "days": 3}
    assert node["attempt"] == 2
    first, second = service.models.exchanges
    assert second.received_at - first.received_at >= 1.0  # the server's Retry-After, not 0.1 s
    assert first.body["response_format"]["type"] == "json_schema"
    assert body["context"]["usage"] == node["output"]["usage"]
