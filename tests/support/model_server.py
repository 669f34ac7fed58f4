"""An OpenAI-compatible stand-in for the ``llm`` node's tests: ``POST /v1/chat/completions``
answered as the real API answers, streamed (``data: {chat.completion.chunk}`` lines, a last
chunk with ``usage`` when ``stream_options.include_usage`` asks for it, ``data: [DONE]``) or
whole, with replies the test scripts (``server.script(...)``): an answer in N pieces (slowly,
reasoning first as DeepSeek does), JSON, an HTTP error (429 with ``Retry-After``, 500, 401...),
a stall. It records every request (body, headers, when it came) and whether the client hung up
before the answer was over.

A plain ASGI app: it watches ``receive()`` for ``http.disconnect`` while it answers, so it sees
a client close the connection at any point (before the headers, mid-stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.support.served import served

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

PATH = "/v1/chat/completions"


@dataclass
class Answer:
    """An answer in ``pieces`` (content deltas when streamed), after ``reasoning`` deltas;
    ``delay`` seconds between two deltas; ``stall_after``: stop after that many content
    deltas and wait until the client hangs up."""

    pieces: list[str]
    reasoning: list[str] = field(default_factory=list)
    delay: float = 0.0
    finish_reason: str = "stop"
    stall_after: int | None = None
    error_after: int | None = None
    """Send an ``{"error": ...}`` chunk after that many content deltas, as a server that fails
    mid-answer does (overloaded), and end the stream."""
    tool_calls: list[tuple[str, str]] = field(default_factory=list)
    """``(function name, JSON arguments)``: the answer calls these (streamed as OpenAI does:
    the call's id and name first, then its arguments in two pieces)."""

    @classmethod
    def calls(cls, *calls: tuple[str, Any], text: str = "") -> Answer:
        """An answer calling functions (``(name, arguments)``), with ``text`` before them."""
        return cls(
            [text] if text else [],
            finish_reason="tool_calls",
            tool_calls=[(name, json.dumps(args)) for name, args in calls],
        )

    @classmethod
    def text(cls, text: str, pieces: int = 1, **options: Any) -> Answer:
        size = max(len(text) // pieces, 1)
        return cls([text[i : i + size] for i in range(0, len(text), size)], **options)

    @classmethod
    def json(cls, value: Any, **options: Any) -> Answer:
        return cls.text(json.dumps(value), pieces=3, **options)

    @property
    def content(self) -> str:
        return "".join(self.pieces)


@dataclass
class Failure:
    """An HTTP error, with the OpenAI error body (``{"error": {message, type, code}}``)."""

    status: int
    message: str
    retry_after: str | None = None
    code: str | None = None


@dataclass
class Stall:
    """No answer at all (not even the headers) until the client hangs up."""


Reply = Answer | Failure | Stall


@dataclass
class Exchange:
    """One request and what became of it."""

    body: dict[str, Any]
    headers: dict[str, str]
    received_at: float  # time.monotonic()
    reply: Reply
    deltas_sent: int = 0
    finishing: bool = False  # the last byte of the answer is being sent
    closed_at: float | None = None  # the client hung up before the answer was over
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def streamed(self) -> bool:
        return bool(self.body.get("stream"))


class ModelServer:
    """The ASGI app. ``script`` queues replies, one per request; with none queued it answers
    ``default``."""

    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.default: Reply = Answer(["Hello", " there"])
        self.exchanges: list[Exchange] = []
        self.arrived = asyncio.Event()  # set at each request
        self.base_url = ""
        self._ids = itertools.count(1)

    def script(self, *replies: Reply) -> ModelServer:
        self.replies.extend(replies)
        return self

    async def wait_for_requests(self, count: int, timeout: float = 10) -> list[Exchange]:
        async with asyncio.timeout(timeout):
            while len(self.exchanges) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.exchanges

    # -- ASGI ---------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["method"] != "POST" or scope["path"] != PATH:
            await _send_json(send, 404, {"error": {"message": f"no route {scope['path']}"}})
            return
        body = await _read_body(receive)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        reply = self.replies.popleft() if self.replies else self.default
        exchange = Exchange(json.loads(body), headers, time.monotonic(), reply)
        self.exchanges.append(exchange)
        self.arrived.set()
        watcher = asyncio.ensure_future(_watch_hang_up(receive, exchange))
        try:
            await self._answer(exchange, send)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _answer(self, exchange: Exchange, send: Send) -> None:
        reply = exchange.reply
        if isinstance(reply, Stall):
            await exchange.closed.wait()
            return
        if isinstance(reply, Failure):
            error = {"message": reply.message, "type": "error", "param": None, "code": reply.code}
            extra = {"retry-after": reply.retry_after} if reply.retry_after is not None else {}
            exchange.finishing = True
            await _send_json(send, reply.status, {"error": error}, extra)
            return
        if exchange.streamed:
            await self._stream(exchange, reply, send)
        else:
            exchange.finishing = True
            await _send_json(send, 200, self._completion(exchange, reply))

    async def _stream(self, exchange: Exchange, answer: Answer, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream; charset=utf-8")],
            }
        )
        chunk_id = f"chatcmpl-{next(self._ids)}"
        usage_asked = bool((exchange.body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return self._chunk(exchange, chunk_id, delta, finish, usage_asked)

        deltas = [{"role": "assistant", "content": "", "refusal": None}]
        deltas += [{"content": None, "reasoning_content": r} for r in answer.reasoning]
        deltas += [{"content": p} for p in answer.pieces]
        for index, (name, arguments) in enumerate(answer.tool_calls):
            half = len(arguments) // 2
            call = {"index": index, "id": f"{chunk_id}-call{index}", "type": "function"}
            deltas.append({"tool_calls": [{**call, "function": {"name": name, "arguments": ""}}]})
            for piece in (arguments[:half], arguments[half:]):
                deltas.append({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        for index, delta in enumerate(deltas):
            if answer.stall_after is not None and exchange.deltas_sent >= answer.stall_after:
                await exchange.closed.wait()
                return
            if answer.error_after is not None and exchange.deltas_sent >= answer.error_after:
                failure = {"message": "The server is overloaded", "type": "server_error"}
                await _event(send, {"error": failure})
                await send({"type": "http.response.body", "body": b""})
                return
            if index > 1 and answer.delay and await _closed_within(exchange, answer.delay):
                return
            await _event(send, chunk(delta))
            if delta.get("content"):
                exchange.deltas_sent += 1
        await _event(send, chunk({}, answer.finish_reason))
        if usage_asked:
            last = chunk({})
            last["choices"], last["usage"] = [], _usage(exchange.body, answer)
            await _event(send, last)
        exchange.finishing = True
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    def _chunk(
        self,
        exchange: Exchange,
        chunk_id: str,
        delta: dict[str, Any],
        finish: str | None,
        usage_asked: bool,
    ) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": chunk_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": exchange.body.get("model"),
            "system_fingerprint": "fp_standin",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if usage_asked:
            chunk["usage"] = None
        return chunk

    def _completion(self, exchange: Exchange, answer: Answer) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": answer.content, "refusal": None}
        if answer.reasoning:
            message["reasoning_content"] = "".join(answer.reasoning)
        if answer.tool_calls:
            message["tool_calls"] = [
                {
                    "id": f"call_{i}",
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
                for i, (name, arguments) in enumerate(answer.tool_calls)
            ]
            message["content"] = answer.content or None
        return {
            "id": f"chatcmpl-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": exchange.body.get("model"),
            "system_fingerprint": "fp_standin",
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": answer.finish_reason,
                }
            ],
            "usage": _usage(exchange.body, answer),
        }


def _usage(body: dict[str, Any], answer: Answer) -> dict[str, int]:
    """Tokens counted as words (prompt) and deltas (completion): predictable for the tests."""
    prompt = sum(
        len(m["content"].split())
        for m in body.get("messages", [])
        if isinstance(m.get("content"), str)
    )
    completion = len(answer.pieces) + len(answer.reasoning)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


async def _watch_hang_up(receive: Receive, exchange: Exchange) -> None:
    """Wait for ``http.disconnect``: before the answer ended, the client hung up. (uvicorn
    also reports it once the answer is complete, which ``finishing`` tells apart.)"""
    while (await receive())["type"] != "http.disconnect":
        pass
    if not exchange.finishing:
        exchange.closed_at = time.monotonic()
        exchange.closed.set()


async def _closed_within(exchange: Exchange, seconds: float) -> bool:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await exchange.closed.wait()
    return exchange.closed.is_set()


async def _event(send: Send, data: dict[str, Any]) -> None:
    payload = f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()  # (raw UTF-8, as vLLM)
    await send({"type": "http.response.body", "body": payload, "more_body": True})


async def _send_json(
    send: Send, status: int, body: Any, headers: dict[str, str] | None = None
) -> None:
    raw = [(b"content-type", b"application/json")]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


async def _read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


@asynccontextmanager
async def model_server() -> AsyncIterator[ModelServer]:
    """A ``ModelServer`` on a free loopback port; ``base_url`` is its API root (``.../v1``)."""
    server = ModelServer()
    async with served(server) as address:
        server.base_url = f"http://{address}/v1"
        yield server
