"""The egress policy (SPEC §8): which addresses a workflow may make the service connect to.

Decided on the *resolved* address, never on the URL's spelling: ``localhost``, ``0x7f000001``,
``2130706433`` and ``[::ffff:127.0.0.1]`` all resolve to loopback and are refused as such. The
connection itself is made by ``egress_transport`` to the very address checked here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from workflow_engine.errors import NodeError

if TYPE_CHECKING:
    from workflow_engine.config import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK = "127.0.0.0/8,::1"
"""What ``wfe run`` and ``wfe dev`` allow besides the settings."""

# IPv6 forms that carry an IPv4 address: the IPv4 address is the one that gets reached
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated ::a.b.c.d
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_BRACKETS = str.maketrans("", "", "[]")  # ([fd00::]/8 is fd00::/8)


class EgressDenied(NodeError):
    """The node tried to reach an address the egress policy refuses. Another attempt would be
    refused too."""

    error_type = "egress_denied"
    retryable = False


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An address and port of the service itself (its Redis, its store), refused whatever
    ``WFE_EGRESS_ALLOW`` says. ``host`` may be a name: the transport resolves it."""

    host: str
    port: int


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """Global unicast addresses are allowed; the rest only when ``allow`` opens them."""

    allow_all: bool = False
    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()
    protected: tuple[Endpoint, ...] = ()

    @classmethod
    def parse(cls, allow: str, protected: Iterable[Endpoint] = ()) -> EgressPolicy:
        """``allow``: the ``WFE_EGRESS_ALLOW`` syntax, a comma list of CIDRs (or addresses),
        host names and ``*``. Raises ``ValueError`` naming a bad entry."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        allow_all = False
        for raw in allow.split(","):
            entry = raw.strip()
            if not entry:
                continue
            if entry == "*":
                allow_all = True
                continue
            try:
                networks.append(ipaddress.ip_network(entry.translate(_BRACKETS), strict=False))
                continue
            except ValueError:
                pass
            name = _host_name(entry)
            if not name or "/" in name or any(c.isspace() for c in name):
                raise ValueError(f"not a CIDR, address or host name: {entry!r}")
            hosts.add(name)
        return cls(allow_all, tuple(networks), frozenset(hosts), tuple(protected))

    def with_loopback(self) -> EgressPolicy:
        """This policy, loopback allowed too (``wfe run``, ``wfe dev``)."""
        extra = EgressPolicy.parse(LOOPBACK).networks
        return EgressPolicy(self.allow_all, self.networks + extra, self.hosts, self.protected)

    def check(
        self, host: str, address: IPAddress, port: int, protected: Iterable[IPAddress] = ()
    ) -> None:
        """Raise ``EgressDenied`` unless ``host`` (as the URL named it), resolved to ``address``,
        may be connected to on ``port``. ``protected``: the addresses of this policy's
        ``protected`` endpoints on that port, resolved by the caller."""
        reached = effective_address(address)
        if any(_same_host(reached, effective_address(a)) for a in protected):
            raise EgressDenied(
                f"egress to {host} ({address}) port {port} refused: the service's own endpoint"
            )
        if self.allow_all or _host_name(host) in self.hosts:
            return
        if any(reached in network or address in network for network in self.networks):
            return
        reason = refused_reason(reached)
        if reason is not None:
            raise EgressDenied(
                f"egress to {host} ({address}) refused: {reason} address "
                "(WFE_EGRESS_ALLOW can open it)"
            )


def effective_address(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address carries (mapped, compatible, 6to4, NAT64), else itself."""
    if isinstance(address, ipaddress.IPv4Address):
        return address
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _IPV4_COMPATIBLE and int(address) > 1:  # (not :: nor ::1)
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def _same_host(a: IPAddress, b: IPAddress) -> bool:
    """Whether ``a`` reaches what ``b`` does: any loopback or unspecified address reaches a
    server of this machine bound to every address (127.0.0.2, 0.0.0.0 for 127.0.0.1)."""
    return a == b or (_this_machine(a) and _this_machine(b))


def _this_machine(address: IPAddress) -> bool:
    return address.is_loopback or address.is_unspecified


def refused_reason(address: IPAddress) -> str | None:
    """Why an address is refused by default (None: it is a global unicast address)."""
    checks = (
        ("loopback", address.is_loopback),
        ("unspecified", address.is_unspecified),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        # deprecated site-local (fec0::/10): Python 3.11 still calls it global
        ("site-local", isinstance(address, ipaddress.IPv6Address) and address.is_site_local),
        ("reserved", address.is_reserved),
        ("non-global", not address.is_global),
    )
    return next((name for name, hit in checks if hit), None)


def _host_name(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def service_endpoints(urls: Iterable[str]) -> list[Endpoint]:
    """The hosts and ports of the service's own Redis and store URLs (a URL without a network
    host, such as SQLite's, has none). A MongoDB URL may list several hosts."""
    defaults = {"redis": 6379, "rediss": 6380, "postgresql": 5432, "postgres": 5432}
    endpoints: list[Endpoint] = []
    for url in urls:
        parts = urlsplit(url)
        scheme = parts.scheme.split("+")[0]
        default = defaults.get(scheme, 27017 if scheme.startswith("mongodb") else 0)
        if parts.scheme.endswith("+sentinel"):  # (the sentinels'; they name the primary)
            default = 26379
        netloc = parts.netloc.rpartition("@")[2]
        for hostport in filter(None, netloc.split(",")):
            try:
                part = urlsplit(f"//{hostport}")
                host, port = part.hostname, part.port or default
            except ValueError:
                continue
            if host and port:
                endpoints.append(Endpoint(host, port))
    return endpoints


def policy_for(settings: Settings, *, own_api: bool = False) -> EgressPolicy:
    """The policy of a worker: ``WFE_EGRESS_ALLOW``, the service's Redis and store protected;
    ``own_api``: the API served by this process too (``wfe dev``)."""
    protected = service_endpoints([settings.redis_url, settings.store_url])
    if own_api:  # bound to every address: reachable on loopback
        host = settings.host.strip("[]")
        hosts = ["127.0.0.1", "::1"] if host in {"", "0.0.0.0", "::"} else [host]
        protected += [Endpoint(h, settings.port) for h in hosts]
    return EgressPolicy.parse(settings.egress_allow, protected)
