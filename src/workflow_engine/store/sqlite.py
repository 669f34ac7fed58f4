"""SQLite (WAL). Reads go through SQLAlchemy (aiosqlite). The hot writes (every group-commit
batch, every new execution) bypass it: each is one function over a plain ``sqlite3``
connection, ``BEGIN IMMEDIATE`` … ``COMMIT`` inside, instead of a thread hop per statement.
A small one runs on the event loop itself when the database is free (a fraction of a
millisecond); a large one, or one that finds another process writing, runs on a write thread
that waits its turn. ``IMMEDIATE`` takes the write lock at the start, so reading statuses and
then updating them is atomic across processes."""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from workflow_engine.config import ConfigError
from workflow_engine.store import counts
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

IN_CHUNK = 500  # ids per statement, well under SQLite's limit on variables
INLINE_MAX_WRITES = 16  # batches up to this size may run on the event loop itself
_BUSY = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}
BUSY_TIMEOUT_S = 30


def _param(column: str, value: Any) -> Any:
    return json_text(value) if column in JSON_COLUMNS else value


class SqliteStore(SqlStore):
    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        if self.url.database in (None, "", ":memory:"):
            raise ConfigError("the SQLite store needs a file (sqlite:///path/to/wfe.db)")
        self._write_thread = ThreadPoolExecutor(1, thread_name_prefix="wfe-sqlite-writes")
        self._thread_conn: sqlite3.Connection | None = None  # used on that thread only
        self._loop_conn: sqlite3.Connection | None = None  # used on the event loop only

    async def close(self) -> None:
        await super().close()
        await asyncio.get_running_loop().run_in_executor(self._write_thread, self._close_thread)
        self._write_thread.shutdown(wait=True)
        if self._loop_conn is not None:
            self._loop_conn.close()
            self._loop_conn = None

    async def _insert(self, record: ExecutionRecord) -> ExecutionRecord | None:
        row = record_row(record)
        for column in RECORD_JSON_COLUMNS:
            row[column] = json_text(row[column])
        if await self._write(_insert, row, size=1):
            return None
        return await self._by_idempotency_key(record)

    async def _apply(self, writes: Sequence[Write]) -> list[bool]:
        results: list[bool] = await self._write(_apply, Batch.of(writes), size=len(writes))
        return results

    async def _write(
        self, work: Callable[[sqlite3.Connection, Any], Any], argument: Any, *, size: int
    ) -> Any:
        """Run a write transaction. A small one runs right here when the database is free
        (no busy wait: a fraction of a millisecond, and no thread hop); a large one, or one
        that finds another process writing, runs on the write thread, which waits its turn."""
        try:
            if size <= INLINE_MAX_WRITES:
                try:
                    return work(self._on_loop(), argument)
                except sqlite3.OperationalError as exc:
                    if exc.sqlite_errorcode not in _BUSY:  # else: rolled back, nothing done
                        raise
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._write_thread, self._on_thread, work, argument)
        except (sqlite3.OperationalError, sqlite3.InterfaceError, OSError) as exc:
            raise StoreUnavailable(f"state store unreachable: {exc}") from exc

    def _on_loop(self) -> sqlite3.Connection:
        if self._loop_conn is None:
            self._loop_conn = _connect(self.url.database or "", busy_timeout_s=0)
        return self._loop_conn

    def _on_thread(self, work: Callable[[sqlite3.Connection, Any], Any], argument: Any) -> Any:
        if self._thread_conn is None:
            self._thread_conn = _connect(self.url.database or "", busy_timeout_s=BUSY_TIMEOUT_S)
        return work(self._thread_conn, argument)

    def _close_thread(self) -> None:
        if self._thread_conn is not None:
            self._thread_conn.close()
            self._thread_conn = None


def _connect(path: str, *, busy_timeout_s: float) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path,
        timeout=busy_timeout_s,
        isolation_level=None,  # transactions are ours
        check_same_thread=False,  # each connection is used by one thread only
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
    return conn


