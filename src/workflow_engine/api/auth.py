"""API keys: each bound to a tenant, kept only as SHA-256 hashes. With no keys configured,
authentication is off (and the server refuses to listen beyond loopback)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from fastapi import Request

from workflow_engine.api.errors import ApiError
from workflow_engine.config import ConfigError

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


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


class KeyRing:
    def __init__(self, spec: str) -> None:
        """``spec``: comma-separated ``tenant=key`` or ``tenant=sha256:<hex>`` entries."""
        self._tenants: dict[str, str] = {}
        for entry in filter(None, (part.strip() for part in spec.split(","))):
            tenant, sep, key = entry.partition("=")
            if not sep or not tenant or not key:
                raise ConfigError(
                    "WFE_API_KEYS entries are tenant=key or tenant=sha256:<hex>, comma-separated"
                )
            digest = key[7:] if key.startswith("sha256:") else hash_key(key)
            if len(digest) != 64:
                raise ConfigError(
                    f"WFE_API_KEYS: the sha256 hash for tenant {tenant!r} is malformed"
                )
            self._tenants[digest.lower()] = tenant

    @property
    def enabled(self) -> bool:
        return bool(self._tenants)

    def tenant_for(self, key: str) -> str | None:
        return self._tenants.get(hash_key(key))

    def authenticate(self, authorization: str | None, token: str | None = None) -> Principal:
        if not self.enabled:
            return Principal(None)
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
        tenant = self.tenant_for(key)
        if tenant is None:
            raise ApiError(401, "unauthorized", "unknown API key")
        return Principal(tenant)


def check_bind(host: str, keys: KeyRing) -> None:
    """Without API keys, only loopback: an open engine must not be reachable from the network."""
    if not keys.enabled and host not in LOOPBACK_HOSTS:
        raise ConfigError(
            f"refusing to listen on {host} without API keys: set WFE_API_KEYS "
            "(see `wfe keys`) or bind 127.0.0.1"
        )


async def principal(request: Request) -> Principal:
    """FastAPI dependency: who is calling."""
    keys: KeyRing = request.app.state.services.keys
    return keys.authenticate(request.headers.get("authorization"))
