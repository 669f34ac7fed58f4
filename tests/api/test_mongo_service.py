"""The examples end to end on the MongoDB store: ``wfe api`` (``WFE_STORE_URL=mongodb://...``)
and ``wfe worker`` (the seed's ``MONGODB_URI`` alone) as separate processes, over HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from tests.api.test_socket import wait_http
from tests.conftest import make_settings
from tests.support.processes import WFE, Process, settings_env, start_api
from tests.support.services import RedisServer, free_port
from workflow_engine.store import open_store

ROOT = Path(__file__).resolve().parents[2]


def example(name: str) -> dict[str, Any]:
    text = (ROOT / "examples" / name).read_text()
    loaded: dict[str, Any] = yaml.safe_load(text) if name.endswith(".yaml") else json.loads(text)
    return loaded


@pytest.fixture
def mongo_service(redis_server: RedisServer, mongodb_url: str) -> Iterator[str]:
    settings = make_settings(redis_server.url, mongodb_url)
    port = free_port()
    api = start_api(settings, port)
    worker_env = settings_env(settings, MONGODB_URI=mongodb_url)
    del worker_env["WFE_STORE_URL"]  # the seed's variable alone
    worker = Process([WFE, "worker"], worker_env)
    worker.wait_for("worker started")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/health")
        yield base
    finally:
        assert api.stop() == 0
        assert worker.stop() == 0


def submit(base: str, definition: dict[str, Any], inputs: dict[str, Any]) -> str:
    response = httpx.post(
        f"{base}/api/workflow/execute",
        json={"workflowDefinition": definition, "inputs": inputs},
    )
    assert response.status_code == 202, response.text
    execution_id: str = response.json()["executionId"]
    return execution_id


def wait_status(base: str, execution_id: str, wanted: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status: dict[str, Any] = httpx.get(
            f"{base}/api/workflow/status/{execution_id}?nodes=true"
        ).json()
        if status["context"]["status"] == wanted:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"{execution_id} is not {wanted}: {status['context']}")
        time.sleep(0.05)


def test_the_examples_run_on_mongodb(mongo_service: str) -> None:
    base = mongo_service
    diamond = submit(base, example("diamond.json"), {"numbers": [5, 1, 9]})
    greeting = submit(base, example("greeting.yaml"), {"name": "ada"})
    status = wait_status(base, diamond, "completed")
    assert status["result"] == {"sum": 15, "max": 9, "count": 3, "mean": 5.0}
    assert status["nodes"][0]["nodeId"] == "numbers"
    assert len(status["nodes"]) == 5
    assert wait_status(base, greeting, "completed")["context"]["completedAt"] is not None
    listed = httpx.get(f"{base}/api/workflow/executions").json()
    assert {item["executionId"] for item in listed["items"]} == {diamond, greeting}
    stats = httpx.get(f"{base}/api/workflow/stats").json()
    assert stats["executions"]["completed"] == 2


def test_an_approval_waits_and_resumes_on_mongodb(mongo_service: str) -> None:
    base = mongo_service
    execution_id = submit(base, example("approval.json"), {"order": "A-1", "amount": 30})
    waiting = wait_status(base, execution_id, "waiting")
    [ask] = [n for n in waiting["nodes"] if n["nodeId"] == "ask"]
    assert ask["output"]["prompt"] == "Refund 30 for order A-1?"
    answer = {"input": {"approved": False, "note": "duplicate"}}
    resumed = httpx.post(f"{base}/api/workflow/resume/{execution_id}", json=answer)
    assert resumed.status_code == 202, resumed.text
    again = httpx.post(f"{base}/api/workflow/resume/{execution_id}", json=answer)
    assert again.status_code == 409  # answered already (or running again)
    done = wait_status(base, execution_id, "completed")
    assert done["result"] == {"order": "A-1", "status": "rejected", "note": "duplicate"}


def test_wfe_dev_runs_the_examples_on_mongodb(tmp_path: Path, mongodb_url: str) -> None:
    """`wfe dev` with a MongoDB store (and its port from WFE_PORT, as `wfe api` takes it): the
    embedded Redis and the worker are dev's own, the records go to MongoDB."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WFE_", "REDIS_", "MONGODB_"))}
    dev = Process(
        [WFE, "dev"], {**env, "WFE_STORE_URL": mongodb_url, "WFE_PORT": str(port)}, cwd=tmp_path
    )
    base = f"http://127.0.0.1:{port}"
    try:
        dev.wait_for("Press Ctrl-C to stop.")
        assert any(urlsplit(mongodb_url).netloc in line for line in dev.lines)  # the banner
        diamond = submit(base, example("diamond.json"), {"numbers": [2, 4]})
        status = wait_status(base, diamond, "completed")
        assert status["result"] == {"sum": 6, "max": 4, "count": 2, "mean": 3.0}
    finally:
        dev.signal(signal.SIGINT)
        assert dev.stop() == 0
    assert not (tmp_path / ".wfe" / "wfe.db").exists()  # not the SQLite default

    async def stored_status() -> str | None:
        store = open_store(mongodb_url)
        try:
            record = await store.get(diamond)
            return None if record is None else str(record.status)
        finally:
            await store.close()

    assert asyncio.run(stored_status()) == "completed"  # in MongoDB itself
