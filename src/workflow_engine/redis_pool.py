"""Redis clients from ``WFE_REDIS_URL``: a plain ``redis://`` URL, or Sentinel's
``redis+sentinel://host:26379,host2:26379/mymaster/0`` (redis-py's ``Sentinel``: the client
asks the sentinels for the current primary, and again after a failover).

``pooled_client``'s pool waits for a free connection instead of failing: redis-py (>= 6) caps
an asyncio pool at 100 connections and raises ``MaxConnectionsError`` as soon as a burst needs
one more: 250 submits at once would get 503s from a healthy Redis. Here a command waits up to
``wait_s`` for a connection; only then is it an error (with Sentinel, the pool is Sentinel's:
it does not wait).

Sentinel connections are ``PrimaryFollowingConnection``s: each (re)connect asks the sentinels
where the primary is now (redis-py's own reconnect, inside a command's retries, goes back to
the address the connection had: see the class)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.connection import SSLConnection
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection

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


class PrimaryFollowingConnection(SentinelManagedConnection):
    """A connection of a ``SentinelConnectionPool`` that asks the sentinels for the primary's
    address every time it opens its socket, however it comes to (re)connect.

    redis-py's ``SentinelManagedConnection`` asks only in ``connect()``, which the pool calls
    when it hands out a connection. A command that loses its connection is retried on the
    same connection object (``Redis.execute_command``: ``conn.retry.call_with_retry``), and
    that reconnects through ``send_packed_command`` -> ``connect_check_health`` -> ``_connect``
    (redis/asyncio/connection.py), straight to the ``host``/``port`` it had: the dead primary.
    With the worker's patient ``Retry`` (``bullmq_adapter.quick_retry``: 30 tries, about a
    minute) its ``BZPOPMIN`` and ``moveToActive`` kept knocking at the old primary after the
    failover, and BullMQ then waited ``runRetryDelay`` (15 s) more: no job was taken for well
    over a minute. A demoted primary (``READONLY``) was reconnected to in the same way.
    (redis-py issue #3874; so in redis-py 8.1.)"""

    async def connect(self) -> None:
        if not self.connection_pool.is_master:
            await super().connect()  # type: ignore[no-untyped-call]  # replicas: rotated
            return
        # the socket connect and its retries in one place: ``_connect``, which asks first
        await self.connect_check_health(check_health=self.connection_pool.check_connection)

    async def _connect(self) -> None:
        if self.connection_pool.is_master:
            self.host, self.port = await self.connection_pool.get_master_address()
        await super()._connect()  # type: ignore[no-untyped-call]


class PrimaryFollowingSSLConnection(PrimaryFollowingConnection, SSLConnection):
    """``PrimaryFollowingConnection`` over TLS (``rediss+sentinel://``)."""


def is_sentinel(url: str) -> bool:
    return urlsplit(url).scheme in SENTINEL_SCHEMES


def parse_sentinel(url: str) -> SentinelUrl:
    """``redis+sentinel://[user:password@]host[:port][,host2[:port]...]/service[/db]``; the
    password is the primary's (and the sentinels', when they ask for one). As in any URL, a
    user name or password is percent-encoded (``/`` is ``%2F``, ``@`` ``%40``, ``:`` in a user
    name ``%3A``, ``%`` ``%25``; ``urllib.parse.quote(password, safe="")``). ``ValueError`` for
    a URL without hosts or service, or with an unencoded ``/``, ``?`` or ``#`` before an ``@``."""
    parts = urlsplit(url)
    if "@" in url.partition("://")[2] and "@" not in parts.netloc:
        # ``:pa/ss@host`` cut at the "/": the hosts would be ``:pa``, the service ``ss@host``
        raise ValueError(
            "a Sentinel URL's user name and password must be percent-encoded "
            "('/' is %2F, '?' %3F, '#' %23, '@' %40)"
        )
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
    connection["connection_class"] = (
        PrimaryFollowingSSLConnection if spec.ssl else PrimaryFollowingConnection
    )
    pool = SentinelConnectionPool(  # type: ignore[no-untyped-call]
        spec.service, sentinel, is_master=True, **connection
    )
    client = aioredis.Redis(connection_pool=pool, single_connection_client=single)
    client.auto_close_connection_pool = True
    return client
