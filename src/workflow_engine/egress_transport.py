"""The httpx transport that enforces the egress policy. The one module that reaches into
httpx/httpcore internals (``AsyncHTTPTransport._pool``).

The check sits in httpcore's *network backend*, the hook through which every new connection is
opened: it resolves the host itself, checks every address it resolved to, then connects to one
of those very addresses (an IP literal: nothing is resolved a second time, so there is no
DNS-rebinding window). Everything above it is untouched: the URL keeps its host, so the Host
header, TLS SNI and certificate verification use the name, and the pool keys connections by
name. Redirects are followed by the client, each hop a request through this transport: a new
host opens a new connection, which is checked.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from workflow_engine.egress import EgressPolicy, IPAddress


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Opens TCP connections only to addresses the policy allows; no Unix sockets."""

    def __init__(self, policy: EgressPolicy, inner: httpcore.AsyncNetworkBackend | None = None):
        self.policy = policy
        self.inner = inner if inner is not None else httpcore.AnyIOBackend()
        self._protected: dict[int, set[IPAddress]] | None = None

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await resolve(host, port)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from exc
        protected = (await self._protected_addresses()).get(port, set())
        for address in addresses:  # every one: a mixed answer is refused, not picked from
            self.policy.check(host, address, port, protected)
        error: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None  # (resolve() returns at least one address)
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("Unix sockets are not allowed by the egress policy")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)

    async def _protected_addresses(self) -> dict[int, set[IPAddress]]:
        """The service's own endpoints, resolved once (port -> addresses)."""
        if self._protected is None:
            found: dict[int, set[IPAddress]] = {}
            complete = True
            for endpoint in self.policy.protected:
                try:
                    addresses = await resolve(endpoint.host, endpoint.port)
                except httpcore.ConnectError:
                    complete = False  # (a resolver hiccup: looked up again next time)
                    continue
                found.setdefault(endpoint.port, set()).update(addresses)
            if not complete:
                return found
            self._protected = found
        return self._protected


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to, as the system resolver spells them (which also reads
    ``2130706433`` and ``0x7f000001`` as addresses)."""
    name = host.strip("[]")
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
    addresses: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])  # (no zone id)
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise httpcore.ConnectError(f"{host} resolves to no address")
    return addresses


class EgressTransport(httpx.AsyncHTTPTransport):
    """``httpx.AsyncHTTPTransport`` whose connections go through ``GuardedBackend``. No proxy
    (a proxy would connect on the workflow's behalf, unchecked)."""

    def __init__(
        self, policy: EgressPolicy, *, limits: httpx.Limits | None = None, http2: bool = False
    ) -> None:
        limits = limits if limits is not None else httpx.Limits()
        super().__init__(trust_env=False, limits=limits, http2=http2)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http2=http2,
            network_backend=GuardedBackend(policy),
        )


def guarded_client(policy: EgressPolicy, **options: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` every connection of which the policy checked."""
    return httpx.AsyncClient(transport=EgressTransport(policy), trust_env=False, **options)
