"""The http node against a real HTTP server on a loopback socket."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest

from tests.support.clock import FakeClock
from tests.support.http_server import SSE_PIECES, LocalHttpServer
from workflow_engine.engine.executor import Executor
from workflow_engine.engine.hooks import ExecutionHooks, NodeStreamed
from workflow_engine.nodes.http import MAX_RESPONSE_BYTES
from workflow_engine.sse import SseParser
from workflow_engine.vocabulary import ExecutionStatus, NodeStatus


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


# -- stream: true ------------------------------------------------------------------------------

SSE_EVENTS = [
    {"event": "delta", "data": {"text": "Hel"}, "id": "1"},
    {"event": "message", "data": {"text": "lo"}, "id": "1"},  # the last event id carries over
    {"event": "message", "data": "[DONE]", "id": "3"},
]
TEXT_CHUNKS = [{"text": '{"drink": "caf'}, {"text": 'é", "size": '}, {"text": "2}"}]


class StreamRecorder(ExecutionHooks):
    """Records the streamed chunks; each one lets the server send its next piece."""

    def __init__(self, server: LocalHttpServer) -> None:
        self.server = server
        self.chunks: list[Any] = []
        self.pieces_sent: list[int] = []  # how many pieces the server had sent, at each chunk
        self.first_chunk = asyncio.Event()

    async def on_node_stream(self, event: NodeStreamed) -> None:
        self.chunks.append(event.chunk)
        self.pieces_sent.append(self.server.pieces_sent)
        self.first_chunk.set()
        self.server.send_next.set()


async def test_stream_publishes_sse_events_as_they_arrive(
    executor: Executor, http_server: LocalHttpServer
) -> None:
    recorder = StreamRecorder(http_server)
    plan = executor.compile(http_wf({"url": f"{http_server.base_url}/sse", "stream": True}))
    async with asyncio.timeout(5):  # the server sends a piece only after the previous chunk
        outcome = await executor.run(plan, hooks=recorder)
    assert outcome.status is ExecutionStatus.COMPLETED
    assert recorder.chunks == SSE_EVENTS
    assert recorder.pieces_sent == [1, 2, 3]  # each chunk arrived before the next piece was sent
    output = outcome.nodes["call"].output
    assert output["status"] == 200
    assert output["headers"]["content-type"] == "text/event-stream"
    assert output["body"] == SSE_EVENTS


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain; charset=utf-8", '{"drink": "café", "size": 2}'),
        ("application/json", {"drink": "café", "size": 2}),
    ],
    ids=["text", "json"],
)
async def test_stream_publishes_text_as_it_arrives(
    executor: Executor, http_server: LocalHttpServer, content_type: str, body: Any
) -> None:
    recorder = StreamRecorder(http_server)
    url = f"{http_server.base_url}/chunks"
    plan = executor.compile(http_wf({"url": url, "query": {"type": content_type}, "stream": True}))
    async with asyncio.timeout(5):
        outcome = await executor.run(plan, hooks=recorder)
    assert recorder.chunks == TEXT_CHUNKS  # "é" was split across two writes, never broken
    assert recorder.pieces_sent == [1, 2, 3]
    assert outcome.nodes["call"].output["body"] == body


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/sse", b"".join(SSE_PIECES).decode()),
        ("/chunks", '{"drink": "café", "size": 2}'),
    ],
    ids=["sse", "chunks"],
)
async def test_without_stream_nothing_is_published(
    executor: Executor, http_server: LocalHttpServer, path: str, body: str
) -> None:
    recorder = StreamRecorder(http_server)
    plan = executor.compile(http_wf({"url": f"{http_server.base_url}{path}?gate=0"}))
    outcome = await executor.run(plan, hooks=recorder)
    assert outcome.nodes["call"].output["body"] == body
    assert recorder.chunks == []


async def test_stream_publishes_nothing_for_an_error_status(
    executor: Executor, http_server: LocalHttpServer
) -> None:
    recorder = StreamRecorder(http_server)
    url = f"{http_server.base_url}/status/404"
    plan = executor.compile(http_wf({"url": url, "stream": True}))
    outcome = await executor.run(plan, hooks=recorder)
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.nodes["call"].error == {
        "message": f"GET {url} answered HTTP 404: status 404",
        "type": "http_status",
    }
    assert recorder.chunks == []


@pytest.mark.parametrize("stream", [False, True])
async def test_response_over_the_cap_fails(
    executor: Executor, http_server: LocalHttpServer, stream: bool
) -> None:
    url = f"{http_server.base_url}/bytes/{MAX_RESPONSE_BYTES + 1}"
    plan = executor.compile(http_wf({"url": url, "stream": stream}))
    outcome = await executor.run(plan)
    assert outcome.nodes["call"].error == {
        "message": f"response body exceeds {MAX_RESPONSE_BYTES} bytes",
        "type": "http_error",
    }


async def test_cancel_aborts_a_stream_in_flight(
    executor: Executor, http_server: LocalHttpServer
) -> None:
    recorder = StreamRecorder(http_server)
    plan = executor.compile(
        http_wf({"url": f"{http_server.base_url}/chunks?hang=1", "stream": True})
    )
    run = executor.start(plan, hooks=recorder)
    task = asyncio.ensure_future(run.wait())
    async with asyncio.timeout(5):
        await recorder.first_chunk.wait()
    run.cancel()
    async with asyncio.timeout(5):  # the server sees the client hang up mid-body
        await http_server.stream_aborted.wait()
        outcome = await task
    assert outcome.status is ExecutionStatus.CANCELLED
    assert outcome.nodes["call"].status is NodeStatus.CANCELLED
    assert recorder.chunks == TEXT_CHUNKS[:1]


def test_sse_parser_gives_the_same_events_however_the_bytes_are_split() -> None:
    stream = (
        b"\xef\xbb\xbfevent: delta\r\n"  # a leading byte order mark is ignored
        b': a comment\r\nid: 7\r\ndata: {"text": "h\xc3\xa9"}\r\n\r\n'
        b"data: line one\rdata:line two\n\n"  # lone CR ends a line; no space after the colon
        b"id\nevent:ping\nretry: 5\ndata\n\n"  # an empty id resets it; an empty data line
        b"event: lost\n\n"  # no data: nothing dispatched, the event name is reset
        b"data: [DONE]\n\n"
        b"data: cut off"  # the stream ends before the event does: dropped
    )
    expected = [
        {"event": "delta", "data": {"text": "hé"}, "id": "7"},
        {"event": "message", "data": "line one\nline two", "id": "7"},
        {"event": "ping", "data": "", "id": None},
        {"event": "message", "data": "[DONE]", "id": None},
    ]
    splits = [[stream[:i], stream[i:]] for i in range(len(stream) + 1)]
    splits.append([stream[i : i + 1] for i in range(len(stream))])  # byte by byte
    for pieces in splits:
        parser = SseParser()
        assert [event for piece in pieces for event in parser.feed(piece)] == expected, pieces
