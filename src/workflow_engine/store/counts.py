"""Status counts kept incrementally (``wfe_execution_counts``): what ``count_by_status`` (and so
``/stats``) reads instead of grouping every execution. Each write that creates an execution,
changes its status or deletes it adds its deltas in its own transaction; a batch sums them per
key first, so a batch of any size is one upsert per (tenant, status, bucket)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from workflow_engine.store.schema import execution_counts
from workflow_engine.vocabulary import ExecutionStatus

Key = tuple[str, str, int]
"""(tenant, status, bucket)."""


class Deltas(Counter[Key]):
    """Changes to the counts, summed per key."""

    def moved(self, tenant_id: str, old: str, new: str, bucket: int) -> None:
        if old != new:
            self[(tenant_id, old, bucket)] -= 1
            self[(tenant_id, new, bucket)] += 1

    def rows(self, slot: int = 0) -> list[tuple[str, str, int, int, int]]:
        """(tenant, status, bucket, slot, n) of the keys that change, sorted: every writer
        locks counter rows in one order, so two batches cannot deadlock on them."""
        return [(*key, slot, n) for key, n in sorted(self.items()) if n]


UPSERT_SQL = (
    "INSERT INTO wfe_execution_counts AS k (tenant_id, status, bucket, slot, n) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant_id, status, bucket, slot) "
    "DO UPDATE SET n = k.n + excluded.n"
)
"""The upsert in ``sqlite3``'s parameter style (the SQLite store's hot writes)."""


def upsert(dialect_name: str, rows: Iterable[tuple[str, str, int, int, int]]) -> Any:
    """The upsert as a SQLAlchemy statement (the rare writes: deletes, retention)."""
    dialect: Any = postgresql if dialect_name == "postgresql" else sqlite
    names = ("tenant_id", "status", "bucket", "slot", "n")
    values = [dict(zip(names, row, strict=True)) for row in rows]
    insert = dialect.insert(execution_counts).values(values)
    return insert.on_conflict_do_update(
        index_elements=["tenant_id", "status", "bucket", "slot"],
        set_={"n": execution_counts.c.n + insert.excluded.n},
    )


def read_query(tenant_id: str | None) -> sa.Select[Any]:
    query = sa.select(execution_counts.c.status, sa.func.sum(execution_counts.c.n)).group_by(
        execution_counts.c.status
    )
    if tenant_id is not None:
        query = query.where(execution_counts.c.tenant_id == tenant_id)
    return query


def as_counts(rows: Iterable[Any]) -> dict[str, int]:
    counts = {str(s): 0 for s in ExecutionStatus}
    counts.update({status: int(n) for status, n in rows if n})
    return counts
