"""Real services for tests: a private redis-server on a free port, a fresh PostgreSQL database."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import asyncpg

from workflow_engine.embedded_redis import EmbeddedRedis, free_port

__all__ = ["RedisServer", "create_postgres_database", "drop_postgres_database", "free_port"]

POSTGRES_ADMIN_URL = os.environ.get(
    "WFE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


class RedisServer(EmbeddedRedis):
    """The product's embedded Redis, in memory, for one test session."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        super().__init__(directory, port=port, persist=False)

    def restart(self) -> None:
        self.stop()
        self.start()


async def create_postgres_database() -> str | None:
    """A new, empty database; its URL, or None when PostgreSQL cannot be reached."""
    name = f"wfe_test_{uuid.uuid4().hex[:12]}"
    try:
        conn = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    except (OSError, asyncpg.PostgresError):
        return None
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}"


async def drop_postgres_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
