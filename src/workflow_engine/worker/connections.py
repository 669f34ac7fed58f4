"""A tenant's stored connections (SPEC section 10) as the nodes see them: read from the store
and decrypted (``vault.py``) when a node names one, ahead of the server-wide connections."""

from __future__ import annotations

from pydantic import SecretStr

from workflow_engine.connections import Connection
from workflow_engine.errors import NodeError
from workflow_engine.store.base import StateStore
from workflow_engine.vault import Vault, VaultError


class StoredConnections:
    def __init__(self, store: StateStore, vault: Vault) -> None:
        self.store = store
        self.vault = vault

    async def resolve(self, tenant_id: str, name: str) -> Connection | None:
        record = await self.store.get_connection(tenant_id, name)
        if record is None:
            return None
        try:
            secret = self.vault.open(record.secret)
        except VaultError as exc:  # says nothing of the secret
            raise NodeError(
                f"connection '{name}': {exc}", retryable=False, error_type="config"
            ) from None
        return Connection(
            name,
            record.base_url,
            SecretStr(str(secret.get("apiKey", ""))),
            kind=record.kind,
            headers={k: SecretStr(str(v)) for k, v in (secret.get("headers") or {}).items()},
        )
