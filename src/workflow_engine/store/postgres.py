"""PostgreSQL. Reads go through SQLAlchemy; the hot writes (every group-commit batch, every new
execution) go to a pool of plain asyncpg connections: one statement per kind of write, values
as arrays (``unnest``), so a batch of any size is a handful of round trips and no per-row work
in Python. A batch of one statement (a run claimed, a new execution) is sent without
``BEGIN``/``COMMIT`` around it: one round trip, atomic as every statement is. Every statement
is parameterised; its text depends only on which columns a transition sets, never on data."""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, nullcontext
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.monitor.logging import get_logger
from workflow_engine.store import counts
from workflow_engine.store.errors import StoreUnavailable
from workflow_engine.store.partitions import (
    LOCK_KEY,
    PARTITIONED,
    UNTIMED,
    attach_partition_sql,
    bucket_of,
    id_ms,
    month_from_name,
    next_month,
    partition_name,
)
from workflow_engine.store.records import ExecutionRecord
from workflow_engine.store.schema import executions
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
from workflow_engine.vocabulary import ACTIVE_STATUSES

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
COUNT_SLOTS = 16
"""Counter rows per (tenant, status, month): each write adds to one picked at random, so
concurrent writers of one tenant seldom wait for each other's commit on a counter row (40
connections creating one tenant's executions: 1,150/s with 1 row, 2,450/s with 8, 2,800-3,000/s
with 16, as with a tenant each)."""
DROP_LOCK_TIMEOUT_MS = 500
"""How long retention waits for the tables' locks to drop a month (writers wait as long)."""
_ACTIVE = sorted(str(s) for s in ACTIVE_STATUSES)
log = get_logger(__name__)
_ID_MS = sa.column("id_ms", sa.BigInteger)
_KEYS = sa.table(
    "wfe_idempotency_keys",
    sa.column("tenant_id"),
    sa.column("idempotency_key"),
    sa.column("execution_id"),
)


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
        self._months: set[int] = set()
        """Months whose partitions, and those of the month after each, are known to exist
        (checked once per process and month)."""

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

    # -- the month layout (store/partitions.py) -------------------------------------------

    def _bucket(self, execution_id: str) -> int:
        return bucket_of(execution_id)

    def _pinned(self, execution_ids: Sequence[str]) -> tuple[sa.ColumnElement[bool], ...]:
        return (_ID_MS.in_(sorted({id_ms(i) for i in execution_ids})),)

    async def _forget(self, conn: AsyncConnection, gone: Sequence[Any]) -> None:
        """Their counts, and their idempotency keys (kept in a table of their own here)."""
        await super()._forget(conn, gone)
        keyed = [(t, k, i) for i, t, _, k in gone if k is not None]
        if keyed:
            columns = sa.tuple_(_KEYS.c.tenant_id, _KEYS.c.idempotency_key, _KEYS.c.execution_id)
            await conn.execute(sa.delete(_KEYS).where(columns.in_(keyed)))

    async def _ensure_months(self, execution_ids: Sequence[str]) -> None:
        """Create the month partitions these executions go to, and the month after each
        (created ahead, so that a month begins with its partition there)."""
        # a month is known once it and the one after it are there: a process writing all
        # month long in a month it first saw ahead still makes the next one before it begins
        wanted = {bucket_of(i) for i in execution_ids} - self._months
        if not wanted:
            return
        months = set(wanted) | {next_month(m) for m in wanted if m != UNTIMED}
        async with self._raw() as conn, conn.transaction():
            # CREATE TABLE IF NOT EXISTS is not safe from a race: one process at a time
            await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
            for month in sorted(months):
                for table in PARTITIONED:
                    if (
                        await conn.fetchval("SELECT to_regclass($1)", partition_name(table, month))
                        is None
                    ):
                        # attached, not created as a partition: no ACCESS EXCLUSIVE lock on the
                        # tables every write uses (partitions.attach_partition_sql)
                        for statement in attach_partition_sql(table, month):
                            await conn.execute(statement)
        self._months |= wanted

    async def _retrying_on_new_month(self, execution_ids: Sequence[str], write: Any) -> Any:
        """Run ``write()`` after making sure its partitions exist; once more if one was
        dropped meanwhile (retention in another process)."""
        await self._ensure_months(execution_ids)
        try:
            return await write()
        except asyncpg.CheckViolationError as exc:
            if "no partition" not in str(exc):
                raise
            self._months.clear()
            await self._ensure_months(execution_ids)
            return await write()

    # -- retention: whole months dropped, the rest deleted ---------------------------------

    async def _delete_finished_before(self, cutoff_ms: int) -> list[str]:
        """Drop each month partition whose executions are all final and completed before the
        cutoff (and its node results'), then DELETE what is left to remove (months only
        partly expired, ids without a time)."""
        removed: list[str] = []
        for month in await self._months_before(cutoff_ms):
            removed += await self._drop_month(month, cutoff_ms)
        return removed + await super()._delete_finished_before(cutoff_ms)

    async def _months_before(self, cutoff_ms: int) -> list[int]:
        """Month partitions that end before the cutoff (only they can be wholly expired)."""
        async with self._raw() as conn:
            names = await conn.fetch(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'wfe_executions'::regclass"
            )
        months = [month_from_name(row[0]) for row in names]
        return sorted(m for m in months if m is not None and next_month(m) <= cutoff_ms)

    async def _drop_month(self, month: int, cutoff_ms: int) -> list[str]:
        """Drop a month if every execution in it is final and completed before the cutoff;
        the ids dropped ([] when it is not, or when writers kept it busy: DELETE then takes
        over). Its counts' rows are exact for it (same bucket), so they say whether any
        execution is active and are removed with it, in one transaction."""
        part = partition_name("wfe_executions", month)
        async with self._raw() as conn:
            # first without the locks (they stop every write to the tables): a month that is
            # not wholly expired costs a few index probes and no lock; the ids too are read
            # before, and their number checked under the locks
            if not await self._droppable(conn, month, part, cutoff_ms):
                return []
            ids = [row[0] for row in await conn.fetch(f"SELECT execution_id FROM {part}")]
            try:
                async with conn.transaction():
                    # we wait for the locks less long than a deadlock is detected in: if a
                    # writer holds one and waits for the other, we are the one to give up
                    await conn.execute(f"SET LOCAL lock_timeout = '{DROP_LOCK_TIMEOUT_MS}ms'")
                    await conn.execute(
                        "LOCK TABLE wfe_executions, wfe_node_results IN ACCESS EXCLUSIVE MODE"
                    )
                    if not await self._droppable(conn, month, part, cutoff_ms, len(ids)):
                        return []
                    await conn.execute("DELETE FROM wfe_execution_counts WHERE bucket = $1", month)
                    await conn.execute(
                        "DELETE FROM wfe_idempotency_keys WHERE id_ms >= $1 AND id_ms < $2",
                        month,
                        next_month(month),
                    )
                    for table in PARTITIONED:
                        await conn.execute(f"DROP TABLE {partition_name(table, month)}")
            except asyncpg.LockNotAvailableError:
                log.info("retention: month kept busy, deleting instead", partition=part)
                return []
        self._months.clear()  # this month, and the one before it (known with its next one)
        log.info("retention: month dropped", partition=part, executions=len(ids))
        return ids

    @staticmethod
    async def _droppable(
        conn: asyncpg.Connection, month: int, part: str, cutoff_ms: int, read: int | None = None
    ) -> bool:
        """Nothing active (the counts), none unfinished or finished since the cutoff (the
        ``completed_at`` index), and (given ``read``) as many executions as were read."""
        active, total = await conn.fetchrow(
            "SELECT coalesce(sum(n) FILTER (WHERE status = ANY($2::text[])), 0), "
            "coalesce(sum(n), 0) FROM wfe_execution_counts WHERE bucket = $1",
            month,
            _ACTIVE,
        )
        if active or (read is not None and total != read):
            return False
        late = await conn.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM {part} WHERE completed_at IS NULL) "
            f"OR EXISTS (SELECT 1 FROM {part} WHERE completed_at >= $1)",
            cutoff_ms,
        )
        return not late

    # -- writes ---------------------------------------------------------------------------

    async def _insert(self, record: ExecutionRecord) -> ExecutionRecord | None:
        """One statement: the idempotency key (when given) claimed in its table, the execution
        inserted only if the key was free, and counted."""
        row = record_row(record)
        values = [json_text(v) if c in RECORD_JSON_COLUMNS else v for c, v in row.items()]
        key = id_ms(record.execution_id)
        values += [key, bucket_of(record.execution_id), random.randrange(COUNT_SLOTS)]
        sql = _insert_sql(tuple(row), record.idempotency_key is not None)

        async def insert() -> Any:
            async with self._raw() as conn:
                return await conn.fetchval(sql, *values)

        if await self._retrying_on_new_month([record.execution_id], insert):
            return None
        return await self._by_idempotency_key(record)

    async def _by_idempotency_key(self, record: ExecutionRecord) -> ExecutionRecord:
        async with self._raw() as conn:
            holder = await conn.fetchval(
                "SELECT execution_id FROM wfe_idempotency_keys "
                "WHERE tenant_id = $1 AND idempotency_key = $2",
                record.tenant_id,
                record.idempotency_key,
            )
        found = None if holder is None else await self.get(holder)
        if found is None:  # deleted since: the key is free again
            raise StoreUnavailable(f"idempotency key of {record.execution_id} is being freed")
        return found

    async def _apply(self, writes: Sequence[Write]) -> list[bool]:
        batch = Batch.of(writes)
        results: list[bool] = await self._retrying_on_new_month(
            [op.execution_id for op in batch.nodes], lambda: self._apply_batch(batch)
        )
        return results

    async def _apply_batch(self, batch: Batch) -> list[bool]:
        """One transaction: progress first (it was submitted before any outcome in the same
        batch), then transitions grouped by shape into set-based statements, then node
        results, then the counts' changes summed per key. The usual batches are one
        statement each, sent without ``BEGIN``/``COMMIT``: a run claimed (one transition and
        its counts), a run's end (node results, its outcome and its counts, fused by
        ``WITH``), a few node results."""
        results: list[bool] = [True] * batch.size
        groups = list(batch.groups())
        fuse = not batch.progress and len(groups) == 1 and bool(batch.nodes)
        one_statement = fuse or bool(batch.progress) + len(groups) + bool(batch.nodes) == 1
        slot = random.randrange(COUNT_SLOTS)
        deltas = counts.Deltas()
        async with self._raw() as conn, nullcontext() if one_statement else conn.transaction():
            if batch.progress:
                ids = list(batch.progress)
                await conn.execute(
                    _PROGRESS,
                    ids,
                    [json_text(p) for p in batch.progress.values()],
                    batch.now,
                    [id_ms(i) for i in ids],
                )
            for shape, group in groups:
                statement, args = _transitions(shape, [op for _, op in group], batch.now)
                sql = _with([statement[0]], statement[1])
                if one_statement:  # the counts, and maybe the node results, ride along
                    nodes = _nodes_sql(len(args) + 2) if fuse else None
                    sql = _counted(statement, len(args) + 1, nodes)
                    args.append(slot)
                    if fuse:
                        args += _nodes_args(batch.nodes)
                rows = await conn.fetch(sql, *args)
                taken = {row[0] for row in rows}
                for index, op in group:
                    results[index] = op.execution_id in taken
                if not one_statement:
                    for row in rows:
                        deltas.moved(row[1], row[2], shape[0], bucket_of(row[0]))
            if batch.nodes and not fuse:
                await conn.execute(_nodes_sql(1), *_nodes_args(batch.nodes))
            rows = deltas.rows(slot)
            if rows:  # none when the batch's changes cancel out (one parks, one resumes)
                await conn.execute(_COUNT, *(list(column) for column in zip(*rows, strict=True)))
        return results


