"""Cancel requests reach every worker over Redis pub/sub; the one running the execution
cancels it (an HTTP call in flight is aborted), the others remember it for a while."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from workflow_engine.keys import Keys
from workflow_engine.monitor.logging import get_logger
from workflow_engine.reconnect import keep_connected
from workflow_engine.redis_pool import from_url
from workflow_engine.worker.runner import JobRunner

log = get_logger(__name__)


class CancelListener:
    def __init__(self, redis_url: str, keys: Keys, runner: JobRunner) -> None:
        self.redis_url = redis_url
        self.channel = keys.cancel_channel
        self.runner = runner
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())
        await asyncio.wait_for(self._ready.wait(), timeout=10)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        await keep_connected(self._listen, log=log, lost="cancel channel lost; resubscribing")

    async def _listen(self, connected: Callable[[], None]) -> None:
        client = from_url(self.redis_url, decode_responses=True)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self.channel)
            self._ready.set()
            connected()
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    self.runner.request_cancel(str(message["data"]))
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            with contextlib.suppress(Exception):
                await client.aclose()
