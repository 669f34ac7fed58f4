"""The llm node against an OpenAI-compatible stand-in (tests/support/model_server.py) on a
loopback socket, through the executor and through a real worker (events in the Redis stream);
a real provider too when ``WFE_TEST_OPENAI_BASE_URL`` and ``WFE_TEST_OPENAI_API_KEY`` are set."""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from tests.conftest import make_settings
from tests.support.model_server import Answer, Failure, ModelServer, Stall, model_server
from tests.support.processes import WFE, wait_until
from tests.support.services import RedisServer
from workflow_engine.api.app import create_app
from workflow_engine.api.services import Services
from workflow_engine.config import Settings
from workflow_engine.connections import ConnectionSettings, ServerConnections
from workflow_engine.egress import EgressPolicy
from workflow_engine.engine.executor import Executor
from workflow_engine.engine.hooks import ExecutionHooks, NodeRetrying, NodeStreamed
from workflow_engine.events.model import Event, decode_entry
from workflow_engine.keys import Keys
from workflow_engine.nodes.coalesce import Coalescer
from workflow_engine.nodes.openai_chat import retry_after
from workflow_engine.nodes.registry import NodeRegistry
from workflow_engine.queue.submit import Submission
from workflow_engine.store.records import ExecutionRecord
from workflow_engine.vocabulary import ExecutionStatus, NodeStatus
from workflow_engine.worker.worker import WorkerService

KEY = "sk-wfe-test-Zq7Xr2Lm9Pw4Kd8Ns3Vb6"
"""Recognizable: the secret tests look for it everywhere it must not be."""
MODEL = "stand-in-1"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def llm_wf(inputs: dict[str, Any] | None = None, **node: Any) -> dict[str, Any]:
    values = {"model": MODEL, "prompt": "Say hello", **(inputs or {})}
    return {"id": "chat", "nodes": [{"id": "ask", "type": "llm", "inputs": values, **node}]}


def connections(server: ModelServer, key: str = KEY) -> dict[str, ConnectionSettings]:
    return {"default": ConnectionSettings(base_url=server.base_url, api_key=SecretStr(key))}


@pytest.fixture
async def models() -> AsyncIterator[ModelServer]:
    async with model_server() as server:
        yield server


@pytest.fixture
async def executor(registry: NodeRegistry, models: ModelServer) -> AsyncIterator[Executor]:
    """The conftest's executor, with the stand-in as connection ``default``."""
    async with Executor(registry, connections=ServerConnections(connections(models))) as ex:
        yield ex


@pytest.fixture
def settings(redis_server: RedisServer, tmp_path: Path, models: ModelServer) -> Settings:
    """The conftest's settings, with the stand-in as ``WFE_CONNECTIONS__DEFAULT__...``."""
    return make_settings(
        redis_server.url, f"sqlite:///{tmp_path}/wfe.db", connections=connections(models)
    )


class Recorder(ExecutionHooks):
    """The chunks streamed (with the loop time each came at) and the retries."""

    def __init__(self) -> None:
        self.chunks: list[dict[str, Any]] = []
        self.times: list[float] = []
        self.retries: list[NodeRetrying] = []
        self.first_chunk = asyncio.Event()

    async def on_node_stream(self, event: NodeStreamed) -> None:
        self.chunks.append(event.chunk)
        self.times.append(asyncio.get_running_loop().time())
        self.first_chunk.set()

    async def on_node_retry(self, event: NodeRetrying) -> None:
        self.retries.append(event)

    def joined(self, kind: str) -> str:
        return "".join(chunk.get(kind, "") for chunk in self.chunks)


# -- through a worker: the events a client sees ---------------------------------------------------


async def run_in_worker(services: Services, definition: dict[str, Any]) -> ExecutionRecord:
    submitted = await services.submitter.submit(Submission(definition))
    return await finished(services, submitted.execution_id)


async def finished(services: Services, execution_id: str) -> ExecutionRecord:
    async def done() -> ExecutionRecord | None:
        record = await services.store.get(execution_id)
        final = {"completed", "failed", "cancelled"}
        return record if record and record.status in final else None

    record: ExecutionRecord = await wait_until(done, 20, "the execution to finish")
    return record


