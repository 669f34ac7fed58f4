"""A Redis client that writes the commands of one event-loop iteration as one pipeline (what
ioredis calls auto-pipelining; redis-py has no such option).

Each caller awaits its own command as with any client and gets its own reply or error; the
commands of callers that were cancelled before their batch left are not sent. A batch that
fails as a whole (the connection is gone after the pool's retries) fails each of its commands,
as each alone would have failed. At most ``MAX_IN_FLIGHT`` batches are in flight, each holding
one connection of the pool: while Redis stalls, later commands gather into the next batch
instead of taking connection after connection until the pool refuses one (a refusal is a
``ConnectionError``, not retried: a finished job's acknowledgement would fail).

Not for blocking commands (``BZPOPMIN``, ``XREAD BLOCK``): one would hold up its batch."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

_Pending = tuple[tuple[Any, ...], dict[str, Any], "asyncio.Future[Any]"]

MAX_IN_FLIGHT = 8


class AutoPipeline(aioredis.Redis):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending: list[_Pending] = []
        self._scheduled = False
        self._sending: set[asyncio.Task[None]] = set()  # (the loop keeps weak references)

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((args, options, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        if len(self._sending) >= MAX_IN_FLIGHT:
            return  # the next batch leaves when one of these is back (``_sent``)
        batch = [pending for pending in self._pending if not pending[2].done()]
        self._pending = []
        if batch:
            task = asyncio.ensure_future(self._send(batch))
            self._sending.add(task)
            task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        if self._pending and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    async def _send(self, batch: list[_Pending]) -> None:
        try:
            if len(batch) == 1:
                args, options, _ = batch[0]
                results = [await super().execute_command(*args, **options)]  # type: ignore[no-untyped-call]
            else:
                async with self.pipeline(transaction=False) as pipe:
                    for args, options, _ in batch:
                        pipe.execute_command(*args, **options)
                    results = await pipe.execute(raise_on_error=False)
        except BaseException as exc:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, _, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