def _transitions(
    shape: Shape, ops: list[Transition], now: int
) -> tuple[tuple[str, str], list[Any]]:
    """The statement that applies transitions of one shape (``(CTE, UPDATE)``: the CTE
    reads the old statuses when needed), returning the ids that were in an allowed status
    (changed), each with its tenant, the status it had and its ``id_ms``.
    Parameters: $1 status, $2 now, $3 ids, $4 allowed statuses, $5 their partition keys,
    then the columns'."""
    to, allowed, _, columns = shape
    ids = [op.execution_id for op in ops]
    head = [to, now, ids, sorted(allowed), sorted({id_ms(i) for i in ids})]
    # compare encoded values: 1, 1.0 and True are equal in Python, not in JSON
    params = [tuple(_param(c, op.values[c]) for c in columns) for op in ops]
    if all(p == params[0] and same_types(p, params[0]) for p in params):
        return _update_same(shape), [*head, *params[0]]
    arrays = [list(column) for column in zip(*params, strict=True)] if columns else []
    return _update_each(shape), [*head, *arrays]


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
        [id_ms(op.execution_id) for op in ops],
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


_WHERE = "e.execution_id = {ids} AND e.id_ms = ANY($5::bigint[]) AND e.status = ANY($4::text[])"
_LOCK_OLD = (
    "o AS (SELECT execution_id, id_ms, status FROM wfe_executions WHERE execution_id = "
    "ANY($3::text[]) AND id_ms = ANY($5::bigint[]) AND status = ANY($4::text[]) FOR UPDATE)"
)
"""The statuses the transitions replace, when they may follow more than one: read with the
rows' locks (the status seen is the one the update changes, under concurrent writers)."""


