"""Redis clients whose connection pool waits for a free connection instead of failing.

redis-py (>= 6) caps an asyncio pool at 100 connections and raises ``MaxConnectionsError`` as
soon as a burst needs one more: 250 submits at once would get 503s from a healthy Redis. Here a
command waits up to ``wait_s`` for a connection; only then is it an error."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

MAX_CONNECTIONS = 256
POOL_WAIT_S = 5.0


def pooled_client(
    url: str,
    *,
    max_connections: int = MAX_CONNECTIONS,
    wait_s: float = POOL_WAIT_S,
    **options: Any,
) -> aioredis.Redis:
    """A client for ``url`` (``options`` as for ``Redis.from_url``) that owns its pool."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=wait_s, **options
    )
    return aioredis.Redis.from_pool(pool)