async def events_of(settings: Settings, execution_id: str) -> list[Event]:
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        key = Keys(settings.queue_prefix).events(execution_id)

        async def final() -> list[tuple[str, dict[str, str]]] | None:
            # (decode_responses: str ids and fields, whatever the client's annotations say)
            entries = cast(list[tuple[str, dict[str, str]]], await client.xrange(key))
            return entries if any('"execution.' in f["e"] for _, f in entries[-1:]) else None

        entries = await wait_until(final, 10, "the final event")
        return [decode_entry(execution_id, i, f) for i, f in entries]
    finally:
        await client.aclose()


async def test_a_long_answer_streams_20_events_before_node_completed(
    services: Services, worker: WorkerService, models: ModelServer
) -> None:
    pieces = [f"word{i} " for i in range(24)]
    models.script(Answer(pieces, delay=0.06))  # slower than the coalescing interval
    record = await run_in_worker(services, llm_wf())
    assert record.status is ExecutionStatus.COMPLETED
    events = await events_of(services.settings, record.execution_id)
    types = [e.type for e in events]
    completed = types.index("node.completed")
    streamed = [e.data for e in events[:completed] if e.type == "node.stream"]
    assert len(streamed) >= 20
    assert "node.stream" not in types[completed:]
    assert all(data["nodeId"] == "ask" for data in streamed)
    assert "".join(data["chunk"]["text"] for data in streamed) == "".join(pieces)
    output = events[completed].data["output"]
    assert output["text"] == "".join(pieces)
    assert output["finishReason"] == "stop"
    assert output["model"] == MODEL
    assert output["usage"] == {"promptTokens": 2, "completionTokens": 24, "totalTokens": 26}


