"""A tenant's connections over the API (SPEC section 10): the key is stored encrypted and is
never in an answer; tenants do not see each other's; without WFE_SECRET_KEY nothing is stored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from tests.conftest import make_settings
from tests.support.services import RedisServer
from workflow_engine.api.app import create_app
from workflow_engine.api.services import Services
from workflow_engine.config import ConfigError
from workflow_engine.vault import Vault

SECRET = "sk-test-4f1c0ffee-do-not-show"
HEADER_SECRET = "org-77-secret-header"
A = {"Authorization": "Bearer key-a"}
B = {"Authorization": "Bearer key-b"}
BODY = {
    "name": "default",
    "kind": "openai",
    "baseUrl": "https://models.example/v1",
    "apiKey": SECRET,
    "headers": {"OpenAI-Organization": HEADER_SECRET},
}


@pytest.fixture
async def keyed(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[Services]:
    settings = make_settings(
        redis_server.url,
        f"sqlite:///{tmp_path}/wfe.db",
        api_keys="a=key-a,b=key-b",
        secret_key=SecretStr("the-key,old-key"),  # the first encrypts
    )
    services = await Services.open(settings)
    yield services
    await services.close()


def client(services: Services) -> httpx.AsyncClient:
    app = create_app(services.settings, services)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


async def test_a_connection_is_stored_encrypted_and_never_answered(
    keyed: Services, tmp_path: Path
) -> None:
    async with client(keyed) as api:
        created = await api.post("/api/connections", json=BODY, headers=A)
        assert created.status_code == 201, created.text
        assert created.json() == {
            "name": "default",
            "kind": "openai",
            "baseUrl": "https://models.example/v1",
        }
        listed = await api.get("/api/connections", headers=A)
        assert [c["name"] for c in listed.json()["items"]] == ["default"]
        assert set(listed.json()["items"][0]) == {
            "name",
            "kind",
            "baseUrl",
            "createdAt",
            "updatedAt",
        }
        answers = created.text + listed.text
    assert SECRET not in answers
    engine = sa.create_engine(f"sqlite:///{tmp_path}/wfe.db")
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(sa.text("SELECT * FROM wfe_connections"))]
    engine.dispose()
    assert len(rows) == 1
    stored = repr(rows)
    assert SECRET not in stored
    assert HEADER_SECRET not in stored
    # readable with the key it was stored with (the first of WFE_SECRET_KEY) alone
    (row,) = rows
    token = next(v for v in row if isinstance(v, str) and v.startswith("gAAAA"))
    assert Vault("the-key").open(token) == {
        "apiKey": SECRET,
        "headers": {"OpenAI-Organization": HEADER_SECRET},
    }


async def test_tenants_see_and_delete_only_their_own(keyed: Services) -> None:
    async with client(keyed) as api:
        assert (await api.post("/api/connections", json=BODY, headers=A)).status_code == 201
        assert (await api.get("/api/connections", headers=B)).json() == {"items": []}
        assert (await api.delete("/api/connections/default", headers=B)).status_code == 404
        replaced = {**BODY, "baseUrl": "https://other.example/v1"}
        assert (await api.post("/api/connections", json=replaced, headers=A)).status_code == 201
        (only,) = (await api.get("/api/connections", headers=A)).json()["items"]
        assert only["baseUrl"] == "https://other.example/v1"
        deleted = await api.delete("/api/connections/default", headers=A)
        assert deleted.json() == {"name": "default", "status": "deleted"}
        assert (await api.get("/api/connections", headers=A)).json() == {"items": []}
        assert (await api.delete("/api/connections/default", headers=A)).status_code == 404


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"name": "no spaces allowed"}, "name"),
        ({"kind": "anthropic"}, "kind"),
        ({"baseUrl": "ftp://x"}, "baseUrl"),
        ({"apiKey": ""}, "apiKey"),
    ],
)
async def test_an_invalid_connection_is_422_naming_the_field(
    keyed: Services, change: dict[str, str], path: str
) -> None:
    async with client(keyed) as api:
        answer = await api.post("/api/connections", json={**BODY, **change}, headers=A)
    assert answer.status_code == 422
    assert path in [d["path"] for d in answer.json()["error"]["details"]]
    assert SECRET not in answer.text


async def test_without_a_secret_key_nothing_is_stored_and_a_store_with_keys_refuses_to_start(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/wfe.db"
    plain = make_settings(redis_server.url, url)
    services = await Services.open(plain)
    try:
        async with client(services) as api:
            refused = await api.post("/api/connections", json=BODY)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "not_configured"
        assert "WFE_SECRET_KEY" in refused.json()["error"]["message"]
        assert not await services.store.has_connections()
    finally:
        await services.close()
    keyed = await Services.open(plain.model_copy(update={"secret_key": SecretStr("k")}))
    try:
        async with client(keyed) as api:
            assert (await api.post("/api/connections", json=BODY)).status_code == 201
    finally:
        await keyed.close()
    with pytest.raises(ConfigError, match="WFE_SECRET_KEY"):
        await Services.open(plain)
