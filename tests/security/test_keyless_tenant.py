"""Finding 15: without keys there is one tenant, ``anonymous``, whatever a request's ``userId``
says: a client-wide WebSocket subscription and ``reconnect/{clientId}`` see the executions
submitted with a ``userId`` (as the seed's own client sends)."""

from __future__ import annotations

import json

import httpx
import websockets

from tests.support.live import ws_receive
from tests.support.served import served
from workflow_engine.api.app import create_app
from workflow_engine.api.services import Services

DEFINITION = {"id": "q", "nodes": [{"id": "a", "type": "echo", "inputs": {"x": 1}}]}


async def test_a_user_id_does_not_split_the_keyless_tenant(services: Services) -> None:
    async with (
        served(create_app(services.settings, services)) as address,
        httpx.AsyncClient(base_url=f"http://{address}") as http,
        websockets.connect(f"ws://{address}/ws/tab") as socket,
    ):
        await socket.send(json.dumps({"type": "subscribe"}))
        # the subscription is in place once a message sent after it is answered
        await socket.send("ping")
        assert json.loads(await socket.recv())["type"] == "error"
        body = {"workflowDefinition": DEFINITION, "userId": "alice", "clientId": "tab"}
        response = await http.post("/api/workflow/execute", json=body)
        assert response.status_code == 202
        execution_id = response.json()["executionId"]
        got = await ws_receive(socket, lambda e: e["executionId"] == execution_id, timeout=10)
        assert got[-1]["type"] == "execution.queued"
        active = (await http.get("/api/workflow/reconnect/tab")).json()
        assert [a["executionId"] for a in active] == [execution_id]
        status = (await http.get(f"/api/workflow/status/{execution_id}")).json()
        assert status["context"]["userId"] == "anonymous"