async def test_a_secret_never_appears_in_results_events_logs_or_errors(
    services: Services,
    worker: WorkerService,
    models: ModelServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    leaked = f"Incorrect API key provided: {KEY}. Find your key at example.com"
    models.script(Answer.text("fine, thanks", pieces=3), Failure(401, leaked, code="bad_key"))
    with caplog.at_level(logging.DEBUG):
        good = await run_in_worker(services, llm_wf())
        bad = await run_in_worker(services, llm_wf(retry={"attempts": 3}))
    assert good.status is ExecutionStatus.COMPLETED
    assert bad.status is ExecutionStatus.FAILED
    # the key did reach the server, as the bearer token, and nothing else carried it there
    assert [x.headers["authorization"] for x in models.exchanges] == [f"Bearer {KEY}"] * 2
    assert all(KEY not in json.dumps(x.body) for x in models.exchanges)
    seen: list[str] = []
    for record in (good, bad):
        seen.append(repr(record))
        nodes = await services.store.node_results(record.execution_id)
        seen.extend(json.dumps(n.to_dict(), default=str) for n in nodes)
        seen.extend(e.to_json() for e in await events_of(services.settings, record.execution_id))
    seen.extend(f"{r.getMessage()} {r.msg!r} {r.args!r}" for r in caplog.records)
    assert bad.error is not None
    seen.append(str(bad.error))
    assert not [text for text in seen if KEY in text]
    # what the server said is there, the key scrubbed
    assert "answered HTTP 401: Incorrect API key provided: ***. Find your key" in str(bad.error)
    assert len(models.exchanges) == 2  # a 401 is not retried


# -- through the executor ---------------------------------------------------------------------


async def test_fast_deltas_are_coalesced(executor: Executor, models: ModelServer) -> None:
    pieces = [f"t{i:03} " for i in range(300)]  # 1,500 characters at once
    models.script(Answer(pieces))
    recorder = Recorder()
    outcome = await executor.run(executor.compile(llm_wf()), hooks=recorder)
    assert outcome.status is ExecutionStatus.COMPLETED
    assert recorder.joined("text") == "".join(pieces) == outcome.nodes["ask"].output["text"]
    assert 1 <= len(recorder.chunks) < len(pieces) / 10
    # a chunk goes out when 512 characters gathered, else no sooner than 50 ms after the last
    # (but for the rest, flushed when the answer ends)
    for i in range(1, len(recorder.chunks) - 1):
        gap = recorder.times[i] - recorder.times[i - 1]
        assert len(recorder.chunks[i]["text"]) >= 512 or gap >= 0.045, (i, gap)


async def test_what_gathered_is_published_when_no_delta_follows(
    executor: Executor, models: ModelServer
) -> None:
    models.script(Answer(["a", "b", "c", "d"], stall_after=3))  # then silence
    recorder = Recorder()
    run = executor.start(executor.compile(llm_wf()), hooks=recorder)
    task = asyncio.ensure_future(run.wait())

    async def all_published() -> bool:
        return recorder.joined("text") == "abc"

    await wait_until(all_published, 5, "the gathered text to be published")
    run.cancel()
    assert (await task).status is ExecutionStatus.CANCELLED


async def test_reasoning_streams_before_the_answer(executor: Executor, models: ModelServer) -> None:
    models.script(Answer(["The answer", " is 4."], reasoning=["2+2", "... is 4"], delay=0.06))
    recorder = Recorder()
    outcome = await executor.run(executor.compile(llm_wf()), hooks=recorder)
    output = outcome.nodes["ask"].output
    assert output["reasoning"] == "2+2... is 4"
    assert output["text"] == "The answer is 4."
    assert recorder.joined("reasoning") == "2+2... is 4"
    assert recorder.joined("text") == "The answer is 4."
    kinds = [kind for chunk in recorder.chunks for kind in chunk]
    assert kinds.index("text") > max(i for i, k in enumerate(kinds) if k == "reasoning")


async def test_without_stream_nothing_is_published(executor: Executor, models: ModelServer) -> None:
    models.script(Answer(["Hel", "lo"], reasoning=["hm"]))
    recorder = Recorder()
    plan = executor.compile(llm_wf({"stream": False, "temperature": 0.2, "max_tokens": 50}))
    outcome = await executor.run(plan, hooks=recorder)
    assert outcome.nodes["ask"].output == {
        "text": "Hello",
        "reasoning": "hm",
        "finishReason": "stop",
        "model": MODEL,
        "usage": {"promptTokens": 2, "completionTokens": 3, "totalTokens": 5},
    }
    assert recorder.chunks == []
    body = models.exchanges[0].body
    assert "stream" not in body or body["stream"] is False
    assert (body["temperature"], body["max_tokens"]) == (0.2, 50)


async def test_messages_combine_in_order(executor: Executor, models: ModelServer) -> None:
    inputs = {
        "system": "Be brief.",
        "history": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
        ],
        "messages": [{"role": "user", "content": "{{ inputs.context }}"}],
        "prompt": "{{ inputs.question }}",
    }
    plan = executor.compile(llm_wf(inputs))
    outcome = await executor.run(plan, {"context": "We talk about tea.", "question": "Green?"})
    assert outcome.status is ExecutionStatus.COMPLETED
    body = models.exchanges[0].body
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "We talk about tea."},
        {"role": "user", "content": "Green?"},
    ]
    assert body["model"] == MODEL
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
    "required": ["city", "days"],
}


async def test_json_schema_asks_for_json_and_parses_it(
    executor: Executor, models: ModelServer
) -> None:
    models.script(Answer.json({"city": "Oslo", "days": 3}))
    outcome = await executor.run(executor.compile(llm_wf({"json_schema": SCHEMA})))
    output = outcome.nodes["ask"].output
    assert output["json"] == {"city": "Oslo", "days": 3}
    assert json.loads(output["text"]) == output["json"]
    assert models.exchanges[0].body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": SCHEMA},
    }


async def test_an_answer_that_breaks_the_schema_fails_with_llm_output_and_is_retried(
    executor: Executor, models: ModelServer
) -> None:
    models.script(
        Answer.json({"city": "Oslo", "days": 0}), Answer.json({"city": "Oslo", "days": 2})
    )
    plan = executor.compile(llm_wf({"json_schema": SCHEMA}, retry={"attempts": 2}))
    recorder = Recorder()
    outcome = await executor.run(plan, hooks=recorder)
    assert outcome.nodes["ask"].output["json"] == {"city": "Oslo", "days": 2}
    assert outcome.nodes["ask"].attempt == 2
    assert [r.error for r in recorder.retries] == [
        {
            "message": "node 'ask': the answer does not match json_schema: "
            "json.days: 0 is less than the minimum of 1",
            "type": "llm_output",
        }
    ]
    models.script(Answer.text("not JSON at all"))
    outcome = await executor.run(executor.compile(llm_wf({"json_schema": SCHEMA})))
    error = outcome.nodes["ask"].error
    assert error is not None
    assert error["type"] == "llm_output"
    assert "the answer is not JSON" in error["message"]


