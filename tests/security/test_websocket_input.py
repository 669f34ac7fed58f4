"""Finding 12: hostile WebSocket input gets a clean answer. A binary frame is an invalid message
(not a traceback and a 1006 drop); a huge ``executionId`` is refused without being echoed back;
a refused key is told so with close code 1008 and its reason."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import websockets

from tests.conftest import make_settings
from tests.support.served import served
from tests.support.services import RedisServer
from workflow_engine.api.app import create_app
from workflow_engine.api.services import Services

INVALID = {"type": "error", "message": "Invalid message format"}


@pytest.fixture
async def address(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[str]:
    settings = make_settings(redis_server.url, f"sqlite:///{tmp_path}/wfe.db", api_keys="a=key-a")
    services = await Services.open(settings)
    try:
        async with served(create_app(settings, services)) as served_at:
            yield served_at
    finally:
        await services.close()


async def test_binary_frames_and_huge_ids_are_invalid_messages(
    address: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with websockets.connect(f"ws://{address}/ws/tab?token=key-a", max_size=None) as socket:
        await socket.send(b'{"type": "subscribe"}')
        assert json.loads(await socket.recv()) == INVALID
        huge = "x" * (10 * 1024 * 1024)
        await socket.send(json.dumps({"type": "subscribe", "executionId": huge}))
        reply = await socket.recv()
        assert json.loads(reply) == INVALID  # not echoed back
        await socket.send(json.dumps({"type": "subscribe", "executionId": "exec_nope"}))
        assert json.loads(await socket.recv()) == {
            "type": "error",
            "message": "execution exec_nope not found",
        }
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.exc_info]


@pytest.mark.parametrize("query", ["", "?token=wrong"])
async def test_a_refused_key_is_closed_with_1008(address: str, query: str) -> None:
    async with websockets.connect(f"ws://{address}/ws/tab{query}") as socket:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await socket.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008
    expected = "unknown API key" if query else "an API key is required"
    assert closed.value.rcvd.reason.startswith(expected)