def _returning(allowed: frozenset[str]) -> tuple[str, str, str]:
    """(CTEs, FROM item, join) to know each row's old status, and the RETURNING clause."""
    if len(allowed) == 1:  # the old status is the one allowed
        return "", "", "RETURNING e.execution_id, e.tenant_id, ($4::text[])[1] AS old, e.id_ms"
    return (
        _LOCK_OLD,
        " AND o.execution_id = e.execution_id AND o.id_ms = e.id_ms",
        "RETURNING e.execution_id, e.tenant_id, o.status AS old, e.id_ms",
    )


@functools.cache
def _update_same(shape: Shape) -> tuple[str, str]:
    """Every row gets the same values: one UPDATE ... RETURNING."""
    _, allowed, stamp, columns = shape
    source = [f"${6 + i}::{_cast(c)}" for i, c in enumerate(columns)]
    lock, join, returning = _returning(allowed)
    return lock, (
        f"UPDATE wfe_executions AS e SET {_assignments(stamp, columns, source)}"
        f"{' FROM o' if lock else ''} WHERE {_WHERE.format(ids='ANY($3::text[])')}{join} "
        f"{returning}"
    )


@functools.cache
def _update_each(shape: Shape) -> tuple[str, str]:
    """Each row its own values, as arrays unnested beside the ids: still one statement."""
    _, allowed, stamp, columns = shape
    arrays = ", ".join(
        ["$3::text[]"]
        + [
            f"${6 + i}::{'text' if c in JSON_COLUMNS else _cast(c)}[]"
            for i, c in enumerate(columns)
        ]
    )
    names = ", ".join(["id", *(f"c{i}" for i in range(len(columns)))])
    source = [f"v.c{i}::json" if c in JSON_COLUMNS else f"v.c{i}" for i, c in enumerate(columns)]
    lock, join, returning = _returning(allowed)
    return lock, (
        f"UPDATE wfe_executions AS e SET {_assignments(stamp, columns, source)} "
        f"FROM unnest({arrays}) AS v({names}){', o' if lock else ''} "
        f"WHERE {_WHERE.format(ids='v.id')}{join} {returning}"
    )