async def test_a_json_answer_in_a_code_fence_is_read(
    executor: Executor, models: ModelServer
) -> None:
    models.script(Answer.text('```json\n{"city": "Rome", "days": 1}\n```', pieces=4))
    outcome = await executor.run(executor.compile(llm_wf({"json_schema": SCHEMA})))
    assert outcome.nodes["ask"].output["json"] == {"city": "Rome", "days": 1}


async def test_429_is_retried_after_the_servers_retry_after(
    executor: Executor, models: ModelServer
) -> None:
    models.script(Failure(429, "Rate limit reached", retry_after="1"), Answer(["ok"]))
    plan = executor.compile(llm_wf(retry={"attempts": 3, "backoff": 0.01}))
    recorder = Recorder()
    outcome = await executor.run(plan, hooks=recorder)
    assert outcome.status is ExecutionStatus.COMPLETED
    assert outcome.nodes["ask"].output["text"] == "ok"
    first, second = models.exchanges
    assert second.received_at - first.received_at >= 1.0  # not the node's 0.01 s backoff
    assert [r.delay for r in recorder.retries] == [1.0]
    assert recorder.retries[0].error["type"] == "llm_status"


async def test_a_5xx_is_retried_within_the_retry_policy(
    executor: Executor, models: ModelServer
) -> None:
    models.script(Failure(500, "boom"), Failure(503, "overloaded"), Answer(["fine"]))
    plan = executor.compile(llm_wf(retry={"attempts": 3, "backoff": 0.01}))
    outcome = await executor.run(plan)
    assert outcome.nodes["ask"].output["text"] == "fine"
    assert outcome.nodes["ask"].attempt == 3
    models.script(*(Failure(500, f"boom {i}") for i in range(3)))
    outcome = await executor.run(plan)
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.nodes["ask"].attempt == 3
    assert outcome.nodes["ask"].error == {
        "message": "connection 'default' (127.0.0.1) answered HTTP 500: boom 2",
        "type": "llm_status",
    }


@pytest.mark.parametrize(
    ("status", "message"),
    [(401, "Incorrect API key provided"), (400, "Unsupported value: 'temperature'")],
)
async def test_a_4xx_other_than_429_fails_at_once_with_the_servers_message(
    executor: Executor, models: ModelServer, status: int, message: str
) -> None:
    models.script(Failure(status, message))
    plan = executor.compile(llm_wf(retry={"attempts": 3, "backoff": 0.01}))
    outcome = await executor.run(plan)
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.nodes["ask"].error == {
        "message": f"connection 'default' (127.0.0.1) answered HTTP {status}: {message}",
        "type": "llm_status",
    }
    assert len(models.exchanges) == 1


async def test_an_error_in_the_stream_fails_the_node_with_the_servers_message(
    executor: Executor, models: ModelServer
) -> None:
    models.script(Answer(["The ans", "wer is", " 4."], error_after=2))
    recorder = Recorder()
    outcome = await executor.run(executor.compile(llm_wf()), hooks=recorder)
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.nodes["ask"].error == {
        "message": "connection 'default' (127.0.0.1) failed: The server is overloaded",
        "type": "llm_error",
    }
    assert "The answer is".startswith(recorder.joined("text"))  # nothing after the error


async def test_a_streamed_answer_keeps_the_unicode_line_separators_a_server_sends_raw(
    executor: Executor, models: ModelServer
) -> None:
    """A JSON string may hold U+2028, U+2029 or U+0085 raw (vLLM's chunks do): they end no
    server-sent event line (only CR, LF, CRLF do), so the chunk is not cut in two."""
    pieces = ["one\u2028two", " three\u2029four", " five\x85six"]
    models.script(Answer(pieces))
    recorder = Recorder()
    outcome = await executor.run(executor.compile(llm_wf()), hooks=recorder)
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.nodes["ask"].error
    assert outcome.nodes["ask"].output["text"] == "".join(pieces)


