"""API keys: each bound to a tenant and its scopes, kept only as SHA-256 hashes. With no keys
configured, authentication is off (and the server refuses to listen beyond loopback): every
request is the one tenant ``anonymous``, with every scope."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from fastapi import Request

from workflow_engine.api.errors import ApiError
from workflow_engine.config import ConfigError

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
ANONYMOUS = "anonymous"
"""The one tenant of a server without keys, whatever a request's ``userId`` says."""
ADMIN = "admin"
"""The scope of queue-wide figures and admin routes (``tenant:admin=key``)."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh random key and its ``sha256:`` form for ``WFE_API_KEYS``."""
    key = "wfe_" + secrets.token_urlsafe(32)
    return key, f"sha256:{hash_key(key)}"


@dataclass(frozen=True, slots=True)
class Principal:
    tenant_id: str | None
    """None when authentication is off: every execution is visible."""
    admin: bool = False
    """The ``admin`` scope: queue-wide figures. Every key has ``submit`` and ``read``."""

    @property
    def tenant(self) -> str:
        """The tenant that the caller's executions belong to."""
        return self.tenant_id or ANONYMOUS


KEYLESS = Principal(None, admin=True)
"""The caller when authentication is off (dev): the single tenant, with every scope."""

_FORMAT = "WFE_API_KEYS entries are tenant=key, tenant:admin=key or tenant=sha256:<hex>"


@dataclass(frozen=True, slots=True)
class _Grant:
    tenant: str
    admin: bool


class KeyRing:
    def __init__(self, spec: str) -> None:
        """``spec``: comma-separated ``tenant=key`` or ``tenant=sha256:<hex>`` entries; a
        ``tenant:admin`` name adds the ``admin`` scope to that key."""
        self._grants: dict[str, _Grant] = {}
        for entry in filter(None, (part.strip() for part in spec.split(","))):
            name, sep, key = entry.partition("=")
            if not sep or not name or not key:
                raise ConfigError(f"{_FORMAT}, comma-separated")
            tenant, colon, scope = name.partition(":")
            if colon and (scope != ADMIN or not tenant):
                raise ConfigError(f"WFE_API_KEYS: unknown scope in {name!r} ({_FORMAT})")
            digest = key[7:] if key.startswith("sha256:") else hash_key(key)
            if len(digest) != 64:
                raise ConfigError(
                    f"WFE_API_KEYS: the sha256 hash for tenant {tenant!r} is malformed"
                )
            self._grants[digest.lower()] = _Grant(tenant, admin=bool(colon))

    @property
    def enabled(self) -> bool:
        return bool(self._grants)

    def tenant_for(self, key: str) -> str | None:
        grant = self._grants.get(hash_key(key))
        return grant.tenant if grant is not None else None

    def authenticate(self, authorization: str | None, token: str | None = None) -> Principal:
        """The caller of a request: by ``Authorization: Bearer <key>``, else by ``token`` (the
        ``?token=`` of a WebSocket or an ``EventSource``, which cannot set headers)."""
        if not self.enabled:
            return KEYLESS
        key = token
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() != "bearer" or not value:
                raise ApiError(401, "unauthorized", "use Authorization: Bearer <key>")
            key = value.strip()
        if not key:
            raise ApiError(
                401, "unauthorized", "an API key is required (Authorization: Bearer <key>)"
            )
        grant = self._grants.get(hash_key(key))
        if grant is None:
            raise ApiError(401, "unauthorized", "unknown API key")
        return Principal(grant.tenant, admin=grant.admin)


def check_bind(host: str, keys: KeyRing) -> None:
    """Without API keys, only loopback: an open engine must not be reachable from the network."""
    if not keys.enabled and host not in LOOPBACK_HOSTS:
        raise ConfigError(
            f"refusing to listen on {host} without API keys: set WFE_API_KEYS "
            "(see `wfe keys`) or bind 127.0.0.1"
        )


async def principal(request: Request) -> Principal:
    """FastAPI dependency: who is calling (by the ``Authorization`` header)."""
    keys: KeyRing = request.app.state.services.keys
    return keys.authenticate(request.headers.get("authorization"))


async def principal_or_token(request: Request) -> Principal:
    """FastAPI dependency for streams a browser opens (SSE by ``EventSource``): the
    ``Authorization`` header, else the ``token`` query parameter, checked the same way."""
    keys: KeyRing = request.app.state.services.keys
    return keys.authenticate(
        request.headers.get("authorization"), request.query_params.get("token")
    )
