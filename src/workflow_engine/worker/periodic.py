"""Jobs that every worker runs on a timer but that must happen once per interval across all
of them (cleanup, recovery): whoever sets the interval's key first does the work."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

from workflow_engine.monitor.logging import get_logger

log = get_logger(__name__)

MOST_SLEEP_S = 60.0


async def my_turn(redis: aioredis.Redis, key: str, interval_s: float, token: str = "1") -> bool:
    """True for exactly one caller per ``interval_s`` (the key expires after it)."""
    return bool(await redis.set(key, token, nx=True, px=int(interval_s * 1000)))


async def repeat(name: str, interval_s: float, job: Callable[[], Awaitable[Any]]) -> None:
    """Call ``job`` about every ``interval_s`` (checking at least every minute) until
    cancelled; a failure (the store or Redis away) waits for the next turn."""
    while True:
        try:
            await job()
        except Exception as exc:
            log.warning(f"{name} failed", error=repr(exc))
        await asyncio.sleep(min(interval_s, MOST_SLEEP_S))
