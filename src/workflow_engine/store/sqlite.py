"""SQLite (aiosqlite, WAL): write batches go straight to the driver as ``executemany`` and
set-based ``UPDATE ... RETURNING`` statements, inside a transaction begun ``IMMEDIATE`` (the
write lock is held from the start, so reading statuses and then updating them is atomic across
processes)."""

from __future__ import annotations

import functools
from typing import Any

from workflow_engine.store.base import SaveNode, Transition
from workflow_engine.store.sql import JSON_COLUMNS, Shape, SqlStore, json_text, ms, same_types

IN_CHUNK = 500  # ids per statement, well under SQLite's limit on variables


def _param(column: str, value: Any) -> Any:
    return json_text(value) if column in JSON_COLUMNS else value


class SqliteStore(SqlStore):
    async def _write_progress(self, raw: Any, progress: dict[str, Any], now: int) -> None:
        await raw.executemany(
            "UPDATE wfe_executions SET progress = ?, updated_at = ? WHERE execution_id = ? "
            "AND status IN ('running', 'waiting')",
            [(json_text(p), now, execution_id) for execution_id, p in progress.items()],
        )

    async def _write_transitions(
        self, raw: Any, shape: Shape, ops: list[Transition], now: int
    ) -> set[str]:
        to, allowed, _, columns = shape
        taken: set[str] = set()
        for start in range(0, len(ops), IN_CHUNK):
            chunk = ops[start : start + IN_CHUNK]
            ids = [op.execution_id for op in chunk]
            # compare encoded values: 1, 1.0 and True are equal in Python, not in JSON
            params = [tuple(_param(c, op.values[c]) for c in columns) for op in chunk]
            if all(p == params[0] and same_types(p, params[0]) for p in params):
                cursor = await raw.execute(
                    _update_same(shape, len(ids)), [to, now, *params[0], *ids, *sorted(allowed)]
                )
                taken.update(row[0] for row in await cursor.fetchall())
                continue
            cursor = await raw.execute(_eligible(allowed, len(ids)), [*ids, *sorted(allowed)])
            eligible = {row[0] for row in await cursor.fetchall()}
            rows = [
                [to, now, *values, op.execution_id]
                for op, values in zip(chunk, params, strict=True)
                if op.execution_id in eligible
            ]
            if rows:
                await raw.executemany(_update_each(shape), rows)
            taken |= eligible
        return taken

    async def _write_nodes(self, raw: Any, ops: list[SaveNode]) -> None:
        await raw.executemany(
            _NODES,
            [
                (
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
                for op in ops
            ],
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
    _, allowed, stamp, columns = shape
    first_id = 3 + len(columns)
    return (
        f"UPDATE wfe_executions SET {_assignments(stamp, columns)} "
        f"WHERE execution_id IN ({_placeholders(first_id, ids)}) "
        f"AND status IN ({_placeholders(first_id + ids, len(allowed))}) RETURNING execution_id"
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
        f"SELECT execution_id FROM wfe_executions WHERE execution_id IN ({_placeholders(1, ids)})"
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