async def test_a_stream_that_does_not_stop_fails_past_the_size_bound(
    executor: Executor, models: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workflow_engine.nodes import openai_chat

    monkeypatch.setattr(openai_chat, "MAX_STREAM_CHARS", 4000)  # (64 MiB for real)
    models.script(Answer(["word " * 50] * 40))  # ~10,000 characters of chunks
    outcome = await executor.run(executor.compile(llm_wf()))
    assert outcome.status is ExecutionStatus.FAILED
    error = outcome.nodes["ask"].error
    assert error is not None
    assert error["type"] == "llm_error"
    assert "the answer passed 4,000 characters" in error["message"]


async def test_a_streamed_tool_call_is_put_together_from_its_pieces(
    executor: Executor, models: ModelServer
) -> None:
    models.script(Answer.calls(("lookup", {"city": "Paris", "days": 3}), text="Let me see."))
    outcome = await executor.run(executor.compile(llm_wf()))
    output = outcome.nodes["ask"].output
    assert output["text"] == "Let me see."
    assert output["finishReason"] == "tool_calls"
    assert output["usage"]["completionTokens"] > 0


async def test_cancel_closes_the_upstream_stream_at_once(
    executor: Executor, models: ModelServer
) -> None:
    models.script(Answer([f"w{i} " for i in range(50)], stall_after=5))
    recorder = Recorder()
    run = executor.start(executor.compile(llm_wf()), hooks=recorder)
    task = asyncio.ensure_future(run.wait())
    async with asyncio.timeout(5):
        await recorder.first_chunk.wait()
    cancelled_at = time.monotonic()
    run.cancel()
    (exchange,) = models.exchanges
    async with asyncio.timeout(5):
        await exchange.closed.wait()
        outcome = await task
    assert exchange.closed_at is not None
    assert exchange.closed_at - cancelled_at < 0.1
    assert outcome.status is ExecutionStatus.CANCELLED
    assert outcome.nodes["ask"].status is NodeStatus.CANCELLED


async def test_cancel_before_the_answer_starts_closes_the_connection(
    executor: Executor, models: ModelServer
) -> None:
    models.script(Stall())
    run = executor.start(executor.compile(llm_wf()))
    task = asyncio.ensure_future(run.wait())
    (exchange,) = await models.wait_for_requests(1)
    cancelled_at = time.monotonic()
    run.cancel()
    async with asyncio.timeout(5):
        await exchange.closed.wait()
        outcome = await task
    assert exchange.closed_at is not None
    assert exchange.closed_at - cancelled_at < 0.1
    assert outcome.status is ExecutionStatus.CANCELLED


async def test_the_node_timeout_covers_the_whole_call(
    executor: Executor, models: ModelServer
) -> None:
    models.script(Answer([f"w{i} " for i in range(50)], delay=0.02, stall_after=3))
    started = time.monotonic()
    outcome = await executor.run(executor.compile(llm_wf(timeout=0.5)))
    assert time.monotonic() - started < 3
    assert outcome.nodes["ask"].error == {
        "message": "node 'ask' timed out after 0.5s",
        "type": "timeout",
    }
    async with asyncio.timeout(1):  # the server saw the client hang up
        await models.exchanges[0].closed.wait()


async def test_cancel_through_the_service_closes_the_upstream_stream(
    services: Services, worker: WorkerService, models: ModelServer
) -> None:
    models.script(Answer([f"w{i} " for i in range(50)], stall_after=3))
    submitted = await services.submitter.submit(Submission(llm_wf()))
    (exchange,) = await models.wait_for_requests(1)
    await services.canceller.cancel(submitted.execution_id, None)
    async with asyncio.timeout(5):
        await exchange.closed.wait()
    record = await finished(services, submitted.execution_id)
    assert record.status is ExecutionStatus.CANCELLED


# -- connections, egress ---------------------------------------------------------------------


async def test_an_unknown_connection_fails_clearly(executor: Executor, models: ModelServer) -> None:
    outcome = await executor.run(executor.compile(llm_wf({"connection": "nope"})))
    error = outcome.nodes["ask"].error
    assert error is not None
    assert error["type"] == "config"
    assert "no connection named 'nope'" in error["message"]
    assert KEY not in json.dumps(error)
    assert models.exchanges == []


async def test_the_connections_model_is_the_default(
    registry: NodeRegistry, models: ModelServer
) -> None:
    settings = {
        "Main": ConnectionSettings(base_url=models.base_url, api_key=SecretStr(KEY), model="m-2")
    }
    async with Executor(registry, connections=ServerConnections(settings)) as executor:
        plan = executor.compile(
            {
                "id": "c",
                "nodes": [
                    {"id": "a", "type": "llm", "inputs": {"connection": "main", "prompt": "x"}}
                ],
            }
        )
        outcome = await executor.run(plan)
        assert outcome.nodes["a"].output["model"] == "m-2"
        plan = executor.compile(llm_wf({"connection": "main", "model": "m-3"}))
        assert (await executor.run(plan)).nodes["ask"].output["model"] == "m-3"


async def test_a_connections_headers_are_sent_and_scrubbed_from_errors(
    registry: NodeRegistry, models: ModelServer
) -> None:
    token = "azure-style-header-secret-42"
    default = ConnectionSettings(
        base_url=models.base_url, headers={"api-key": SecretStr(token)}, model="m"
    )
    models.script(Failure(403, f"key {token} may not use this deployment"))
    async with Executor(registry, connections=ServerConnections({"default": default})) as ex:
        outcome = await ex.run(ex.compile(llm_wf({"model": None})))
    assert models.exchanges[0].headers["api-key"] == token
    assert outcome.nodes["ask"].error == {
        "message": "connection 'default' (127.0.0.1) answered HTTP 403: key *** may not use "
        "this deployment",
        "type": "llm_status",
    }


async def test_a_base_url_the_egress_policy_refuses_fails_with_egress_denied(
    registry: NodeRegistry, models: ModelServer
) -> None:
    resolver = ServerConnections(connections(models))
    async with Executor(registry, egress=EgressPolicy(), connections=resolver) as executor:
        outcome = await executor.run(executor.compile(llm_wf(retry={"attempts": 3})))
    error = outcome.nodes["ask"].error
    assert error is not None
    assert error["type"] == "egress_denied"
    assert "loopback" in error["message"]
    assert outcome.nodes["ask"].attempt == 1  # not retried
    assert models.exchanges == []


async def test_wfe_run_reads_connections_from_the_environment(models: ModelServer) -> None:
    models.script(Answer.text("Rayleigh scattering.", pieces=4))
    env = {
        **os.environ,
        "WFE_CONNECTIONS__DEFAULT__BASE_URL": models.base_url,
        "WFE_CONNECTIONS__DEFAULT__API_KEY": KEY,
        "WFE_CONNECTIONS__DEFAULT__MODEL": MODEL,
    }
    proc = await asyncio.create_subprocess_exec(
        WFE,
        "run",
        str(EXAMPLES / "chat.json"),
        "-q",
        "--input",
        "question=Why is the sky blue?",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert json.loads(out) == {"answer": "Rayleigh scattering.", "tokens": 20}
    assert KEY not in out.decode() + err.decode()
    (exchange,) = models.exchanges
    assert exchange.body["model"] == MODEL
    assert exchange.body["messages"][-1] == {"role": "user", "content": "Why is the sky blue?"}


def test_inputs_are_checked_at_submit_time(executor: Executor) -> None:
    from workflow_engine.errors import DefinitionError

    with pytest.raises(DefinitionError, match="give `prompt`, `messages`, `history` or `system`"):
        executor.compile(llm_wf({"prompt": None}))
    with pytest.raises(DefinitionError, match="not a valid JSON Schema"):
        executor.compile(llm_wf({"json_schema": {"type": "nonsense"}}))
    with pytest.raises(DefinitionError, match="role"):
        executor.compile(llm_wf({"messages": [{"role": "robot", "content": "x"}]}))


# -- a real provider, when one is configured -----------------------------------------------------

REAL_URL = os.environ.get("WFE_TEST_OPENAI_BASE_URL")
REAL_KEY = os.environ.get("WFE_TEST_OPENAI_API_KEY")
REAL_MODEL = os.environ.get("WFE_TEST_OPENAI_MODEL", "gpt-4o-mini")


@pytest.mark.skipif(
    not (REAL_URL and REAL_KEY),
    reason="WFE_TEST_OPENAI_BASE_URL and WFE_TEST_OPENAI_API_KEY are not set",
)
async def test_a_real_provider_streams_an_answer(registry: NodeRegistry) -> None:
    assert REAL_URL is not None
    assert REAL_KEY is not None
    real = {"default": ConnectionSettings(base_url=REAL_URL, api_key=SecretStr(REAL_KEY))}
    async with Executor(registry, connections=ServerConnections(real)) as executor:
        plan = executor.compile(
            llm_wf({"model": REAL_MODEL, "prompt": "Count from 1 to 20, one number a line."})
        )
        recorder = Recorder()
        outcome = await executor.run(plan, hooks=recorder)
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.nodes["ask"].error
    output = outcome.nodes["ask"].output
    assert "20" in output["text"]
    assert recorder.joined("text") == output["text"]
    assert output["usage"]["totalTokens"] > 0


# -- the parts -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "-3"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "nan"}, None),
        ({}, None),
    ],
)
def test_retry_after_reads_seconds_milliseconds_or_nothing(
    headers: dict[str, str], seconds: float | None
) -> None:
    assert retry_after(headers) == seconds


