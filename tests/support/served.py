"""The API on a real socket in this process (uvicorn), for WebSocket and streaming tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn

from tests.support.processes import wait_until
from tests.support.services import free_port


@asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    """``host:port`` of ``app`` served by uvicorn until the block ends."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.ensure_future(server.serve())

    async def started() -> bool:
        return server.started

    try:
        await wait_until(started, 10, "uvicorn to start")
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
