"""Migration 5: a SQLite database from before the ``variables`` column gets it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from workflow_engine.store import ExecutionRecord, open_store
from workflow_engine.vocabulary import ExecutionStatus


async def test_a_database_from_before_variables_gets_the_column(tmp_path: Path) -> None:
    path = tmp_path / "wfe.db"
    store = open_store(f"sqlite:///{path}")
    await store.migrate()
    await store.create(ExecutionRecord("exec_1", "w", "t", "workflow", definition={}, inputs={}))
    await store.close()
    old = sqlite3.connect(path)
    old.execute("ALTER TABLE wfe_executions DROP COLUMN variables")
    old.execute("DELETE FROM wfe_schema_migrations WHERE version = 5")
    old.commit()
    old.close()
    store = open_store(f"sqlite:///{path}")
    try:
        await store.migrate()
        await store.mark_running("exec_1", 1)
        assert await store.finish("exec_1", ExecutionStatus.COMPLETED, variables={"n": 1})
        again = await store.get("exec_1")
        assert again is not None
        assert again.variables == {"n": 1}
    finally:
        await store.close()
