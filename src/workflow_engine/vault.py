"""Secrets at rest (SPEC section 10): a connection's API key and headers are stored as one
Fernet token (AES-128-CBC + HMAC-SHA256, from ``cryptography``), never in clear.

``WFE_SECRET_KEY`` is a comma list of keys: the first encrypts, every one decrypts, so a key is
rotated by putting the new one first and keeping the old one until the connections are saved
again. A key is any string (a long random one: ``python -c "import secrets;
print(secrets.token_urlsafe(32))"``); the Fernet key is its SHA-256."""

from __future__ import annotations

import base64
import hashlib
import secrets
from pathlib import Path
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

from workflow_engine.errors import WorkflowEngineError

KEY_FILE = "secret.key"
"""Where ``wfe dev`` keeps the key it generated, under its data folder."""


class VaultError(WorkflowEngineError):
    """A secret cannot be encrypted (no key) or decrypted (another key, a damaged token)."""


class Vault:
    def __init__(self, keys: str | None) -> None:
        names = [k.strip() for k in (keys or "").split(",") if k.strip()]
        self._fernet = MultiFernet([_fernet(k) for k in names]) if names else None

    @classmethod
    def configured(cls, secret_key: SecretStr | None) -> Vault:
        """The vault of ``WFE_SECRET_KEY`` (none: ``ready`` is False)."""
        return cls(secret_key.get_secret_value() if secret_key is not None else None)

    @property
    def ready(self) -> bool:
        """Whether a key is configured (without one, nothing can be stored)."""
        return self._fernet is not None

    def seal(self, secret: dict[str, Any]) -> str:
        if self._fernet is None:
            raise VaultError("WFE_SECRET_KEY is not set: secrets cannot be stored encrypted")
        return self._fernet.encrypt(orjson.dumps(secret)).decode()

    def open(self, token: str) -> dict[str, Any]:
        if self._fernet is None:
            raise VaultError("WFE_SECRET_KEY is not set: stored secrets cannot be read")
        try:
            value: dict[str, Any] = orjson.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken:
            raise VaultError(
                "a stored secret cannot be decrypted with WFE_SECRET_KEY (another key?)"
            ) from None
        return value


def _fernet(key: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest()))


def dev_key(folder: Path) -> str:
    """The key ``wfe dev`` uses when ``WFE_SECRET_KEY`` is not set: made once, kept in
    ``folder`` (readable by its owner only)."""
    path = folder / KEY_FILE
    if path.exists():
        return path.read_text().strip()
    folder.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    path.touch(mode=0o600)
    path.write_text(key + "\n")
    return key
