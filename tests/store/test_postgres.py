"""The PostgreSQL store's own write pool reads the URL as SQLAlchemy does."""

from __future__ import annotations

import pytest

from workflow_engine.ids import new_execution_id
from workflow_engine.store import open_store
from workflow_engine.store.base import Start
from workflow_engine.store.records import ExecutionRecord
from workflow_engine.vocabulary import ExecutionStatus


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
async def test_connection_options_in_the_url_reach_both_pools(store_url: str) -> None:
    """SQLAlchemy's spelling of TLS and of PgBouncer's no-prepared-statements mode: the reads
    and the hot writes both connect (asyncpg alone would send these keys to the server as
    session settings, and the server would refuse every write connection)."""
    store = open_store(f"{store_url}?ssl=disable&prepared_statement_cache_size=0")
    try:
        await store.migrate()
        await store.ping()
        execution_id = new_execution_id()
        record = ExecutionRecord(
            execution_id=execution_id, workflow_id="w", tenant_id="t", queue="workflow"
        )
        assert (await store.create(record))[1]
        assert await store.mark_running(execution_id, 1) is Start.STARTED
        assert await store.finish(execution_id, ExecutionStatus.COMPLETED, result=1)
        got = await store.get(execution_id)
        assert got is not None
        assert (got.status, got.result) == (ExecutionStatus.COMPLETED, 1)
    finally:
        await store.close()
