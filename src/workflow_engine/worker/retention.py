"""Retention: finished executions older than ``retention_days`` leave the store, with their
node results, event streams and checkpoints. Every worker runs the loop; a Redis key makes
one of them do the work per interval, and a lock keeps two from doing it at once."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.asyncio.lock import Lock
from redis.exceptions import LockNotOwnedError

from workflow_engine.keys import Keys
from workflow_engine.monitor.logging import get_logger
from workflow_engine.store.base import StateStore
from workflow_engine.worker.periodic import my_turn

log = get_logger(__name__)

LOCK_TTL_S = 10 * 60.0
DELETE_CHUNK = 500


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

    async def run_once(self) -> list[str] | None:
        """Clean up if this interval's cleanup is not done or running elsewhere; the ids
        removed, or None when another worker has it."""
        token = f"{self.worker_id}:{secrets.token_hex(8)}"
        if not await my_turn(
            self.redis, self.keys.maintenance("cleanup-due"), self.interval_s, token
        ):
            return None
        lock = self.redis.lock(
            self.keys.maintenance("cleanup-lock"), timeout=LOCK_TTL_S, blocking=False
        )
        if not await lock.acquire(token=token):
            return None
        try:
            removed = await self.store.cleanup(self.days)
            await forget_streams(self.redis, self.keys, removed)
        finally:
            await _release(lock)
        log.info("retention cleanup", removed=len(removed), days=self.days)
        return removed


async def _release(lock: Lock) -> None:
    """Release the lock if it is still ours: one that outlived its TTL may be another's now."""
    try:
        await lock.release()
    except LockNotOwnedError:
        log.warning("the cleanup outlasted its lock", lock_ttl_s=LOCK_TTL_S)
