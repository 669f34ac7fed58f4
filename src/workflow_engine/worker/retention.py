"""Retention: finished executions older than ``retention_days`` leave the store, with their
node results, event streams and checkpoints. Every worker runs the loop; a Redis key makes
one of them do the work per interval, and a lock keeps two from doing it at once."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import redis.asyncio as aioredis

from workflow_engine.keys import Keys
from workflow_engine.monitor.logging import get_logger
from workflow_engine.store.base import StateStore
from workflow_engine.worker.periodic import my_turn

log = get_logger(__name__)

LOCK_TTL_MS = 10 * 60_000
DELETE_CHUNK = 500

# release the lock only if it is still ours
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


async def forget_streams(redis: aioredis.Redis, keys: Keys, execution_ids: Sequence[str]) -> None:
    """Delete the event streams and checkpoints of executions that are gone."""
    for start in range(0, len(execution_ids), DELETE_CHUNK):
        chunk = execution_ids[start : start + DELETE_CHUNK]
        await redis.unlink(*(keys.events(i) for i in chunk), *(keys.checkpoint(i) for i in chunk))


class Retention:
    def __init__(
        self,
        store: StateStore,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        days: float,
        interval_s: float,
        worker_id: str = "",
    ) -> None:
        self.store = store
        self.redis = redis
        self.keys = keys
        self.days = days
        self.interval_s = interval_s
        self.worker_id = worker_id
        self._release = redis.register_script(_RELEASE)

    async def run_once(self) -> list[str] | None:
        """Clean up if this interval's cleanup is not done or running elsewhere; the ids
        removed, or None when another worker has it."""
        token = f"{self.worker_id}:{secrets.token_hex(8)}"
        if not await my_turn(
            self.redis, self.keys.maintenance("cleanup-due"), self.interval_s, token
        ):
            return None
        lock = self.keys.maintenance("cleanup-lock")
        if not await self.redis.set(lock, token, nx=True, px=LOCK_TTL_MS):
            return None
        try:
            removed = await self.store.cleanup(self.days)
            await forget_streams(self.redis, self.keys, removed)
        finally:
            await self._release(keys=[lock], args=[token])
        log.info("retention cleanup", removed=len(removed), days=self.days)
        return removed
