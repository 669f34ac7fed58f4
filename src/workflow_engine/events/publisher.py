"""Writing events: XADD to the execution's stream. The first event of an idle publisher is
written at once; events that arrive while a write is in flight share the next round trip,
which is one call of a small Lua script that appends them all (far less Python work than a
pipeline of one command per event). A final event also sets the stream's expiry."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import orjson
import redis.asyncio as aioredis

from workflow_engine.events.model import FIELD, FINAL_TYPES, encode_entry, entry_type
from workflow_engine.keys import Keys
from workflow_engine.monitor.logging import get_logger
from workflow_engine.vocabulary import iso

log = get_logger(__name__)

# One call applies a batch of operations, in order. KEYS: one key per operation. ARGV: maxlen,
# the stream ttl, the checkpoint ttl, then per operation its kind and arguments:
#   x value        XADD an event              f value        XADD, then expire the key
#   h field value  HSET a checkpoint field    d              DEL (a checkpoint no longer needed)
#   r member       ZREM (an execution leaves its tenant's in-flight set)
#   m value        XADD if the stream exists (a child's event copied to an ancestor's stream)
APPEND = f"""
local maxlen, ttl, ckttl = ARGV[1], ARGV[2], ARGV[3]
local a = 4
for i = 1, #KEYS do
  local kind = ARGV[a]
  if kind == 'h' then
    redis.call('HSET', KEYS[i], ARGV[a + 1], ARGV[a + 2])
    redis.call('EXPIRE', KEYS[i], ckttl)
    a = a + 3
  elseif kind == 'd' then
    redis.call('DEL', KEYS[i])
    a = a + 1
  elseif kind == 'r' then
    redis.call('ZREM', KEYS[i], ARGV[a + 1])
    a = a + 2
  elseif kind == 'm' then
    if redis.call('EXISTS', KEYS[i]) == 1 then
      redis.call('XADD', KEYS[i], 'MAXLEN', '~', maxlen, '*', '{FIELD}', ARGV[a + 1])
    end
    a = a + 2
  else
    redis.call('XADD', KEYS[i], 'MAXLEN', '~', maxlen, '*', '{FIELD}', ARGV[a + 1])
    if kind == 'f' then
      redis.call('EXPIRE', KEYS[i], ttl)
    end
    a = a + 2
  end
