"""The one module that speaks to the ``openai`` SDK: one chat completion, streamed or not, its
failures turned into ``NodeError`` s whose type says whether to retry.

- The SDK's HTTP client is the executor's (``ctx.http``): every connection it opens passes the
  egress policy (SPEC §8) and is pooled with the other nodes'. The SDK never closes it.
- The SDK does not retry (``max_retries=0``): the node's retry policy is the one that applies,
  429/5xx/connection errors retryable, with the server's ``Retry-After`` as the least delay.
- A stream is closed in a ``finally``: a cancelled node (or one past its timeout) closes the
  upstream connection at once, and the server stops generating.
- The key goes to the SDK and nowhere else; any text a server sends back is scrubbed of it.

The SDK (and so ``httpx``) is imported on first use: ``wfe validate`` loads every node module.
"""

from __future__ import annotations

import asyncio
import email.utils
import importlib
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from workflow_engine.errors import NodeError, NodeTimeoutError
from workflow_engine.monitor import metrics

if TYPE_CHECKING:
    import httpx
    import openai

    from workflow_engine.connections import Connection

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 300.0
"""Longest silence between two pieces of an answer (the node's ``timeout`` bounds the call)."""
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})
NO_KEY = "unused"
"""Sent when a connection has no key (a local server): the SDK would read OPENAI_API_KEY."""
MAX_MESSAGE_CHARS = 300

_IMPORTED: set[str] = set()

OnDelta = Callable[[str, str], Awaitable[None]]
"""``(kind, text)``: kind ``text`` or ``reasoning``."""


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    messages: list[dict[str, Any]]
    temperature: float | None = None
    max_tokens: int | None = None
    json_schema: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    """OpenAI ``tools`` (``{type: function, function: {name, description, parameters}}``)."""

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"model": self.model, "messages": self.messages}
        if self.temperature is not None:
            params["temperature"] = self.temperature
        if self.max_tokens is not None:
            params["max_tokens"] = self.max_tokens
        if self.json_schema is not None:
            params["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": self.json_schema},
            }
        if self.tools:
            params["tools"] = self.tools
        return params


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "promptTokens": self.prompt_tokens,
            "completionTokens": self.completion_tokens,
            "totalTokens": self.total_tokens,
        }