def test_retry_after_reads_an_http_date() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    seconds = retry_after({"retry-after": when})
    assert seconds is not None
    assert 28 <= seconds <= 30


async def test_the_coalescer_publishes_by_size_by_time_and_at_the_end() -> None:
    published: list[dict[str, Any]] = []

    async def publish(chunk: dict[str, Any]) -> None:
        published.append(chunk)

    coalescer = Coalescer(publish, interval=0.05, max_chars=10)
    try:
        await coalescer.add("text", "first")  # nothing published yet: it goes at once
        assert published == [{"text": "first"}]
        await coalescer.add("reasoning", "abc")  # within the interval: gathered
        await coalescer.add("text", "de")
        assert len(published) == 1

        async def timer_fired() -> bool:
            return len(published) == 2

        await wait_until(timer_fired, 2, "the interval's flush")
        assert published[1] == {"reasoning": "abc", "text": "de"}
        await coalescer.add("text", "0123456789")  # 10 characters: at once, interval or not
        assert published[2] == {"text": "0123456789"}
        await coalescer.add("text", "tail")
        await coalescer.flush()
        assert published[3:] == [{"text": "tail"}]
        assert coalescer.published == 4
    finally:
        await coalescer.aclose()


# -- usage and a tenant's stored connections, through a worker ---------------------------------


