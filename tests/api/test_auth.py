"""API keys and tenants: a key sees only its tenant's executions."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import make_settings
from tests.support.services import RedisServer
from workflow_engine.api.app import create_app
from workflow_engine.api.auth import KeyRing, check_bind, hash_key
from workflow_engine.api.services import Services
from workflow_engine.config import ConfigError

EXAMPLE = json.loads(
    (Path(__file__).resolve().parents[2] / "examples" / "if_else.json").read_text()
)
KEY_A, KEY_B = "key-of-a", "key-of-b"


@pytest.fixture
async def keyed(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        redis_server.url,
        f"sqlite:///{tmp_path}/wfe.db",
        api_keys=f"tenant-a={KEY_A},tenant-b=sha256:{hash_key(KEY_B)}",
    )
    services = await Services.open(settings)
    transport = httpx.ASGITransport(app=create_app(settings, services))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client
    await services.close()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def submit(api: httpx.AsyncClient, key: str, **extra: Any) -> httpx.Response:
    body = {"workflowDefinition": EXAMPLE, "clientId": "shared-client", **extra}
    return await api.post("/api/workflow/execute", json=body, headers=auth(key))


async def test_requests_without_a_valid_key_are_401(keyed: httpx.AsyncClient) -> None:
    missing = await keyed.post("/api/workflow/execute", json={"workflowDefinition": EXAMPLE})
    assert missing.status_code == 401
    assert (
        missing.json()["error"]["message"] == "an API key is required (Authorization: Bearer <key>)"
    )
    wrong = await keyed.get("/api/workflow/stats", headers=auth("nope"))
    assert wrong.status_code == 401
    assert wrong.json()["error"]["message"] == "unknown API key"
    scheme = await keyed.get("/api/workflow/stats", headers={"Authorization": f"Basic {KEY_A}"})
    assert scheme.status_code == 401
    assert (await keyed.get("/health")).status_code == 200  # liveness needs no key


async def test_a_key_cannot_act_for_another_user(keyed: httpx.AsyncClient) -> None:
    response = await submit(keyed, KEY_A, userId="tenant-b")
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "this API key cannot act for user 'tenant-b'"
    assert (await submit(keyed, KEY_A, userId="tenant-a")).status_code == 202


async def test_tenants_are_isolated(keyed: httpx.AsyncClient) -> None:
    a = (await submit(keyed, KEY_A)).json()["executionId"]
    b = (await submit(keyed, KEY_B)).json()["executionId"]
    own = await keyed.get(f"/api/workflow/status/{a}", headers=auth(KEY_A))
    assert own.status_code == 200
    assert own.json()["context"]["userId"] == "tenant-a"
    other = await keyed.get(f"/api/workflow/status/{a}", headers=auth(KEY_B))
    assert other.status_code == 404
    assert (await keyed.post(f"/api/workflow/cancel/{a}", headers=auth(KEY_B))).status_code == 404
    listed = (await keyed.get("/api/workflow/executions", headers=auth(KEY_B))).json()
    assert [i["executionId"] for i in listed["items"]] == [b]
    active = (await keyed.get("/api/workflow/reconnect/shared-client", headers=auth(KEY_A))).json()
    assert [x["executionId"] for x in active] == [a]
    stats = (await keyed.get("/api/workflow/stats", headers=auth(KEY_A))).json()
    assert stats["executions"]["pending"] == 1
    assert (await keyed.post(f"/api/workflow/cancel/{a}", headers=auth(KEY_A))).status_code == 200


def test_keys_are_parsed_and_kept_hashed() -> None:
    ring = KeyRing(f"a=plain, b=sha256:{hash_key('secret')}")
    assert ring.tenant_for("plain") == "a"
    assert ring.tenant_for("secret") == "b"
    assert "plain" not in repr(vars(ring))
    with pytest.raises(ConfigError):
        KeyRing("no-equals-sign")
    with pytest.raises(ConfigError):
        KeyRing("a=sha256:tooshort")


def test_without_keys_only_loopback_may_be_bound() -> None:
    check_bind("127.0.0.1", KeyRing(""))
    check_bind("0.0.0.0", KeyRing("a=k"))
    with pytest.raises(ConfigError, match=r"refusing to listen on 0\.0\.0\.0 without API keys"):
        check_bind("0.0.0.0", KeyRing(""))
