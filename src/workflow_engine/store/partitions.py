"""PostgreSQL's layout by month: ``wfe_executions`` and ``wfe_node_results`` are partitioned by
RANGE on ``id_ms``, the creation time an execution id encodes (``ids.py``: ``exec_`` + a
ULID, whose first 10 characters are its milliseconds). A node result's key is its execution's,
from the id alone, so both halves of an execution sit in the same month, a read by id is
pruned to one partition, and dropping a month drops both. An id that encodes no time (a job a
producer named, ``worker/adopt.py``) gets -1: the ``untimed`` partition, which retention
empties by DELETE. Identifiers in the DDL here come from integers, never from data."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import sqlalchemy as sa

from workflow_engine.store.schema import executions, node_results

UNTIMED = -1
_ULID_ID = re.compile(r"exec_[0-7][0-9A-HJKMNP-TV-Z]{25}")
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DIGITS = {c: i for i, c in enumerate(_ALPHABET)}
PARTITIONED = ("wfe_executions", "wfe_node_results")
LOCK_KEY = 0x57_46_45_02  # "WFE" + 2: creating partitions


def id_ms(execution_id: str) -> int:
    """The milliseconds an ``exec_`` ULID encodes; ``UNTIMED`` for any other id, and for one
    whose time is past ``LAST_MS`` (a ULID reaches year 10889, Python's dates year 9999)."""
    if not _ULID_ID.fullmatch(execution_id):
        return UNTIMED
    value = 0
    for char in execution_id[5:15]:
        value = value * 32 + _DIGITS[char]
    return value if value < LAST_MS else UNTIMED


def month_of(ms: int) -> int:
    """The first millisecond of the (UTC) month of ``ms``; ``UNTIMED`` stays itself."""
    if ms < 0:
        return UNTIMED
    day = datetime.fromtimestamp(ms / 1000, UTC)
    return _ms(datetime(day.year, day.month, 1, tzinfo=UTC))


def next_month(month: int) -> int:
    day = datetime.fromtimestamp(month / 1000, UTC)
    year, index = divmod(day.month, 12)  # month 12 -> January of the next year
    return _ms(datetime(day.year + year, index + 1, 1, tzinfo=UTC))


def bucket_of(execution_id: str) -> int:
    """The month partition of an execution (its counts' bucket)."""
    return month_of(id_ms(execution_id))


def _ms(moment: datetime) -> int:
    return int(moment.timestamp()) * 1000


LAST_MS = _ms(datetime(9999, 11, 1, tzinfo=UTC))
"""Ids whose time is this or later are untimed: the partition of a month and the one made
ahead of it both need the month after them to be a date (an id is a producer's job id
as much as ours, issue 20: ``exec_7ZZZZZZZZZ…`` must not crash a write)."""


def partition_name(table: str, month: int) -> str:
    if month == UNTIMED:
        return f"{table}_untimed"
    return f"{table}_{datetime.fromtimestamp(month / 1000, UTC):%Y%m}"


def _bounds(month: int) -> str:
    if month == UNTIMED:
        return "FROM (MINVALUE) TO (0)"
    return f"FROM ({int(month)}) TO ({next_month(int(month))})"


def create_partition_sql(table: str, month: int) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {partition_name(table, month)} PARTITION OF {table} "
        f"FOR VALUES {_bounds(month)}"
    )


def attach_partition_sql(table: str, month: int) -> tuple[str, str]:
    """Make a month's partition while the table is in use: created on its own, then attached,
    which locks the partitioned table in SHARE UPDATE EXCLUSIVE mode only (``CREATE TABLE …
    PARTITION OF`` locks it ACCESS EXCLUSIVE: it waits for every transaction using the table,
    every read and write waits behind it, and a writer that holds the other table's lock and
    then needs this one deadlocks with it). Run both in one transaction."""
    name = partition_name(table, month)
    return (
        f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)",
        f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES {_bounds(month)}",
    )


def month_from_name(name: str) -> int | None:
    """The month of a partition's name (None for ``untimed`` or a foreign table)."""
    suffix = name.rsplit("_", 1)[-1]
    if not suffix.isdigit() or len(suffix) < 6:
        return None
    return _ms(datetime(int(suffix[:-2]), int(suffix[-2:]), 1, tzinfo=UTC))


FUNCTIONS = (
    # the SQL twin of ``id_ms`` (the migration and bulk loads compute keys in the database)
    "CREATE OR REPLACE FUNCTION wfe_id_ms(id text) RETURNS bigint LANGUAGE sql IMMUTABLE "
    f"PARALLEL SAFE AS $$ SELECT CASE WHEN ms < {LAST_MS} THEN ms ELSE -1 END FROM (SELECT CASE "
    "WHEN id ~ '^exec_[0-7][0-9A-HJKMNP-TV-Z]{25}$' THEN (SELECT sum((strpos("
    "'0123456789ABCDEFGHJKMNPQRSTVWXYZ', substr(id, 5 + i, 1)) - 1)::bigint << (5 * (10 - i))) "
    "FROM generate_series(1, 10) AS i)::bigint ELSE -1 END AS ms) AS k $$",
    # the SQL twin of ``month_of``
    "CREATE OR REPLACE FUNCTION wfe_month(ms bigint) RETURNS bigint LANGUAGE sql IMMUTABLE "
    "PARALLEL SAFE AS $$ SELECT CASE WHEN ms < 0 THEN -1 ELSE (extract(epoch FROM "
    "date_trunc('month', to_timestamp(ms / 1000.0) AT TIME ZONE 'UTC')) * 1000)::bigint END $$",
)

