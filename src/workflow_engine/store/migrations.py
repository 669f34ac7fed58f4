"""Versioned schema migrations, applied in order, each once, under a lock so that several
processes starting together do not race (PostgreSQL: an advisory lock; SQLite: a file lock)."""

from __future__ import annotations

import asyncio
import fcntl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from workflow_engine.store import partitions
from workflow_engine.store.schema import (
    NODE_ID_LENGTH,
    connections,
    execution_counts,
    executions,
    metadata,
    node_results,
    schema_migrations,
    workflows,
)
from workflow_engine.vocabulary import now_ms

Migration = Callable[[sa.Connection], None]

ADVISORY_LOCK_KEY = 0x57_46_45_01  # "WFE" + 1


def _v1_initial(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=[executions, node_results], checkfirst=True)


def _v2_connections(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=[connections], checkfirst=True)


def _v3_token_usage(conn: sa.Connection) -> None:
    """A database made by migration 1 before this column existed gets it (one made since has
    it from the table definition)."""
    if "token_usage" not in {c["name"] for c in sa.inspect(conn).get_columns("wfe_executions")}:
        conn.execute(sa.text("ALTER TABLE wfe_executions ADD COLUMN token_usage JSON"))


def _v4_stored_workflows(conn: sa.Connection) -> None:
    """Stored workflows, and the version an execution ran (as migration 3: a database made
    before the column existed gets it)."""
    metadata.create_all(conn, tables=[workflows], checkfirst=True)
    columns = {c["name"] for c in sa.inspect(conn).get_columns("wfe_executions")}
    if "workflow_version" not in columns:
        conn.execute(sa.text("ALTER TABLE wfe_executions ADD COLUMN workflow_version INTEGER"))


def _v5_variables(conn: sa.Connection) -> None:
    """The final execution variables (as migration 3: a database made before the column
    existed gets it)."""
    if "variables" not in {c["name"] for c in sa.inspect(conn).get_columns("wfe_executions")}:
        conn.execute(sa.text("ALTER TABLE wfe_executions ADD COLUMN variables JSON"))


def _v6_iteration_node_ids(conn: sa.Connection) -> None:
    """Node ids of loop iterations (``loop[12].fetch``, nested loops longer) outgrow the 64
    characters of a node id: PostgreSQL enforces a VARCHAR's length, SQLite does not."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            sa.text(
                f"ALTER TABLE wfe_node_results ALTER COLUMN node_id TYPE VARCHAR({NODE_ID_LENGTH})"
            )
        )


def _v7_partitions(conn: sa.Connection) -> None:
    """PostgreSQL: executions and node results partitioned by month (store/partitions.py).
    SQLite stays as it is."""
    if conn.dialect.name == "postgresql":
        partitions.partition_layout(conn)


def _v8_execution_counts(conn: sa.Connection) -> None:
    """The status counts, filled from the executions there are (the writes keep them from
    now on: this runs under the migration lock, before any process of this version writes)."""
    metadata.create_all(conn, tables=[execution_counts], checkfirst=True)
    recount(conn)


def recount(conn: sa.Connection) -> None:
    """Count the executions there are again (the migration; a bulk load that bypassed the
    store). Only while nothing else writes: a write between the two statements is lost."""
    conn.execute(sa.delete(execution_counts))
    bucket = "wfe_month(id_ms)" if conn.dialect.name == "postgresql" else "0"
    conn.execute(
        sa.text(
            "INSERT INTO wfe_execution_counts (tenant_id, status, bucket, slot, n) "
            f"SELECT tenant_id, status, {bucket}, 0, count(*) FROM wfe_executions "
            "GROUP BY tenant_id, status, 3"
        )
    )


MIGRATIONS: list[tuple[int, Migration]] = [
    (1, _v1_initial),
    (2, _v2_connections),
    (3, _v3_token_usage),
    (4, _v4_stored_workflows),
    (5, _v5_variables),
    (6, _v6_iteration_node_ids),
    (7, _v7_partitions),
    (8, _v8_execution_counts),
]


async def migrate(engine: AsyncEngine) -> list[int]:
    """Apply every migration not applied yet; return the versions applied now."""
    async with _exclusive(engine), engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(ADVISORY_LOCK_KEY)))
        await conn.run_sync(
            lambda c: metadata.create_all(c, tables=[schema_migrations], checkfirst=True)
        )
        done = set((await conn.execute(sa.select(schema_migrations.c.version))).scalars())
        applied = []
        for version, step in MIGRATIONS:
            if version in done:
                continue
            await conn.run_sync(step)
            await conn.execute(
                sa.insert(schema_migrations).values(version=version, applied_at=now_ms())
            )
            applied.append(version)
        return applied


@asynccontextmanager
async def _exclusive(engine: AsyncEngine) -> AsyncIterator[None]:
    """A file lock beside a SQLite database (PostgreSQL locks inside the transaction)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    lock_path = Path(database).with_name(Path(database).name + ".migrate.lock")
    with lock_path.open("a") as handle:
        await asyncio.to_thread(fcntl.flock, handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


async def current_version(conn: AsyncConnection) -> int:
    row = await conn.execute(sa.select(sa.func.max(schema_migrations.c.version)))
    return int(row.scalar() or 0)
