"""The http node against a real HTTP server on a loopback socket."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

from tests.support.clock import FakeClock
from tests.support.http_server import LocalHttpServer
from workflow_engine.engine.executor import Executor
from workflow_engine.engine.status import ExecutionStatus, NodeStatus


def http_wf(inputs: dict[str, Any], **node: Any) -> dict[str, Any]:
    return {"id": "h", "nodes": [{"id": "call", "type": "http", "inputs": inputs, **node}]}


async def test_get_parses_a_json_body(executor: Executor, http_server: LocalHttpServer) -> None:
    plan = executor.compile(http_wf({"url": "{{ inputs.base }}/orders/{{ inputs.id }}"}))
    outcome = await executor.run(plan, {"base": http_server.base_url, "id": "A1"})
    output = outcome.nodes["call"].output
    assert output["status"] == 200
    assert output["body"] == {"id": "A1", "total": 150}
    assert output["headers"]["content-type"] == "application/json"


async def test_post_sends_json_headers_and_query(
    executor: Executor, http_server: LocalHttpServer
) -> None:
    plan = executor.compile(
        http_wf(
            {
                "method": "POST",
                "url": f"{http_server.base_url}/echo?a=1",
                "headers": {"X-Trace": "{{ inputs.trace }}", "X-Num": 7},
                "query": {"page": 2, "skip": None},
                "json": {"order": "{{ inputs.order }}"},
            }
        )
    )
    outcome = await executor.run(plan, {"trace": "t-1", "order": {"id": 5}})
    body = outcome.nodes["call"].output["body"]
    assert body["method"] == "POST"
    assert body["query"] == {"a": "1", "page": "2"}
    assert body["headers"]["x-trace"] == "t-1"
    assert body["headers"]["x-num"] == "7"
    assert body["headers"]["content-type"] == "application/json"
    assert json.loads(body["body"]) == {"order": {"id": 5}}


async def test_raw_body_and_text_response(executor: Executor, http_server: LocalHttpServer) -> None:
    plan = executor.compile(
        http_wf({"method": "PUT", "url": f"{http_server.base_url}/echo", "body": "raw text"})
    )
    outcome = await executor.run(plan)
    assert outcome.nodes["call"].output["body"]["body"] == "raw text"
    plan = executor.compile(http_wf({"url": f"{http_server.base_url}/text"}))
    outcome = await executor.run(plan)
    assert outcome.nodes["call"].output["body"] == "héllo"


async def test_error_status_fails_without_retry_for_4xx(
    fake_time_executor: Executor, http_server: LocalHttpServer, clock: FakeClock
) -> None:
    plan = fake_time_executor.compile(
        http_wf({"url": f"{http_server.base_url}/status/404"}, retry={"attempts": 3, "backoff": 1})
    )
    outcome = await fake_time_executor.run(plan)
    assert outcome.status is ExecutionStatus.FAILED
    error = outcome.nodes["call"].error
    assert error == {
        "message": f"GET {http_server.base_url}/status/404 answered HTTP 404: status 404",
        "type": "http_status",
    }
    assert http_server.hits["/status/404"] == 1
    assert clock.sleeps == []


async def test_raise_for_status_false_returns_the_status(
    executor: Executor, http_server: LocalHttpServer
) -> None:
    plan = executor.compile(
        http_wf({"url": f"{http_server.base_url}/status/418", "raise_for_status": False})
    )
    outcome = await executor.run(plan)
    assert outcome.status is ExecutionStatus.COMPLETED
    assert outcome.nodes["call"].output["status"] == 418


async def test_5xx_is_retried_with_backoff(
    fake_time_executor: Executor, http_server: LocalHttpServer, clock: FakeClock
) -> None:
    plan = fake_time_executor.compile(
        http_wf(
            {"url": f"{http_server.base_url}/flaky/k?fail=2"}, retry={"attempts": 3, "backoff": 0.5}
        )
    )
    outcome = await fake_time_executor.run(plan)
    assert outcome.status is ExecutionStatus.COMPLETED
    assert outcome.nodes["call"].output["body"] == {"hits": 3}
    assert outcome.nodes["call"].attempt == 3
    assert clock.sleeps == [0.5, 1.0]


async def test_request_timeout(executor: Executor, http_server: LocalHttpServer) -> None:
    plan = executor.compile(http_wf({"url": f"{http_server.base_url}/slow", "timeout": 0.1}))
    outcome = await executor.run(plan)
    error = outcome.nodes["call"].error
    assert error is not None
    assert error["type"] == "timeout"
    assert "timed out" in error["message"]


async def test_connection_refused(executor: Executor) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    plan = executor.compile(http_wf({"url": f"http://127.0.0.1:{port}/x"}))
    outcome = await executor.run(plan)
    error = outcome.nodes["call"].error
    assert error is not None
    assert error["type"] == "http_error"
    assert "ConnectError" in error["message"]


async def test_cancel_aborts_the_request_in_flight(
    executor: Executor, http_server: LocalHttpServer
) -> None:
    plan = executor.compile(
        {
            "id": "h",
            "nodes": [
                {"id": "call", "type": "http", "inputs": {"url": f"{http_server.base_url}/slow"}},
                {"id": "after", "type": "count"},
            ],
            "edges": [{"source": "call", "target": "after"}],
        }
    )
    run = executor.start(plan)
    task = asyncio.ensure_future(run.wait())
    async with asyncio.timeout(5):
        await http_server.slow_started.wait()
    run.cancel()
    async with asyncio.timeout(5):  # the server sees the client hang up: aborted, not awaited
        await http_server.slow_aborted.wait()
        outcome = await task
    assert outcome.status is ExecutionStatus.CANCELLED
    assert outcome.nodes["call"].status is NodeStatus.CANCELLED
    assert outcome.nodes["after"].status is NodeStatus.CANCELLED
