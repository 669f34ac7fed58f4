"""``http``: one HTTP request with httpx. Cancelling the node aborts the request in flight.

The client is the executor's: every connection it opens, redirects included, passes the egress
policy (``workflow_engine.egress``); a refused address fails the node with ``egress_denied``.

With ``stream``, the body is published with ``ctx.stream`` as it arrives: one chunk per event of a
``text/event-stream`` (server-sent events, e.g. an LLM streaming API), decoded text otherwise.
"""

from __future__ import annotations

import asyncio
import codecs
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

import orjson
from pydantic import Field, model_validator

from workflow_engine.errors import NodeError, NodeTimeoutError
from workflow_engine.nodes.base import NodeContext, NodeInputs, NodeType
from workflow_engine.sse import SseParser

if TYPE_CHECKING:
    import httpx

MAX_RESPONSE_BYTES = 10 * 1024 * 1024
DEFAULT_TIMEOUT = 30.0
RETRYABLE_STATUSES = frozenset({408, 425, 429})

Scalar = str | int | float | bool


class HttpInputs(NodeInputs):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] = "GET"
    url: str = Field(pattern=r"^https?://", description="http:// or https:// URL.")
    headers: dict[str, Scalar] = Field(default_factory=dict)
    query: dict[str, Scalar | list[Scalar] | None] = Field(default_factory=dict)
    json_body: Any = Field(None, alias="json")
    body: str | None = None
    timeout: float | None = Field(
        None, gt=0, description="Seconds for the whole request, body included; default 30."
    )
    raise_for_status: bool = True
    follow_redirects: bool = True
    stream: bool = Field(False, description="Publish the body as it arrives (node.stream).")

    @model_validator(mode="after")
    def _one_body(self) -> HttpInputs:
        if self.json_body is not None and self.body is not None:
            raise ValueError("give either `json` or `body`, not both")
        return self


class HttpNode(NodeType[HttpInputs]):
    type_name = "http"
    description = "Sends an HTTP request; output `{status, headers, body}`."
    Inputs = HttpInputs

    async def run(self, ctx: NodeContext, inputs: HttpInputs) -> Any:
        # Imported here, not with the module: every registry loads this module (``wfe validate``
        # too), and httpx takes ~0.1 s to import (it loads its own CLI: click, rich, pygments).
        # A run has it already: the executor made ``ctx.http``.
        import httpx

        deadline = inputs.timeout if inputs.timeout is not None else DEFAULT_TIMEOUT
        url = httpx.URL(inputs.url)
        query = {k: v for k, v in inputs.query.items() if v is not None}
        request = ctx.http.build_request(
            inputs.method,
            url.copy_merge_params(query) if query else url,  # keeps a query already in the URL
            headers={k: str(v) for k, v in inputs.headers.items()},
            json=inputs.json_body,
            content=inputs.body,
            timeout=inputs.timeout if inputs.timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )
        try:
            # ``timeout`` is the whole request's deadline (connect, redirects, every byte of the
            # body); httpx's own applies per operation, and an upstream sending a byte a
            # second would never trip it.
            async with asyncio.timeout(deadline):
                response = await ctx.http.send(
                    request, stream=True, follow_redirects=inputs.follow_redirects
                )
                try:
                    failed = inputs.raise_for_status and response.status_code >= 400
                    if inputs.stream and not failed:  # an error answer is not streamed
                        content, events = await _read_streaming(ctx, response)
                    else:
                        content, events = await read_capped(response), None
                finally:
                    await response.aclose()
        except TimeoutError as exc:
            raise NodeTimeoutError(
                f"{inputs.method} {inputs.url} timed out (deadline {deadline} s)"
            ) from exc
        except httpx.TimeoutException as exc:
            raise NodeTimeoutError(f"{inputs.method} {inputs.url} timed out ({exc!r})") from exc
        except httpx.HTTPError as exc:
            raise NodeError(
                f"{inputs.method} {inputs.url} failed: {exc!r}", error_type="http_error"
            ) from exc
        if failed:
            status = response.status_code
            raise NodeError(
                f"{inputs.method} {inputs.url} answered HTTP {status}: {excerpt(content)}",
                error_type="http_status",
                retryable=status >= 500 or status in RETRYABLE_STATUSES,
            )
        return {
            "status": response.status_code,
            "headers": dict(response.headers.items()),
            "body": events if events is not None else decode_body(response, content),
        }


async def _read_streaming(
    ctx: NodeContext, response: httpx.Response
) -> tuple[bytes, list[dict[str, Any]] | None]:
    """Read the body, publishing it as it arrives. A ``text/event-stream`` is published (and
    returned: they are the body) as event dicts, anything else as ``{"text": ...}`` pieces."""
    content_type = response.headers.get("content-type", "")
    if content_type.partition(";")[0].strip().lower() == "text/event-stream":
        parser = SseParser()
        events: list[dict[str, Any]] = []

        async def publish_events(data: bytes) -> None:
            for event in parser.feed(data):
                events.append(event)
                await ctx.stream(event)

        return await read_capped(response, publish_events), events

    # incremental: a character split across two network chunks is decoded once both arrived
    decoder = codecs.getincrementaldecoder(response.encoding or "utf-8")(errors="replace")

    async def publish_text(data: bytes, final: bool = False) -> None:
        if text := decoder.decode(data, final):
            await ctx.stream({"text": text})

    content = await read_capped(response, publish_text)
    await publish_text(b"", final=True)
    return content, None


async def read_capped(
    response: httpx.Response, on_data: Callable[[bytes], Awaitable[None]] | None = None
) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise NodeError(
                f"response body exceeds {MAX_RESPONSE_BYTES} bytes",
                error_type="http_error",
                retryable=False,
            )
        chunks.append(chunk)
        if on_data is not None:
            await on_data(chunk)
    return b"".join(chunks)


def decode_body(response: httpx.Response, content: bytes) -> Any:
    content_type = response.headers.get("content-type", "").lower()
    if "json" in content_type and content:
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError:
            pass
    return content.decode(response.encoding or "utf-8", errors="replace")


def excerpt(content: bytes, limit: int = 200) -> str:
    text = content[:limit].decode("utf-8", errors="replace")
    return text + ("…" if len(content) > limit else "")
