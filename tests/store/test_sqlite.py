"""The SQLite store's own write path: small writes on the event loop when the database is
free, and waiting their turn (not failing) when another process is writing."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from workflow_engine.config import ConfigError
from workflow_engine.ids import new_execution_id
from workflow_engine.store import open_store
from workflow_engine.store.base import Start
from workflow_engine.store.records import ExecutionRecord
from workflow_engine.vocabulary import ExecutionStatus


def record() -> ExecutionRecord:
    return ExecutionRecord(
        execution_id=new_execution_id(), workflow_id="w", tenant_id="t", queue="workflow"
    )


async def test_a_write_waits_for_another_process_holding_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "wfe.db"
    store = open_store(f"sqlite:///{path}")
    await store.migrate()
    other = sqlite3.connect(path, isolation_level=None)  # as another process would
    try:
        other.execute("BEGIN IMMEDIATE")
        first = record()
        creating = asyncio.ensure_future(store.create(first))
        done, _ = await asyncio.wait({creating}, timeout=0.3)
        assert not done  # waiting for the lock, not failed
        other.execute("COMMIT")
        created, fresh = await asyncio.wait_for(creating, 10)
        assert fresh
        assert created.execution_id == first.execution_id
        stored = await store.get(first.execution_id)
        assert stored is not None
        # and with the lock free again, writes go on as usual
        assert await store.mark_running(first.execution_id, 1) is Start.STARTED
        running = await store.get(first.execution_id)
        assert running is not None
        assert running.status is ExecutionStatus.RUNNING
    finally:
        other.close()
        await store.close()


def test_an_in_memory_database_is_refused() -> None:
    with pytest.raises(ConfigError, match="needs a file"):
        open_store("sqlite:///:memory:")


async def test_a_database_from_before_usage_and_connections_is_brought_up_to_date(
    tmp_path: Path,
) -> None:
    """A database made by the first migration only (no ``token_usage`` column, no connections
    table) gets both, keeping its rows, and the usage of a finished execution is stored."""
    path = tmp_path / "wfe.db"
    store = open_store(f"sqlite:///{path}")
    await store.migrate()
    kept = record()
    await store.create(kept)
    await store.close()
    old = sqlite3.connect(path)
    old.execute("ALTER TABLE wfe_executions DROP COLUMN token_usage")
    old.execute("DROP TABLE wfe_connections")
    old.execute("DELETE FROM wfe_schema_migrations WHERE version > 1")
    old.commit()
    old.close()
    store = open_store(f"sqlite:///{path}")
    try:
        await store.migrate()
        assert not await store.has_connections()
        assert await store.mark_running(kept.execution_id, 1) is Start.STARTED
        usage = {"promptTokens": 3, "completionTokens": 4, "totalTokens": 7}
        assert await store.finish(kept.execution_id, ExecutionStatus.COMPLETED, usage=usage)
        again = await store.get(kept.execution_id)
        assert again is not None
        assert again.context()["usage"] == usage
    finally:
        await store.close()
