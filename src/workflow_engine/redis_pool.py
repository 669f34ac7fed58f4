"""Redis clients from ``WFE_REDIS_URL``: a plain ``redis://`` URL, or Sentinel's
``redis+sentinel://host:26379,host2:26379/mymaster/0`` (redis-py's ``Sentinel``: the client
asks the sentinels for the current primary, and again after a failover).

``pooled_client``'s pool waits for a free connection instead of failing: redis-py (>= 6) caps
an asyncio pool at 100 connections and raises ``MaxConnectionsError`` as soon as a burst needs
one more: 250 submits at once would get 503s from a healthy Redis. Here a command waits up to
``wait_s`` for a connection; only then is it an error (with Sentinel, the pool is Sentinel's:
it does not wait)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

MAX_CONNECTIONS = 256
POOL_WAIT_S = 5.0
SENTINEL_SCHEMES = frozenset({"redis+sentinel", "rediss+sentinel"})
SENTINEL_PORT = 26379


@dataclass(frozen=True, slots=True)
class SentinelUrl:
    sentinels: list[tuple[str, int]]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    ssl: bool = False


def is_sentinel(url: str) -> bool:
    return urlsplit(url).scheme in SENTINEL_SCHEMES


def parse_sentinel(url: str) -> SentinelUrl:
    """``redis+sentinel://[user:password@]host[:port][,host2[:port]...]/service[/db]``; the
    password is the primary's (and the sentinels', when they ask for one). ``ValueError``
    for a URL without hosts or service."""
    parts = urlsplit(url)
    credentials, _, hosts = parts.netloc.rpartition("@")
    username, _, password = credentials.partition(":")
    sentinels = []
    for host in filter(None, hosts.split(",")):
        name, colon, port = host.rpartition(":")
        if not colon or not port.isdigit():
            name, port = host, str(SENTINEL_PORT)
        sentinels.append((name.strip("[]"), int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not sentinels or not path:
        raise ValueError("a Sentinel URL is redis+sentinel://host:26379[,host2]/service[/db]")
    return SentinelUrl(
        sentinels,
        unquote(path[0]),
        int(path[1]) if len(path) > 1 and path[1].isdigit() else 0,
        unquote(username) or None,
        unquote(password) or None,
        parts.scheme.startswith("rediss"),
    )


def from_url(url: str, **options: Any) -> aioredis.Redis:
    """``Redis.from_url``, for Sentinel URLs too."""
    if not is_sentinel(url):
        return aioredis.Redis.from_url(url, **options)
    return _sentinel_client(url, options)


def pooled_client(
    url: str,
    *,
    max_connections: int = MAX_CONNECTIONS,
    wait_s: float = POOL_WAIT_S,
    **options: Any,
) -> aioredis.Redis:
    """A client for ``url`` (``options`` as for ``Redis.from_url``) that owns its pool."""
    if is_sentinel(url):
        return _sentinel_client(url, {**options, "max_connections": max_connections})
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=wait_s, **options
    )
    return aioredis.Redis.from_pool(pool)


def _sentinel_client(url: str, options: dict[str, Any]) -> aioredis.Redis:
    spec = parse_sentinel(url)
    single = bool(options.pop("single_connection_client", False))
    auth = {"username": spec.username, "password": spec.password}
    timeouts = {k: options[k] for k in ("socket_connect_timeout", "socket_timeout") if k in options}
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        spec.sentinels,
        sentinel_kwargs={**timeouts, **{k: v for k, v in auth.items() if v}},
    )
    connection = {**options, **auth, "db": spec.db}
    if spec.ssl:
        connection["ssl"] = True
    pool = SentinelConnectionPool(  # type: ignore[no-untyped-call]
        spec.service, sentinel, is_master=True, **connection
    )
    client = aioredis.Redis(connection_pool=pool, single_connection_client=single)
    client.auto_close_connection_pool = True
    return client