def two_questions() -> dict[str, Any]:
    ask = {"model": MODEL, "prompt": "first"}
    again = {"model": MODEL, "prompt": "{{ nodes.ask.output.text }}, and then?"}
    return {
        "id": "twice",
        "nodes": [
            {"id": "ask", "type": "llm", "inputs": ask},
            {"id": "again", "type": "llm", "inputs": again},
        ],
        "edges": [{"source": "ask", "target": "again"}],
    }


async def test_usage_is_summed_into_the_execution_context(
    services: Services, worker: WorkerService, models: ModelServer
) -> None:
    models.script(Answer(["a ", "b ", "c "]), Answer(["d ", "e "]))
    record = await run_in_worker(services, two_questions())
    assert record.status is ExecutionStatus.COMPLETED
    results = await services.store.node_results(record.execution_id)
    used = [n.output["usage"] for n in results]
    assert [u["completionTokens"] for u in used] == [3, 2]  # one per delta, as the stand-in counts
    keys = ("promptTokens", "completionTokens", "totalTokens")
    assert record.context()["usage"] == {key: used[0][key] + used[1][key] for key in keys}


async def test_usage_of_llm_nodes_in_loop_bodies_is_summed_too(
    services: Services, worker: WorkerService, models: ModelServer
) -> None:
    """One llm node before a loop over two items whose body asks once per item: the
    execution's usage is all three answers'."""
    models.script(Answer(["a "]), Answer(["b ", "c "]), Answer(["d ", "e ", "f "]))
    looping = {
        "id": "per_item",
        "nodes": [
            {"id": "ask", "type": "llm", "inputs": {"model": MODEL, "prompt": "first"}},
            {
                "id": "each",
                "type": "loop",
                "inputs": {
                    "items": ["x", "y"],
                    "body": {
                        "nodes": [
                            {
                                "id": "q",
                                "type": "llm",
                                "inputs": {"model": MODEL, "prompt": "{{ item }}"},
                            }
                        ],
                        "output": "q",
                    },
                },
            },
        ],
        "edges": [{"source": "ask", "target": "each"}],
    }
    record = await run_in_worker(services, looping)
    assert record.status is ExecutionStatus.COMPLETED
    used = [
        n.output["usage"]
        for n in await services.store.node_results(record.execution_id)
        if n.node_type == "llm"
    ]
    assert sorted(u["completionTokens"] for u in used) == [1, 2, 3]
    keys = ("promptTokens", "completionTokens", "totalTokens")
    assert record.context()["usage"] == {key: sum(u[key] for u in used) for key in keys}


