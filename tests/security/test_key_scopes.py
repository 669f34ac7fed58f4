"""Finding 11: queue-wide figures (``/stats`` ``queues``) only for keys with the ``admin`` scope
(``tenant:admin=key``); a tenant's ``/stats`` counts only its own executions."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_settings
from tests.support.services import RedisServer
from workflow_engine.api.app import create_app
from workflow_engine.api.auth import KeyRing, hash_key
from workflow_engine.api.services import Services
from workflow_engine.config import ConfigError

EXAMPLE = json.loads(
    (Path(__file__).resolve().parents[2] / "examples" / "if_else.json").read_text()
)


async def _client(
    settings_keys: str, redis_url: str, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(redis_url, f"sqlite:///{tmp_path}/wfe.db", api_keys=settings_keys)
    services = await Services.open(settings)
    transport = httpx.ASGITransport(app=create_app(settings, services))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client
    await services.close()


@pytest.fixture
async def keyed(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    keys = f"a=key-a,b=key-b,ops:admin=sha256:{hash_key('key-ops')}"
    async for client in _client(keys, redis_server.url, tmp_path):
        yield client


@pytest.fixture
async def keyless(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client("", redis_server.url, tmp_path):
        yield client


def _nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {status: n for status, n in counts.items() if n}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_queue_figures_need_the_admin_scope(keyed: httpx.AsyncClient) -> None:
    for key in ("key-a", "key-a", "key-b"):
        body = {"workflowDefinition": EXAMPLE, "inputs": {"total": 1}}
        response = await keyed.post("/api/workflow/execute", json=body, headers=auth(key))
        assert response.status_code == 202
    of_a = (await keyed.get("/api/workflow/stats", headers=auth("key-a"))).json()
    assert set(of_a) == {"executions"}  # no queue-wide figures
    assert _nonzero(of_a["executions"]) == {"pending": 2}  # only its own
    of_b = (await keyed.get("/api/workflow/stats", headers=auth("key-b"))).json()
    assert set(of_b) == {"executions"}
    assert _nonzero(of_b["executions"]) == {"pending": 1}
    admin = (await keyed.get("/api/workflow/stats", headers=auth("key-ops"))).json()
    assert admin["queues"]["workflow"]["waiting"] == 3  # every tenant's jobs
    assert set(admin["queues"]) == {"realtime", "workflow", "scheduled", "background"}
    assert _nonzero(admin["executions"]) == {}  # the admin key's own tenant has none


async def test_without_keys_the_single_tenant_is_admin(keyless: httpx.AsyncClient) -> None:
    body = {"workflowDefinition": EXAMPLE, "inputs": {"total": 1}}
    assert (await keyless.post("/api/workflow/execute", json=body)).status_code == 202
    stats = (await keyless.get("/api/workflow/stats")).json()
    assert stats["queues"]["workflow"]["waiting"] == 1
    assert _nonzero(stats["executions"]) == {"pending": 1}


def test_scopes_are_parsed_and_old_entries_still_work() -> None:
    ring = KeyRing(f"a=plain, b=sha256:{hash_key('secret')}, ops:admin=root")
    a = ring.authenticate("Bearer plain")
    assert (a.tenant_id, a.admin) == ("a", False)
    b = ring.authenticate(None, token="secret")
    assert (b.tenant_id, b.admin) == ("b", False)
    ops = ring.authenticate("Bearer root")
    assert (ops.tenant_id, ops.admin) == ("ops", True)
    with pytest.raises(ConfigError, match="unknown scope in 'a:owner'"):
        KeyRing("a:owner=k")
    with pytest.raises(ConfigError, match="unknown scope"):
        KeyRing(":admin=k")
