"""Writing events: XADD to the execution's stream, pipelined. The first event of an idle
publisher is written at once; events that arrive while a write is in flight share the next
round trip. A final event also sets the stream's expiry."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from workflow_engine.engine.results import iso
from workflow_engine.events.model import encode_fields
from workflow_engine.keys import Keys
from workflow_engine.monitor.logging import get_logger
from workflow_engine.store.records import now_ms

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class _Pending:
    key: str
    fields: dict[str, str]
    expire: bool


class EventPublisher:
    def __init__(
        self, redis: aioredis.Redis, keys: Keys, *, maxlen: int = 10_000, ttl_s: int = 86_400
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.maxlen = maxlen
        self.ttl_s = ttl_s
        self._buffer: list[_Pending] = []
        self._batch: asyncio.Future[None] | None = None
        self._flusher: asyncio.Task[None] | None = None

    def publish(
        self, execution_id: str, event_type: str, data: Any, *, final: bool = False
    ) -> asyncio.Future[None]:
        """Queue an event; the future resolves when it (and everything before it) is in Redis."""
        fields = encode_fields(event_type, _now_iso(), data)
        self._buffer.append(_Pending(self.keys.events(execution_id), fields, final))
        if self._batch is None:
            self._batch = asyncio.get_running_loop().create_future()
            self._batch.add_done_callback(_retrieve)
        batch = self._batch
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush_loop())
        return batch

    def index_client(self, tenant_id: str, client_id: str, execution_id: str) -> None:
        """Record that ``client_id`` has a new execution (for client-wide subscriptions)."""
        self._buffer.append(
            _Pending(self.keys.client_index(tenant_id, client_id), {"e": execution_id}, True)
        )
        if self._batch is None:
            self._batch = asyncio.get_running_loop().create_future()
            self._batch.add_done_callback(_retrieve)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush_loop())

    async def flush(self) -> None:
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    async def _flush_loop(self) -> None:
        while self._buffer:
            await asyncio.sleep(0)  # let ready tasks add to this round trip
            pending, self._buffer = self._buffer, []
            batch, self._batch = self._batch, None
            pipe = self.redis.pipeline(transaction=False)
            for item in pending:
                fields: dict[Any, Any] = dict(item.fields)
                pipe.xadd(item.key, fields, maxlen=self.maxlen, approximate=True)
                if item.expire:
                    pipe.expire(item.key, self.ttl_s)
            try:
                await pipe.execute()
            except Exception as exc:
                log.warning("events not written", events=len(pending), error=repr(exc))
                if batch is not None and not batch.done():
                    batch.set_exception(exc)
                continue
            if batch is not None and not batch.done():
                batch.set_result(None)


def _now_iso() -> str:
    return iso(now_ms() / 1000) or ""


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()  # logged by the flusher; nobody else may be waiting