async def test_a_tenants_stored_connection_goes_before_the_server_wide_one(
    redis_server: RedisServer, tmp_path: Path, models: ModelServer
) -> None:
    """The connection the tenant stored over the API (its key encrypted at rest) is the one
    its llm nodes use; another tenant's execution falls back to the server-wide one."""
    tenant_key = "sk-tenant-own-key-0000111122223333"
    settings = make_settings(
        redis_server.url,
        f"sqlite:///{tmp_path}/wfe.db",
        connections=connections(models),
        api_keys="a=key-a,b=key-b",
        secret_key=SecretStr("a-secret-key"),
    )
    services = await Services.open(settings)
    worker = WorkerService(settings, services.store)
    await worker.start()
    app = create_app(settings, services)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api"
        ) as api:
            stored = await api.post(
                "/api/connections",
                json={"name": "default", "baseUrl": models.base_url, "apiKey": tenant_key},
                headers={"Authorization": "Bearer key-a"},
            )
            assert stored.status_code == 201, stored.text
            models.script(Answer(["from a"]), Answer(["from b"]))
            for who in ("key-a", "key-b"):
                answer = await api.post(
                    "/api/workflow/execute",
                    json={"workflowDefinition": llm_wf()},
                    headers={"Authorization": f"Bearer {who}"},
                )
                assert answer.status_code == 202, answer.text
                await finished(services, answer.json()["executionId"])
    finally:
        await worker.stop(grace=5)
        await worker.executor.aclose()
        await services.close()
    sent = [x.headers["authorization"] for x in models.exchanges]
    assert sent == [f"Bearer {tenant_key}", f"Bearer {KEY}"]


async def test_the_workers_openai_environment_goes_to_no_connection(
    executor: Executor, models: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDK reads OPENAI_ORG_ID and OPENAI_PROJECT_ID when a client names none: a tenant's
    connection to a server of its choosing must not receive the worker's."""
    monkeypatch.setenv("OPENAI_ORG_ID", "org-of-the-operator-7731")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-of-the-operator-7731")
    outcome = await executor.run(executor.compile(llm_wf()))
    assert outcome.status is ExecutionStatus.COMPLETED
    (exchange,) = models.exchanges
    assert "operator-7731" not in json.dumps(exchange.headers)


async def test_the_tokens_a_model_server_reports_are_counted_by_model_and_kind(
    executor: Executor, models: ModelServer
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from workflow_engine.monitor import metrics

    def counted(model: str, kind: str) -> float:
        for family in text_string_to_metric_families(metrics.render().decode()):
            for sample in family.samples:
                if sample.name == "wfe_llm_tokens_total" and sample.labels == {
                    "model": model,
                    "kind": kind,
                }:
                    return sample.value
        return 0.0

    before = counted(MODEL, "prompt"), counted(MODEL, "completion")
    models.script(Answer.text("one two three", pieces=3))
    outcome = await executor.run(executor.compile(llm_wf()))
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    usage = outcome.nodes["ask"].output["usage"]
    assert counted(MODEL, "prompt") - before[0] == usage["promptTokens"] > 0
    assert counted(MODEL, "completion") - before[1] == usage["completionTokens"] > 0