@dataclass(slots=True)
class ToolCall:
    """A function the model calls: its call id, name and JSON arguments (as text)."""

    id: str
    name: str
    arguments: str = ""

    def to_message(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(slots=True)
class ChatAnswer:
    model: str
    text: str = ""
    reasoning: str = ""
    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    tool_calls: list[ToolCall] = field(default_factory=list)


async def complete(
    http: httpx.AsyncClient,
    connection: Connection,
    request: ChatRequest,
    on_delta: OnDelta | None = None,
) -> ChatAnswer:
    """One chat completion; streamed (each piece given to ``on_delta`` as it comes) when
    ``on_delta`` is given. Raises ``NodeError`` (or ``EgressDenied``, ``NodeTimeoutError``)."""
    await _import_off_the_loop("openai")
    import httpx
    import openai

    # openai >= 3 is built on httpx2 (and annotates its types) but takes httpx's client and
    # timeout as well: ours is httpx's, with the egress transport
    transport: dict[str, Any] = {
        "http_client": http,
        "timeout": httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
    }
    client = openai.AsyncOpenAI(
        api_key=connection.api_key.get_secret_value() or NO_KEY,
        base_url=connection.base_url,
        default_headers={k: v.get_secret_value() for k, v in connection.headers.items()},
        max_retries=0,
        **transport,
    )
    # the SDK fills these from the worker's OPENAI_ORG_ID / OPENAI_PROJECT_ID: they would go
    # to whatever server a tenant's connection names
    client.organization = None
    client.project = None
    try:
        if on_delta is None:
            answer = await _whole(client, request)
        else:
            answer = await _streamed(client, request, on_delta)
        usage = answer.usage
        metrics.tokens_used(answer.model, usage.prompt_tokens, usage.completion_tokens)
        return answer
    except openai.APIStatusError as exc:
        raise _status_error(connection, exc) from None
    except (openai.APITimeoutError, httpx.TimeoutException) as exc:
        raise NodeTimeoutError(f"{_where(connection)} timed out ({type(exc).__name__})") from None
    except (openai.APIConnectionError, httpx.HTTPError) as exc:
        cause = exc.__cause__ if isinstance(exc, openai.APIConnectionError) else exc
        raise NodeError(
            f"{_where(connection)} could not be reached: "
            + connection.redact(f"{type(cause or exc).__name__}: {cause or exc}"),
            error_type="llm_connection",
        ) from None
    except openai.APIError as exc:  # an error event in the stream (overloaded, ...)
        raise NodeError(
            f"{_where(connection)} failed: {_excerpt(connection, exc.message)}",
            error_type="llm_error",
        ) from None


async def complete_streaming(
    http: httpx.AsyncClient,
    connection: Connection,
    request: ChatRequest,
    publish: Callable[[Any], Awaitable[None]] | None,
) -> ChatAnswer:
    """One chat completion, its pieces published (``node.stream`` chunks ``{text}`` /
    ``{reasoning}``, coalesced) when ``publish`` is given; the whole answer when not."""
    if publish is None:
        return await complete(http, connection, request)
    from workflow_engine.nodes.coalesce import Coalescer

    coalescer = Coalescer(publish)
    try:
        answer = await complete(http, connection, request, coalescer.add)
        await coalescer.flush()
    finally:
        await coalescer.aclose()
    return answer


async def _import_off_the_loop(name: str) -> None:
    """Import ``name`` on a thread: ``openai`` takes about a second of CPU to import the first
    time, which on the event loop would stall the worker (its job locks go unrenewed, and
    BullMQ hands the job to another worker)."""
    if name not in _IMPORTED:  # (not sys.modules: a module being imported is already there)
        await asyncio.to_thread(importlib.import_module, name)
        _IMPORTED.add(name)


async def _whole(client: openai.AsyncOpenAI, request: ChatRequest) -> ChatAnswer:
    completion = await client.chat.completions.create(**request.params())
    answer = ChatAnswer(completion.model or request.model)
    if completion.choices:
        choice = completion.choices[0]
        answer.text = choice.message.content or ""
        answer.reasoning = _reasoning(choice.message)
        answer.finish_reason = choice.finish_reason
        answer.tool_calls = [
            ToolCall(call.id or f"call_{i}", call.function.name, call.function.arguments or "")
            for i, call in enumerate(choice.message.tool_calls or ())
            if getattr(call, "function", None) is not None and call.function.name
        ][:MAX_TOOL_CALLS]
    if completion.usage is not None:
        answer.usage = _usage(completion.usage)
    return answer


async def _streamed(
    client: openai.AsyncOpenAI, request: ChatRequest, on_delta: OnDelta
) -> ChatAnswer:
    """The SDK sends the request and maps a refusal (status, connection) to its errors; the
    stream's chunks are read here, as the raw server-sent events, with ``orjson``. The SDK would
    build a typed object of every chunk, ~90 µs of the worker's CPU per token against ~2 here
    (benchmarks/ai_load.py), which at hundreds of concurrent streams is most of a core."""
    answer = ChatAnswer(request.model)
    text: list[str] = []
    reasoning: list[str] = []
    calls: dict[int, ToolCall] = {}
    create = client.chat.completions.with_streaming_response.create
    async with create(  # (closed on the way out: cancelled or failed mid-answer, not drained)
        **request.params(), stream=True, stream_options={"include_usage": True}
    ) as response:
        async for chunk in _chunks(response):
            model = chunk.get("model")
            answer.model = model if isinstance(model, str) and model else answer.model
            usage = chunk.get("usage")
            if isinstance(usage, dict):  # (the last chunk, with no choices)
                answer.usage = _usage_of(usage)
            choices = chunk.get("choices")
            if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
                continue
            choice = choices[0]
            delta = choice.get("delta")
            if isinstance(delta, dict):
                if thought := _reasoning_of(delta):
                    reasoning.append(thought)
                    await on_delta("reasoning", thought)
                piece = delta.get("content")
                if isinstance(piece, str) and piece:
                    text.append(piece)
                    await on_delta("text", piece)
                tool_calls = delta.get("tool_calls")
                for call in tool_calls if isinstance(tool_calls, list) else ():
                    if isinstance(call, dict):
                        _add_tool_call(calls, call)
            finish = choice.get("finish_reason")
            answer.finish_reason = finish if isinstance(finish, str) else answer.finish_reason
    answer.text, answer.reasoning = "".join(text), "".join(reasoning)
    answer.tool_calls = [calls[i] for i in sorted(calls) if calls[i].name]
    return answer


async def _chunks(response: Any) -> AsyncIterator[dict[str, Any]]:
    """The JSON chunks of a server-sent event stream, until ``[DONE]``; an ``error`` in one (or
    an ``error`` event) raises the SDK's ``APIError``, as its own stream reader does."""
    import openai

    data: list[str] = []
    event = ""
    async for line in _lines(response):
        if line:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "data":
                data.append(value)
            elif field == "event":
                event = value
            continue
        if not data:  # (a blank line ends an event; comments and keep-alives have no data)
            event = ""
            continue
        payload = "\n".join(data)
        data, kind, event = [], event, ""
        if payload.startswith("[DONE]"):
            return
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise openai.APIError(
                message=f"the server sent a chunk that is not JSON: {payload[:80]!r}",
                request=response.http_request,
                body=None,
            ) from None
        if not isinstance(chunk, dict):
            continue
        error = chunk.get("error")
        if error or kind == "error":
            message = error.get("message") if isinstance(error, dict) else None
            raise openai.APIError(
                message=message
                if isinstance(message, str) and message
                else ("An error occurred during streaming"),
                request=response.http_request,
                body=error,
            )
        yield chunk


_LINE_END = re.compile(r"\r\n|\r|\n")


async def _lines(response: Any) -> AsyncIterator[str]:
    """The stream's lines, ended by CR, LF or CRLF only, as the SSE spec says. (httpx's
    ``aiter_lines`` also splits at U+0085, U+2028, U+2029..., which a JSON string holds raw:
    a model's answer with one was cut in two, a chunk that is not JSON.)"""
    import openai

    pieces: list[str] = []  # (of the line so far: a long line is not copied again and again)
    streamed = 0
    after_cr = False
    async for text in response.iter_text():
        if not text:
            continue
        streamed += len(text)
        if streamed > MAX_STREAM_CHARS:  # a server that never stops: memory, not time
            raise openai.APIError(
                message=f"the answer passed {MAX_STREAM_CHARS:,} characters",
                request=response.http_request,
                body=None,
            )
        if after_cr and text[0] == "\n":  # (the LF of a CRLF split between two reads)
            text = text[1:]
        after_cr = text.endswith("\r")
        start = 0
        for match in _LINE_END.finditer(text):
            pieces.append(text[start : match.start()])
            line = "".join(pieces)
            pieces.clear()
            start = match.end()
            yield line
        if start < len(text):
            pieces.append(text[start:])


MAX_STREAM_CHARS = 64 * 1024 * 1024
"""The most a streamed answer may send, all its events together: far past any model's output
(its text becomes a node output, at most ``WFE_MAX_OUTPUT_BYTES``), short of a worker's memory."""


MAX_TOOL_CALLS = 64
"""Tool calls one answer may make (a longer list is cut: a model does not make more)."""


def _add_tool_call(calls: dict[int, ToolCall], delta: dict[str, Any]) -> None:
    """A streamed tool call's piece: the first names the call (id, function name), the
    others add to its arguments."""
    index = delta.get("index")
    index = index if isinstance(index, int) else len(calls)
    call = calls.get(index)
    if call is None:
        if len(calls) >= MAX_TOOL_CALLS:
            return
        call_id = delta.get("id")
        call = calls[index] = ToolCall(
            call_id if isinstance(call_id, str) and call_id else f"call_{index}", ""
        )
    function = delta.get("function")
    if isinstance(function, dict):
        name, arguments = function.get("name"), function.get("arguments")
        call.name = call.name or (name if isinstance(name, str) else "")  # (some repeat it)
        call.arguments += arguments if isinstance(arguments, str) else ""


def _reasoning(message: Any) -> str:
    """A reasoning model's thinking: ``reasoning_content`` (DeepSeek, Qwen) or ``reasoning``
    (vLLM, OpenRouter), outside the OpenAI schema (the SDK keeps unknown fields as extras)."""
    extra = getattr(message, "model_extra", None) or {}
    value = extra.get("reasoning_content") or extra.get("reasoning")
    return value if isinstance(value, str) else ""


def _reasoning_of(delta: dict[str, Any]) -> str:
    """``_reasoning`` of a streamed chunk's delta, a plain dict."""
    value = delta.get("reasoning_content") or delta.get("reasoning")
    return value if isinstance(value, str) else ""


def _usage(usage: Any) -> Usage:
    return Usage(usage.prompt_tokens or 0, usage.completion_tokens or 0, usage.total_tokens or 0)


def _usage_of(usage: dict[str, Any]) -> Usage:
    """``_usage`` of a streamed chunk's ``usage``, a plain dict."""

    def count(name: str) -> int:
        value = usage.get(name)
        return value if isinstance(value, int) else 0

    return Usage(count("prompt_tokens"), count("completion_tokens"), count("total_tokens"))


# -- failures ---------------------------------------------------------------------------------


def _where(connection: Connection) -> str:
    host = urlsplit(connection.base_url).hostname or connection.base_url
    return f"connection '{connection.name}' ({host})"


def _status_error(connection: Connection, exc: openai.APIStatusError) -> NodeError:
    status = exc.status_code
    return NodeError(
        f"{_where(connection)} answered HTTP {status}: {_server_message(connection, exc)}",
        error_type="llm_status",
        retryable=status >= 500 or status in RETRYABLE_STATUSES,
        retry_after=retry_after(exc.response.headers),
    )


def _server_message(connection: Connection, exc: openai.APIStatusError) -> str:
    """What the server said: its ``error.message`` when it answered the OpenAI way."""
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return _excerpt(connection, body["message"])
    if body is not None:
        return _excerpt(connection, orjson.dumps(body, default=str).decode())
    try:
        return _excerpt(connection, exc.response.text)
    except Exception:  # (a streamed answer not read: nothing more to say)
        return "(no message)"


def _excerpt(connection: Connection, text: str) -> str:
    text = connection.redact(text)
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[:MAX_MESSAGE_CHARS] + "…"
    return text or "(no message)"


def retry_after(headers: Any) -> float | None:
    """Seconds a server asked to wait: ``retry-after-ms``, else ``Retry-After`` (seconds or
    an HTTP date). None when absent or unreadable."""
    try:
        millis = headers.get("retry-after-ms")
        if millis is not None:
            seconds = float(millis) / 1000
        elif (value := headers.get("retry-after")) is None:
            return None
        else:
            try:
                seconds = float(value)
            except ValueError:
                seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError, OverflowError):
        return None
    return max(seconds, 0.0) if math.isfinite(seconds) else None