_INDEXES = (
    "CREATE INDEX ix_wfe_executions_tenant ON wfe_executions (tenant_id, execution_id)",
    "CREATE INDEX ix_wfe_executions_client ON wfe_executions (client_id)",
    "CREATE INDEX ix_wfe_executions_workflow ON wfe_executions (workflow_id, execution_id)",
    "CREATE INDEX ix_wfe_executions_completed ON wfe_executions (completed_at)",
)

KEYS_TABLE = (
    # the idempotency guarantee: a unique index of a partitioned table must hold its partition
    # key, so (tenant, key) would be unique per month only; this small table keeps it global
    "CREATE TABLE wfe_idempotency_keys (tenant_id VARCHAR(200) NOT NULL, "
    "idempotency_key VARCHAR(200) NOT NULL, execution_id VARCHAR(64) NOT NULL, "
    "id_ms BIGINT NOT NULL, PRIMARY KEY (tenant_id, idempotency_key))",
    "CREATE INDEX ix_wfe_idempotency_keys_month ON wfe_idempotency_keys (id_ms)",
)


def _columns(table: sa.Table, conn: sa.Connection) -> str:
    return ", ".join(
        f"{c.name} {c.type.compile(conn.dialect)}{'' if c.nullable else ' NOT NULL'}"
        for c in table.c
    )


def partition_layout(conn: sa.Connection) -> None:
    """Migration 7 on PostgreSQL: the month layout. A database on the old layout is converted
    in the migration's transaction: its tables renamed, the partitioned ones created with a
    partition for each month its rows are in, the rows copied, the old tables dropped (so a
    large database spends the copy's time in it, once). Idempotency keys move to their
    table. A new database goes the same way with nothing to copy."""
    for statement in FUNCTIONS:
        conn.execute(sa.text(statement))
    kind = conn.execute(
        sa.text("SELECT relkind FROM pg_class WHERE oid = to_regclass('wfe_executions')")
    ).scalar()
    if kind == "p":
        return
    for table in PARTITIONED:
        conn.execute(sa.text(f"ALTER TABLE {table} RENAME TO {table}_unpartitioned"))
        conn.execute(
            sa.text(f"ALTER TABLE {table}_unpartitioned DROP CONSTRAINT IF EXISTS {table}_pkey")
        )
    for index in (*(i.name for i in executions.indexes),):
        conn.execute(sa.text(f"DROP INDEX IF EXISTS {index}"))
    conn.execute(
        sa.text(
            f"CREATE TABLE wfe_executions ({_columns(executions, conn)}, id_ms BIGINT NOT NULL, "
            "PRIMARY KEY (execution_id, id_ms)) PARTITION BY RANGE (id_ms)"
        )
    )
    conn.execute(
        sa.text(
            f"CREATE TABLE wfe_node_results ({_columns(node_results, conn)}, "
            "id_ms BIGINT NOT NULL, PRIMARY KEY (execution_id, node_id, id_ms)) "
            "PARTITION BY RANGE (id_ms)"
        )
    )
    for statement in _INDEXES:
        conn.execute(sa.text(statement))
    conn.execute(sa.text("DROP TABLE IF EXISTS wfe_idempotency_keys"))
    for statement in KEYS_TABLE:
        conn.execute(sa.text(statement))
    months = set(
        conn.execute(
            sa.text(
                "SELECT DISTINCT wfe_month(wfe_id_ms(execution_id)) FROM "
                "wfe_executions_unpartitioned UNION SELECT DISTINCT "
                "wfe_month(wfe_id_ms(execution_id)) FROM wfe_node_results_unpartitioned"
            )
        ).scalars()
    )
    now = month_of(int(datetime.now(UTC).timestamp() * 1000))
    for month in sorted(months | {UNTIMED, now, next_month(now)}):
        for table in PARTITIONED:
            conn.execute(sa.text(create_partition_sql(table, month)))
    for model, source in ((executions, "wfe_executions"), (node_results, "wfe_node_results")):
        names = ", ".join(c.name for c in model.c)
        conn.execute(
            sa.text(
                f"INSERT INTO {source} ({names}, id_ms) SELECT {names}, wfe_id_ms(execution_id) "
                f"FROM {source}_unpartitioned"
            )
        )
        conn.execute(sa.text(f"DROP TABLE {source}_unpartitioned"))
    conn.execute(
        sa.text(
            "INSERT INTO wfe_idempotency_keys (tenant_id, idempotency_key, execution_id, id_ms) "
            "SELECT tenant_id, idempotency_key, execution_id, id_ms FROM wfe_executions "
            "WHERE idempotency_key IS NOT NULL"
        )
    )