def _with(ctes: list[str], statement: str) -> str:
    ctes = [c for c in ctes if c]
    return f"WITH {', '.join(ctes)} {statement}" if ctes else statement


_COUNT_ROWS = (
    "INSERT INTO wfe_execution_counts AS k (tenant_id, status, bucket, slot, n) {rows} "
    "ON CONFLICT (tenant_id, status, bucket, slot) DO UPDATE SET n = k.n + excluded.n"
)
_COUNT = _COUNT_ROWS.format(
    rows="SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::smallint[], $5::bigint[])"
)
"""The counts' changes of a batch, summed per key (sorted: one lock order for every writer)."""


@functools.cache
def _counted(transitions: tuple[str, str], slot: int, nodes: str | None) -> str:
    """A transition statement that also applies its counts' changes (and, given ``nodes``,
    saves node results first): still one statement, atomic without ``BEGIN``."""
    lock, update = transitions
    ctes = [f"saved AS ({nodes})" if nodes is not None else "", lock]
    changes = (
        f"SELECT d.tenant_id, d.status, d.bucket, ${slot}::smallint, sum(d.n) FROM ("
        "SELECT tenant_id, $1::text AS status, wfe_month(id_ms) AS bucket, 1 AS n FROM t "
        "UNION ALL SELECT tenant_id, old, wfe_month(id_ms), -1 FROM t) AS d "
        "GROUP BY d.tenant_id, d.status, d.bucket HAVING sum(d.n) <> 0 "
        # byte order, as Python sorts the batches' rows (``Deltas.rows``): one lock order
        'ORDER BY d.tenant_id COLLATE "C", d.status COLLATE "C", d.bucket'
    )
    ctes += [f"t AS ({update})", f"c AS ({_COUNT_ROWS.format(rows=changes)})"]
    return _with(ctes, "SELECT execution_id, tenant_id, old FROM t")


