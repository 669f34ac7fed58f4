"""The UI's routes without a browser (in-process): the page and its files, and the two JSON
routes the app needs beside the public API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_settings
from tests.support.services import RedisServer
from tests.ui.flows import STORED
from workflow_engine.api.app import create_app
from workflow_engine.api.services import Services


async def test_the_page_and_its_files_are_served(api: httpx.AsyncClient) -> None:
    page = await api.get("/ui")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert (await api.get("/ui/")).headers["location"] == "/ui"
    sheet = await api.get("/ui/static/app.css")
    assert sheet.status_code == 200
    assert sheet.headers["content-type"].startswith("text/css")
    missing = await api.get("/ui/static/nope.js")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert (await api.get("/ui/static/vendor/VENDORED.md")).status_code == 200
    # nothing outside the app's folder, however the path climbs
    for climb in ("..%2F..%2Fapi%2Froutes%2Fui.py", "..%2F..%2F..%2F..%2Fpyproject.toml"):
        outside = await api.get(f"/ui/static/{climb}")
        assert outside.status_code == 404, climb


async def test_without_keys_the_session_is_open_and_the_graph_is_the_definitions(
    api: httpx.AsyncClient,
) -> None:
    assert (await api.get("/ui/api/session")).json() == {
        "authenticated": True,
        "authRequired": False,
        "tenant": "anonymous",
        "admin": True,
    }
    submitted = await api.post(
        "/api/workflow/execute", json={"workflowDefinition": STORED, "inputs": {"name": "x"}}
    )
    execution_id = submitted.json()["executionId"]
    graph = (await api.get(f"/ui/api/graph/{execution_id}")).json()
    assert graph["workflowId"] == "greet"
    assert [n["id"] for n in graph["nodes"]] == ["hello", "check", "loud", "calm", "out"]
    assert graph["nodes"][1] == {"id": "check", "type": "condition", "name": None}
    assert {"source": "check", "target": "loud", "branch": "many", "recursive": False} in (
        graph["edges"]
    )
    assert (await api.get("/ui/api/graph/exec_nope")).status_code == 404


@pytest.fixture
async def keyed(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        redis_server.url, f"sqlite:///{tmp_path}/wfe.db", api_keys="a=key-a,b:admin=key-b"
    )
    services = await Services.open(settings)
    transport = httpx.ASGITransport(app=create_app(settings, services))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client
    finally:
        await services.close()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_with_keys_the_session_says_who_and_the_graph_is_the_tenants(
    keyed: httpx.AsyncClient,
) -> None:
    anonymous = (await keyed.get("/ui/api/session")).json()
    assert anonymous["authenticated"] is False
    assert anonymous["authRequired"] is True
    wrong = await keyed.get("/ui/api/session", headers=bearer("nope"))
    assert wrong.status_code == 200  # (a 401 would be an error on the browser's console)
    assert wrong.json()["authenticated"] is False
    tenant = (await keyed.get("/ui/api/session", headers=bearer("key-a"))).json()
    assert tenant == {"authenticated": True, "authRequired": True, "tenant": "a", "admin": False}
    admin = (await keyed.get("/ui/api/session", headers=bearer("key-b"))).json()
    assert admin["admin"] is True
    submitted = await keyed.post(
        "/api/workflow/execute",
        json={"workflowDefinition": STORED, "inputs": {"name": "x"}},
        headers=bearer("key-a"),
    )
    execution_id = submitted.json()["executionId"]
    path = f"/ui/api/graph/{execution_id}"
    assert (await keyed.get(path, headers=bearer("key-a"))).status_code == 200
    assert (await keyed.get(path, headers=bearer("key-b"))).status_code == 404
    assert (await keyed.get(path)).status_code == 401
