"""PostgreSQL. Reads go through SQLAlchemy; the hot writes (every group-commit batch, every new
execution) go to a pool of plain asyncpg connections: one statement per kind of write, values
as arrays (``unnest``), so a batch of any size is a handful of round trips and no per-row work
in Python. A batch of one statement (a run claimed, a new execution) is sent without
``BEGIN``/``COMMIT`` around it: one round trip, atomic as every statement is. Every statement
is parameterised; its text depends only on which columns a transition sets, never on data."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, nullcontext
from typing import Any

import asyncpg

from workflow_engine.store.errors import StoreUnavailable
from workflow_engine.store.records import ExecutionRecord
from workflow_engine.store.sql import (
    JSON_COLUMNS,
    RECORD_JSON_COLUMNS,
    Batch,
    Shape,
    SqlStore,
    json_text,
    ms,
    record_row,
    same_types,
)
from workflow_engine.store.writes import SaveNode, Transition, Write

INT_COLUMNS = {"attempts": "integer", "started_at": "bigint", "completed_at": "bigint"}


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """Our statements change no session state (no SET, LISTEN, advisory lock or cursor), so a
    connection goes back to the pool as it is: asyncpg's default reset is a round trip per
    release. An open transaction is still rolled back by the pool."""


def _param(column: str, value: Any) -> Any:
    return json_text(value) if column in JSON_COLUMNS else value


def _cast(column: str) -> str:
    return "json" if column in JSON_COLUMNS else INT_COLUMNS.get(column, "text")


_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,  # the connection was lost
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,  # shutting down, not accepting connections yet
    asyncpg.InsufficientResourcesError,  # too many connections, disk full
)
POOL_SIZE = 10


class PostgresStore(SqlStore):
    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        # the URL read as SQLAlchemy reads it (its query keys are asyncpg.connect arguments:
        # ?ssl=require, ?prepared_statement_cache_size=0 for PgBouncer), so both pools agree
        _, params = self.engine.dialect.create_connect_args(self.url)
        cache_size = params.pop("prepared_statement_cache_size", None)
        params.pop("prepared_statement_name_func", None)
        if cache_size is not None:
            params["statement_cache_size"] = cache_size
        self._connect_args: dict[str, Any] = {"timeout": 5, "command_timeout": 30, **params}
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()

    async def ping(self) -> None:
        """Both ways in answer: SQLAlchemy's (reads) and the write pool."""
        await super().ping()
        async with self._raw() as conn:
            await conn.fetchval("SELECT 1")

    async def close(self) -> None:
        await super().close()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @asynccontextmanager
    async def _raw(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection of the write pool; a lost or refused connection is ``StoreUnavailable``."""
        try:
            pool = self._pool or await self._open_pool()
            async with pool.acquire() as conn:
                yield conn
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"state store unreachable: {exc}") from exc

    async def _open_pool(self) -> asyncpg.Pool:
        async with self._pool_lock:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    min_size=0, max_size=POOL_SIZE, reset=_keep_session, **self._connect_args
                )
            return self._pool

    async def _insert(self, record: ExecutionRecord) -> ExecutionRecord | None:
        row = record_row(record)
        values = [json_text(v) if c in RECORD_JSON_COLUMNS else v for c, v in row.items()]
        conflict = record.idempotency_key is not None
        async with self._raw() as conn:
            status = await conn.execute(_insert_sql(tuple(row), conflict), *values)
        if status == "INSERT 0 1":
            return None
        return await self._by_idempotency_key(record)

    async def _apply(self, writes: Sequence[Write]) -> list[bool]:
        """One transaction: progress first (it was submitted before any outcome in the same
        batch), then transitions grouped by shape into set-based statements, then node
        results. The usual batches are one statement each, sent without ``BEGIN``/``COMMIT``:
        a run claimed (one transition), a run's end (node results and its outcome, fused by a
        ``WITH ... INSERT``), a few node results."""
        batch = Batch.of(writes)
        results: list[bool] = [True] * len(writes)
        groups = list(batch.groups())
        fuse = not batch.progress and len(groups) == 1 and bool(batch.nodes)
        one_statement = fuse or bool(batch.progress) + len(groups) + bool(batch.nodes) == 1
        async with self._raw() as conn, nullcontext() if one_statement else conn.transaction():
            if batch.progress:
                await conn.execute(
                    _PROGRESS,
                    list(batch.progress),
                    [json_text(p) for p in batch.progress.values()],
                    batch.now,
                )
            for shape, group in groups:
                sql, args = _transitions(shape, [op for _, op in group], batch.now)
                if fuse:  # the node results ride along with the transition
                    sql = f"WITH saved AS ({_nodes_sql(len(args) + 1)}) {sql}"
                    args += _nodes_args(batch.nodes)
                taken = {row[0] for row in await conn.fetch(sql, *args)}
                for index, op in group:
                    results[index] = op.execution_id in taken
            if batch.nodes and not fuse:
                await conn.execute(_nodes_sql(1), *_nodes_args(batch.nodes))
        return results


def _transitions(shape: Shape, ops: list[Transition], now: int) -> tuple[str, list[Any]]:
    """The statement that applies transitions of one shape, returning the ids that were in an
    allowed status (changed)."""
    to, allowed, _, columns = shape
    ids = [op.execution_id for op in ops]
    # compare encoded values: 1, 1.0 and True are equal in Python, not in JSON
    params = [tuple(_param(c, op.values[c]) for c in columns) for op in ops]
    if all(p == params[0] and same_types(p, params[0]) for p in params):
        return _update_same(shape), [to, now, ids, list(allowed), *params[0]]
    arrays = [list(column) for column in zip(*params, strict=True)] if columns else []
    return _update_each(shape), [to, now, ids, list(allowed), *arrays]


def _nodes_args(ops: list[SaveNode]) -> list[Any]:
    results = [op.result for op in ops]
    return [
        [op.execution_id for op in ops],
        [r.node_id for r in results],
        [op.seq for op in ops],
        [r.node_type for r in results],
        [r.name for r in results],
        [str(r.status) for r in results],
        [json_text(r.input) for r in results],
        [json_text(r.output) for r in results],
        [json_text(r.error) for r in results],
        [r.attempt for r in results],
        [ms(r.started_at) for r in results],
        [ms(r.completed_at) for r in results],
    ]


def _assignments(stamp: frozenset[str], columns: tuple[str, ...], source: list[str]) -> str:
    parts = ["status = $1", "updated_at = $2"]
    for column in sorted(stamp):
        parts.append(
            "started_at = coalesce(e.started_at, $2)"
            if column == "started_at"
            else f"{column} = $2"
        )
    parts += [f"{column} = {expr}" for column, expr in zip(columns, source, strict=True)]
    return ", ".join(parts)


@functools.cache
def _update_same(shape: Shape) -> str:
    """Every row gets the same values: one UPDATE ... RETURNING."""
    _, _, stamp, columns = shape
    source = [f"${5 + i}::{_cast(c)}" for i, c in enumerate(columns)]
    return (
        f"UPDATE wfe_executions AS e SET {_assignments(stamp, columns, source)} "
        "WHERE e.execution_id = ANY($3::text[]) AND e.status = ANY($4::text[]) "
        "RETURNING e.execution_id"
    )


@functools.cache
def _update_each(shape: Shape) -> str:
    """Each row its own values, as arrays unnested beside the ids: still one statement."""
    _, _, stamp, columns = shape
    arrays = ", ".join(
        ["$3::text[]"]
        + [
            f"${5 + i}::{'text' if c in JSON_COLUMNS else _cast(c)}[]"
            for i, c in enumerate(columns)
        ]
    )
    names = ", ".join(["id", *(f"c{i}" for i in range(len(columns)))])
    source = [f"v.c{i}::json" if c in JSON_COLUMNS else f"v.c{i}" for i, c in enumerate(columns)]
    return (
        f"UPDATE wfe_executions AS e SET {_assignments(stamp, columns, source)} "
        f"FROM unnest({arrays}) AS v({names}) "
        "WHERE e.execution_id = v.id AND e.status = ANY($4::text[]) "
        "RETURNING e.execution_id"
    )


@functools.cache
def _insert_sql(columns: tuple[str, ...], conflict: bool) -> str:
    values = ", ".join(
        f"${i}::json" if c in RECORD_JSON_COLUMNS else f"${i}" for i, c in enumerate(columns, 1)
    )
    return f"INSERT INTO wfe_executions ({', '.join(columns)}) VALUES ({values})" + (
        " ON CONFLICT (tenant_id, idempotency_key) DO NOTHING" if conflict else ""
    )


_PROGRESS = (
    "UPDATE wfe_executions AS e SET progress = v.p::json, updated_at = $3 "
    "FROM unnest($1::text[], $2::text[]) AS v(id, p) WHERE e.execution_id = v.id "
    "AND e.status IN ('running', 'waiting')"
)

_NODE_ARRAYS = (
    "text",
    "text",
    "integer",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "integer",
    "bigint",
    "bigint",
)


@functools.cache
def _nodes_sql(first: int) -> str:
    """Upsert node results given as arrays, parameters ``$first`` onwards."""
    arrays = ", ".join(f"${first + i}::{kind}[]" for i, kind in enumerate(_NODE_ARRAYS))
    return (
        "INSERT INTO wfe_node_results (execution_id, node_id, seq, node_type, name, status, "
        "input, output, error, attempt, started_at, completed_at) "
        "SELECT v.execution_id, v.node_id, v.seq, v.node_type, v.name, v.status, "
        "v.input::json, v.output::json, v.error::json, v.attempt, v.started_at, v.completed_at "
        f"FROM unnest({arrays}) AS v(execution_id, node_id, seq, node_type, name, status, "
        "input, output, error, attempt, started_at, completed_at) "
        "ON CONFLICT (execution_id, node_id) DO UPDATE SET seq = excluded.seq, "
        "node_type = excluded.node_type, name = excluded.name, status = excluded.status, "
        "input = excluded.input, output = excluded.output, error = excluded.error, "
        "attempt = excluded.attempt, started_at = excluded.started_at, "
        "completed_at = excluded.completed_at"
    )
