"""PostgreSQL: the write batches go straight to asyncpg, one statement per kind of write, values
as arrays (``unnest``): a batch of any size is a handful of round trips and no per-row work in
Python. Every statement is parameterised; its text depends only on which columns a transition
sets, never on data."""

from __future__ import annotations

import functools
from typing import Any

from workflow_engine.store.base import SaveNode, Transition
from workflow_engine.store.sql import JSON_COLUMNS, Shape, SqlStore, json_text, ms, same_types

INT_COLUMNS = {"attempts": "integer", "started_at": "bigint", "completed_at": "bigint"}


def _param(column: str, value: Any) -> Any:
    return json_text(value) if column in JSON_COLUMNS else value


def _cast(column: str) -> str:
    return "json" if column in JSON_COLUMNS else INT_COLUMNS.get(column, "text")


class PostgresStore(SqlStore):
    async def _write_progress(self, raw: Any, progress: dict[str, Any], now: int) -> None:
        await raw.execute(_PROGRESS, list(progress), [json_text(p) for p in progress.values()], now)

    async def _write_transitions(
        self, raw: Any, shape: Shape, ops: list[Transition], now: int
    ) -> set[str]:
        to, allowed, _, columns = shape
        ids = [op.execution_id for op in ops]
        # compare encoded values: 1, 1.0 and True are equal in Python, not in JSON
        params = [tuple(_param(c, op.values[c]) for c in columns) for op in ops]
        if all(p == params[0] and same_types(p, params[0]) for p in params):
            values = list(params[0])
            rows = await raw.fetch(_update_same(shape), to, now, ids, list(allowed), *values)
        else:
            arrays = [list(column) for column in zip(*params, strict=True)] if columns else []
            rows = await raw.fetch(_update_each(shape), to, now, ids, list(allowed), *arrays)
        return {row[0] for row in rows}

    async def _write_nodes(self, raw: Any, ops: list[SaveNode]) -> None:
        results = [op.result for op in ops]
        await raw.execute(
            _NODES,
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
        )


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


_PROGRESS = (
    "UPDATE wfe_executions AS e SET progress = v.p::json, updated_at = $3 "
    "FROM unnest($1::text[], $2::text[]) AS v(id, p) WHERE e.execution_id = v.id "
    "AND e.status IN ('running', 'waiting')"
)

_NODES = (
    "INSERT INTO wfe_node_results (execution_id, node_id, seq, node_type, name, status, input, "
    "output, error, attempt, started_at, completed_at) "
    "SELECT v.execution_id, v.node_id, v.seq, v.node_type, v.name, v.status, v.input::json, "
    "v.output::json, v.error::json, v.attempt, v.started_at, v.completed_at "
    "FROM unnest($1::text[], $2::text[], $3::integer[], $4::text[], $5::text[], $6::text[], "
    "$7::text[], $8::text[], $9::text[], $10::integer[], $11::bigint[], $12::bigint[]) "
    "AS v(execution_id, node_id, seq, node_type, name, status, input, output, error, attempt, "
    "started_at, completed_at) "
    "ON CONFLICT (execution_id, node_id) DO UPDATE SET seq = excluded.seq, "
    "node_type = excluded.node_type, name = excluded.name, status = excluded.status, "
    "input = excluded.input, output = excluded.output, error = excluded.error, "
    "attempt = excluded.attempt, started_at = excluded.started_at, "
    "completed_at = excluded.completed_at"
)
