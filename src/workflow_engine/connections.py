"""Connections: where a node such as ``llm`` sends its requests (a base URL) and the secret it
authenticates with. A definition names a connection; it never holds the secret (SPEC §9, §10).

A node resolves a name through a ``ConnectionResolver``. The server-wide connections come from
the settings (``WFE_CONNECTIONS__<NAME>__BASE_URL``, ``__API_KEY``, ``__MODEL``); per-tenant
stored ones plug in as another resolver ahead of them (``FirstFound``).

The key stays a ``SecretStr`` until the one call that sends it: printing, logging or dumping a
``Connection`` shows ``**********``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class ConnectionSettings(BaseModel):
    """One server-wide connection (``WFE_CONNECTIONS__<NAME>__...``)."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(
        pattern=r"^https?://", description="OpenAI-compatible API root (https://host/v1)."
    )
    api_key: SecretStr = Field(SecretStr(""), description="Sent as the bearer token; never shown.")
    model: str | None = Field(None, description="The model a node uses when it names none.")
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="Extra request headers (JSON); secret as the key is."
    )


MIN_REDACTED = 8
"""Header values shorter than this are not scrubbed from messages (``2024-10-21``: yes)."""


@dataclass(frozen=True, slots=True)
class Connection:
    name: str
    base_url: str
    api_key: SecretStr = field(repr=False)
    model: str | None = None
    headers: Mapping[str, SecretStr] = field(default_factory=dict, repr=False)
    kind: str = "openai"

    def secrets(self) -> list[str]:
        """The values never to show: the key, and the header values long enough to matter."""
        key = self.api_key.get_secret_value()
        headers = [v.get_secret_value() for v in self.headers.values()]
        return ([key] if key else []) + [v for v in headers if len(v) >= MIN_REDACTED]

    def redact(self, text: str) -> str:
        """``text`` with the key (and header values) replaced: a server may echo them."""
        for secret in self.secrets():
            text = text.replace(secret, "***")
        return text


class ConnectionResolver(Protocol):
    """Finds a connection by the name a node gives, for the tenant the execution belongs to."""

    async def resolve(self, tenant_id: str, name: str) -> Connection | None:
        """The connection, or None when the tenant has none of that name."""
        ...


class NoConnections:
    """No connection configured (``wfe run`` without any, most tests)."""

    async def resolve(self, tenant_id: str, name: str) -> Connection | None:
        return None


class ServerConnections:
    """The server-wide connections of the settings, the same for every tenant. Names are
    case-insensitive (environment variable names are read in lower case)."""

    def __init__(self, connections: Mapping[str, ConnectionSettings]) -> None:
        self._connections = {name.lower(): c for name, c in connections.items()}

    def names(self) -> list[str]:
        return sorted(self._connections)

    async def resolve(self, tenant_id: str, name: str) -> Connection | None:
        found = self._connections.get(name.lower())
        if found is None:
            return None
        return Connection(name, found.base_url, found.api_key, found.model, found.headers)


class FirstFound:
    """Asks each resolver in turn (a tenant's stored connections, then the server-wide ones)."""

    def __init__(self, *resolvers: ConnectionResolver) -> None:
        self.resolvers = resolvers

    async def resolve(self, tenant_id: str, name: str) -> Connection | None:
        for resolver in self.resolvers:
            found = await resolver.resolve(tenant_id, name)
            if found is not None:
                return found
        return None


def environment_connections() -> ServerConnections:
    """The server-wide connections of the environment alone, for ``wfe run`` (which reads no
    other setting); a bad one raises ``pydantic.ValidationError`` naming it."""
    from pydantic_settings import BaseSettings, SettingsConfigDict

    class _Connections(BaseSettings):
        model_config = SettingsConfigDict(
            env_prefix="WFE_", env_nested_delimiter="__", extra="ignore"
        )

        connections: dict[str, ConnectionSettings] = Field(default_factory=dict)

    return ServerConnections(_Connections().connections)