end
return #KEYS
"""


class EventPublisher:
    """Events, and the checkpoints of running executions, written to Redis in batches.

    A checkpoint is a hash per execution (node id -> the node's result, or a marker while it
    runs): the fast copy from which a resumed run restores finished nodes. It is dropped when
    the execution ends or parks (the store then holds everything)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        maxlen: int = 10_000,
        ttl_s: int = 86_400,
        checkpoint_ttl_s: int = 7 * 86_400,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.maxlen = maxlen
        self.ttl_s = ttl_s
        self.checkpoint_ttl_s = checkpoint_ttl_s
        self._buffer: list[tuple[str, tuple[str, ...]]] = []
        self._batch: asyncio.Future[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._append = redis.register_script(APPEND)
        self._clock = _IsoClock()
        self._lost: set[str] = set()

    def publish(
        self,
        execution_id: str,
        event_type: str,
        data: Any,
        *,
        final: bool = False,
        drop_checkpoint: bool = False,
    ) -> asyncio.Future[None]:
        """Queue an event; the future resolves when it (and everything before it) is in Redis.
        A ``final`` event sets the stream's expiry and drops the checkpoint."""
        entry = encode_entry(event_type, self._clock.now(), data)
        batch = self._queue(self.keys.events(execution_id), ("f" if final else "x", entry))
        if final or drop_checkpoint:
            self._queue(self.keys.checkpoint(execution_id), ("d",))
        return batch

    def mirror(self, execution_id: str, event_type: str, data: Any) -> asyncio.Future[None]:
        """Queue a copy of another execution's event (a child's node event) for this
        execution's stream; written only while the stream exists, so a copy never makes a
        stream without an expiry."""
        entry = encode_entry(event_type, self._clock.now(), data)
        return self._queue(self.keys.events(execution_id), ("m", entry))

    def checkpoint(self, execution_id: str, node_id: str, result: Any) -> asyncio.Future[None]:
        """Queue a node's checkpoint (its result as a dict, or a running marker)."""
        value = orjson.dumps(result).decode()
        return self._queue(self.keys.checkpoint(execution_id), ("h", node_id, value))

    def index_client(self, tenant_id: str, client_id: str, execution_id: str) -> None:
        """Record that ``client_id`` has a new execution (for client-wide subscriptions)."""
        self._queue(self.keys.client_index(tenant_id, client_id), ("f", execution_id))

    def leave(self, tenant_id: str, execution_id: str) -> asyncio.Future[None]:
        """Queue the execution's removal from its tenant's in-flight set (it ended or parked);
        called right after its final or waiting event, it shares that event's round trip."""
        return self._queue(self.keys.tenant_active(tenant_id), ("r", execution_id))

    def lost_events(self, execution_id: str) -> bool:
        """Whether some of the execution's events could not be written since the last time
        this was asked (the caller rebuilds them from the store: ``worker/repair.py``)."""
        key = self.keys.events(execution_id)
        if key not in self._lost:
            return False
        self._lost.discard(key)
        return True

    def _queue(self, key: str, op: tuple[str, ...]) -> asyncio.Future[None]:
        self._buffer.append((key, op))
        if self._batch is None:
            self._batch = asyncio.get_running_loop().create_future()
            self._batch.add_done_callback(_retrieve)
        batch = self._batch
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush_loop())
        return batch

    async def _write(self, keys: list[str], args: list[Any]) -> None:
        """One batch, retried a few times over a connection blip: events lost here would be a
        gap in every replay."""
        for delay in RETRY_DELAYS:
            try:
                await self._append(keys=keys, args=args)
                return
            except aioredis.ConnectionError as exc:  # not sent: safe to send again
                log.info("writing events failed; retrying", error=repr(exc), delay=delay)
                await asyncio.sleep(delay)
        await self._append(keys=keys, args=args)

    async def flush(self) -> None:
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    async def _flush_loop(self) -> None:
        while self._buffer:
            await asyncio.sleep(0)  # let ready tasks add to this round trip
            pending, self._buffer = self._buffer, []
            batch, self._batch = self._batch, None
            keys = [key for key, _ in pending]
            args: list[Any] = [self.maxlen, self.ttl_s, self.checkpoint_ttl_s]
            for _, op in pending:
                args.extend(op)
            try:
                await self._write(keys, args)
            except Exception as exc:
                log.warning("events not written", operations=len(pending), error=repr(exc))
                if len(self._lost) < MAX_LOST:
                    streams = self.keys.events("")
                    self._lost.update(key for key, _ in pending if key.startswith(streams))
                if batch is not None and not batch.done():
                    batch.set_exception(exc)
                continue
            if batch is not None and not batch.done():
                batch.set_result(None)


async def read_checkpoint(redis: aioredis.Redis, keys: Keys, execution_id: str) -> dict[str, Any]:
    """A running execution's checkpoint: node id -> what was recorded for it."""
    raw: dict[str, str] = cast(Any, await redis.hgetall(keys.checkpoint(execution_id)))
    return {node_id: orjson.loads(value) for node_id, value in raw.items()}


async def has_final_event(redis: aioredis.Redis, key: str) -> bool:
    """Whether one of the stream's newest entries ends the execution (a worker that had not
    yet heard of a cancel may have added a few events after it)."""
    last: list[tuple[str, dict[str, str]]] = cast(Any, await redis.xrevrange(key, count=50))
    return any(entry_type(fields) in FINAL_TYPES for _, fields in last)


RETRY_DELAYS = (0.05, 0.2, 0.5)
MAX_LOST = 100_000
"""Streams remembered as having lost events (a resumed run repairs its stream anyway)."""


class _IsoClock:
    """ISO 8601 timestamps, formatted once per millisecond (events come in bursts)."""

    def __init__(self) -> None:
        self._ms = -1
        self._text = ""

    def now(self) -> str:
        ms = int(time.time() * 1000)
        if ms != self._ms:
            self._ms, self._text = ms, iso(ms / 1000) or ""
        return self._text


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()  # logged by the flusher; nobody else may be waiting
