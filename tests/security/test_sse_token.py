"""Finding 17: SSE takes the key as ``?token=`` too (``EventSource`` cannot set headers), with
the same checks as the header and the WebSocket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_settings
from tests.support.served import served
from tests.support.services import RedisServer
from workflow_engine.api.app import create_app
from workflow_engine.api.services import Services
from workflow_engine.queue.submit import Submission
from workflow_engine.sse import SseParser

DEFINITION = {"id": "q", "nodes": [{"id": "a", "type": "echo", "inputs": {"x": 1}}]}


@pytest.fixture
async def keyed(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[tuple[Services, str]]:
    settings = make_settings(
        redis_server.url, f"sqlite:///{tmp_path}/wfe.db", api_keys="a=key-a,b=key-b"
    )
    services = await Services.open(settings)
    try:
        async with served(create_app(settings, services)) as address:
            yield services, address
    finally:
        await services.close()


async def test_sse_accepts_a_token_parameter(keyed: tuple[Services, str]) -> None:
    services, address = keyed
    submitted = await services.submitter.submit(Submission(DEFINITION, tenant_id="a"))
    url = f"http://{address}/api/workflow/events/{submitted.execution_id}"
    async with httpx.AsyncClient(timeout=10) as client:
        async with client.stream("GET", url, params={"token": "key-a"}) as response:
            assert response.status_code == 200
            parser = SseParser()
            async for chunk in response.aiter_bytes():
                events = parser.feed(chunk)
                if events:
                    assert events[0]["data"]["type"] == "execution.queued"
                    break
        missing = await client.get(url)
        assert missing.status_code == 401
        wrong = await client.get(url, params={"token": "wrong"})
        assert wrong.status_code == 401
        assert wrong.json()["error"]["message"] == "unknown API key"
        other_tenant = await client.get(url, params={"token": "key-b"})
        assert other_tenant.status_code == 404