_TYPES = {c.name: c.type.compile(postgresql.dialect()) for c in executions.c}  # type: ignore[no-untyped-call]


@functools.cache
def _insert_sql(columns: tuple[str, ...], keyed: bool) -> str:
    """Insert an execution and count it; with an idempotency key, only if the key was free
    (claimed in ``wfe_idempotency_keys`` by the same statement). Parameters: the columns,
    then its ``id_ms``, its counts' bucket and slot. Returns how many were inserted."""
    n = len(columns)
    values = ", ".join(
        f"${i}::{'json' if c in RECORD_JSON_COLUMNS else _TYPES[c]}"
        for i, c in enumerate(columns, 1)
    )
    ctes = []
    where = ""
    if keyed:
        position = {c: i for i, c in enumerate(columns, 1)}
        ctes.append(
            "key AS (INSERT INTO wfe_idempotency_keys (tenant_id, idempotency_key, "
            f"execution_id, id_ms) VALUES (${position['tenant_id']}, "
            f"${position['idempotency_key']}, ${position['execution_id']}, ${n + 1}) "
            "ON CONFLICT DO NOTHING RETURNING 1)"
        )
        where = " WHERE EXISTS (SELECT 1 FROM key)"
    ctes.append(
        f"e AS (INSERT INTO wfe_executions ({', '.join(columns)}, id_ms) "
        f"SELECT {values}, ${n + 1}::bigint{where} RETURNING tenant_id, status)"
    )
    rows = f"SELECT tenant_id, status, ${n + 2}::bigint, ${n + 3}::smallint, 1 FROM e"
    ctes.append(f"c AS ({_COUNT_ROWS.format(rows=rows)})")
    return _with(ctes, "SELECT count(*) FROM e")


_PROGRESS = (
    "UPDATE wfe_executions AS e SET progress = v.p::json, updated_at = $3 "
    "FROM unnest($1::text[], $2::text[], $4::bigint[]) AS v(id, p, ms) "
    "WHERE e.execution_id = v.id AND e.id_ms = v.ms AND e.status IN ('running', 'waiting')"
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
    "bigint",
)


@functools.cache
def _nodes_sql(first: int) -> str:
    """Upsert node results given as arrays, parameters ``$first`` onwards."""
    arrays = ", ".join(f"${first + i}::{kind}[]" for i, kind in enumerate(_NODE_ARRAYS))
    return (
        "INSERT INTO wfe_node_results (execution_id, node_id, seq, node_type, name, status, "
        "input, output, error, attempt, started_at, completed_at, id_ms) "
        "SELECT v.execution_id, v.node_id, v.seq, v.node_type, v.name, v.status, "
        "v.input::json, v.output::json, v.error::json, v.attempt, v.started_at, v.completed_at, "
        f"v.id_ms FROM unnest({arrays}) AS v(execution_id, node_id, seq, node_type, name, "
        "status, input, output, error, attempt, started_at, completed_at, id_ms) "
        "ON CONFLICT (execution_id, node_id, id_ms) DO UPDATE SET seq = excluded.seq, "
        "node_type = excluded.node_type, name = excluded.name, status = excluded.status, "
        "input = excluded.input, output = excluded.output, error = excluded.error, "
        "attempt = excluded.attempt, started_at = excluded.started_at, "
        "completed_at = excluded.completed_at"
    )