def _insert(conn: sqlite3.Connection, row: dict[str, Any]) -> bool:
    """Insert a new execution and count it; False when its idempotency key is taken."""
    conflict = (
        " ON CONFLICT (tenant_id, idempotency_key) DO NOTHING"
        if row["idempotency_key"] is not None
        else ""
    )
    names = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    with _transaction(conn):
        cursor = conn.execute(
            f"INSERT INTO wfe_executions ({names}) VALUES ({marks}){conflict}", list(row.values())
        )
        inserted = cursor.rowcount == 1
        if inserted:
            conn.execute(counts.UPSERT_SQL, (row["tenant_id"], row["status"], 0, 0, 1))
    return inserted


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``: the write lock from the start (reading statuses and
    then updating them is atomic across processes); rolled back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _apply(conn: sqlite3.Connection, batch: Batch) -> list[bool]:
    """One group-commit batch in one transaction; which transitions took effect. The counts'
    changes of all its transitions are summed and written last, one row per key."""
    results: list[bool] = [True] * batch.size
    deltas = counts.Deltas()
    with _transaction(conn):
        if batch.progress:
            conn.executemany(
                "UPDATE wfe_executions SET progress = ?, updated_at = ? "
                "WHERE execution_id = ? AND status IN ('running', 'waiting')",
                [(json_text(p), batch.now, eid) for eid, p in batch.progress.items()],
            )
        for shape, group in batch.groups():
            taken = _transitions(conn, shape, [op for _, op in group], batch.now)
            for index, op in group:
                results[index] = op.execution_id in taken
            for tenant_id, old in taken.values():
                deltas.moved(tenant_id, old, shape[0], 0)
        if batch.nodes:
            conn.executemany(_NODES, [_node_row(op) for op in batch.nodes])
        if deltas:
            conn.executemany(counts.UPSERT_SQL, deltas.rows())
    return results


def _transitions(
    conn: sqlite3.Connection, shape: Shape, ops: list[Transition], now: int
) -> dict[str, tuple[str, str]]:
    """Apply transitions of one shape; the ids that were in an allowed status (changed), each
    with its tenant and the status it had. The write lock is held since ``BEGIN IMMEDIATE``,
    so the statuses read are the ones the updates replace."""
    to, allowed, _, columns = shape
    taken: dict[str, tuple[str, str]] = {}
    for start in range(0, len(ops), IN_CHUNK):
        chunk = ops[start : start + IN_CHUNK]
        ids = [op.execution_id for op in chunk]
        cursor = conn.execute(_eligible(allowed, len(ids)), [*ids, *sorted(allowed)])
        eligible = {row[0]: (row[1], row[2]) for row in cursor.fetchall()}
        if not eligible:
            continue
        taken.update(eligible)
        # compare encoded values: 1, 1.0 and True are equal in Python, not in JSON
        params = [tuple(_param(c, op.values[c]) for c in columns) for op in chunk]
        if all(p == params[0] and same_types(p, params[0]) for p in params):
            chosen = [i for i in ids if i in eligible]
            conn.execute(_update_same(shape, len(chosen)), [to, now, *params[0], *chosen])
            continue
        rows = [
            [to, now, *values, op.execution_id]
            for op, values in zip(chunk, params, strict=True)
            if op.execution_id in eligible
        ]
        conn.executemany(_update_each(shape), rows)
    return taken


def _node_row(op: SaveNode) -> tuple[Any, ...]:
    return (
        op.execution_id,
        op.result.node_id,
        op.seq,
        op.result.node_type,
        op.result.name,
        str(op.result.status),
        json_text(op.result.input),
        json_text(op.result.output),
        json_text(op.result.error),
        op.result.attempt,
        ms(op.result.started_at),
        ms(op.result.completed_at),
    )


def _assignments(stamp: frozenset[str], columns: tuple[str, ...]) -> str:
    """Parameters: status, now, then one per column."""
    parts = ["status = ?1", "updated_at = ?2"]
    for column in sorted(stamp):
        parts.append(
            "started_at = coalesce(started_at, ?2)" if column == "started_at" else f"{column} = ?2"
        )
    parts += [f"{column} = ?{3 + i}" for i, column in enumerate(columns)]
    return ", ".join(parts)


def _placeholders(first: int, count: int) -> str:
    return ", ".join(f"?{first + i}" for i in range(count))


@functools.cache
def _update_same(shape: Shape, ids: int) -> str:
    """Eligible executions (read first) all getting the same values."""
    _, _, stamp, columns = shape
    first_id = 3 + len(columns)
    return (
        f"UPDATE wfe_executions SET {_assignments(stamp, columns)} "
        f"WHERE execution_id IN ({_placeholders(first_id, ids)})"
    )


@functools.cache
def _update_each(shape: Shape) -> str:
    _, _, stamp, columns = shape
    return (
        f"UPDATE wfe_executions SET {_assignments(stamp, columns)} "
        f"WHERE execution_id = ?{3 + len(columns)}"
    )


@functools.cache
def _eligible(allowed: frozenset[str], ids: int) -> str:
    return (
        "SELECT execution_id, tenant_id, status FROM wfe_executions "
        f"WHERE execution_id IN ({_placeholders(1, ids)})"
        f" AND status IN ({_placeholders(1 + ids, len(allowed))})"
    )


_NODES = (
    "INSERT INTO wfe_node_results (execution_id, node_id, seq, node_type, name, status, input, "
    "output, error, attempt, started_at, completed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (execution_id, node_id) DO UPDATE SET seq = excluded.seq, "
    "node_type = excluded.node_type, name = excluded.name, status = excluded.status, "
    "input = excluded.input, output = excluded.output, error = excluded.error, "
    "attempt = excluded.attempt, started_at = excluded.started_at, "
    "completed_at = excluded.completed_at"
)
