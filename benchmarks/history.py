"""What a long history costs the store: reads and retention at 1,000 to 1,000,000 executions.

    python -m benchmarks.history [--stores sqlite,postgres] [--sizes 1000,10000,100000,1000000]
                                 [--reads 200] [--quick] [--retention-rows N] [--json FILE]

For each store and size, the store is filled (straight in SQL, bypassing the store: mixed
statuses, ten tenants, one node result per execution, ids spread over the last seven months)
and each read is timed ``--reads`` times: ``count_by_status`` of a tenant (what ``/stats``
uses) beside the GROUP BY it replaced, the first page of ``list_executions`` and ``get`` of a
random id (the status read). Retention is then timed on the two oldest months (each a sixth
of the executions, all finished): the oldest one by the chunked DELETE every store has, the
next by ``cleanup``'s own path, which on PostgreSQL drops the month's partitions.

PostgreSQL runs in a database of its own, created beside the one ``--postgres-url`` names
(``WFE_TEST_POSTGRES_URL``, else ``postgresql://postgres@127.0.0.1:5432/test``) and dropped
after; SQLite in a temporary directory. Sizes grow one fill on top of the last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import sqlalchemy as sa

from benchmarks.stats import percentiles
from workflow_engine.ids import new_id
from workflow_engine.store import migrations, open_store, partitions
from workflow_engine.store.sql import SqlStore
from workflow_engine.vocabulary import now_ms

SIZES = (1_000, 10_000, 100_000, 1_000_000)
QUICK_SIZES = (1_000, 10_000)
TENANTS = [f"tenant-{i}" for i in range(10)]
MONTHS = 7
"""Ids are spread over the current month and the six before it, a sixth of the executions in
each of the six (the current one gets what is left: the newest, some still active)."""
DAY_MS = 86_400_000
_FINAL = ("completed", "completed", "completed", "completed", "failed", "cancelled")
_ANY = (*_FINAL, "pending", "running", "waiting")
_DEFINITION = orjson.dumps(
    {
        "id": "history",
        "nodes": [{"id": f"n{i}", "type": "echo", "inputs": {"i": i}} for i in range(3)],
        "edges": [{"from": "n0", "to": "n1"}, {"from": "n1", "to": "n2"}],
    }
).decode()
_NULLS = ("null", "null", "null")  # result, error, progress
_OUTPUT = orjson.dumps({"i": 2, "text": "x" * 100}).decode()
Row = tuple[str, str, str, int, int | None]
"""(execution id, tenant, status, created, completed)."""
DEFAULT_POSTGRES = os.environ.get(
    "WFE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def _month_starts(now: int) -> list[int]:
    """The first millisecond of the current month and the six before it, oldest first."""
    months = [partitions.month_of(now)]
    for _ in range(MONTHS - 1):
        months.insert(0, partitions.month_of(months[0] - 1))
    return months


def _rows(
    start: int, count: int, months: list[int], now: int, only: Sequence[int] = ()
) -> Iterator[Row]:
    """Executions ``start`` .. ``start + count``. Execution ``i``'s month is fixed by ``i``
    (``i % 7``, or among the month indexes ``only``), so that every fill spreads its rows over
    the months the same way."""
    rng = random.Random(start)
    for i in range(start, start + count):
        slot = only[i % len(only)] if only else i % 7
        month = months[slot] if slot < 6 else months[6]
        end = now if slot == 6 else months[slot + 1]
        created = rng.randrange(month, end - 1000)
        status = rng.choice(_ANY if slot == 6 else _FINAL)
        final = status in _FINAL
        yield (
            new_id("exec_", now=created / 1000),
            TENANTS[i % len(TENANTS)],
            status,
            created,
            created if final else None,
        )


def _execution(
    eid: str, tenant: str, status: str, created: int, done: int | None
) -> tuple[Any, ...]:
    """A row of ``_EXECUTION_COLUMNS``."""
    head = (eid, tenant, "history", None, "workflow", status, 0, "{}", _DEFINITION, "{}")
    return (*head, *_NULLS, 1, None, created, created, created, done)


class Fill:
    """Bulk loads straight into a store's tables."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.postgres = store.engine.dialect.name == "postgresql"

    async def add(
        self, start: int, count: int, months: list[int], now: int, only: Sequence[int] = ()
    ) -> None:
        batch: list[Row] = []
        for row in _rows(start, count, months, now, only):
            batch.append(row)
            if len(batch) >= 20_000:
                await self._load(batch)
                batch = []
        if batch:
            await self._load(batch)

    async def _load(self, rows: list[Row]) -> None:
        executions = [
            _execution(eid, tenant, status, created, done)
            for eid, tenant, status, created, done in rows
        ]
        nodes = [
            (eid, "n2", 2, "echo", None, "completed", "null", _OUTPUT, "null", 1, created, done)
            for eid, _, _, created, done in rows
        ]
        if self.postgres:
            await self._copy(executions, nodes)
        else:
            await asyncio.to_thread(self._sqlite, executions, nodes)

    async def _copy(self, executions: list[tuple[Any, ...]], nodes: list[tuple[Any, ...]]) -> None:
        url = self.store.url.set(drivername="postgresql").render_as_string(hide_password=False)
        conn = await asyncpg.connect(url)
        try:
            await conn.copy_records_to_table(
                "wfe_executions",
                records=[(*r, partitions.id_ms(r[0])) for r in executions],
                columns=[*_EXECUTION_COLUMNS, "id_ms"],
            )
            await conn.copy_records_to_table(
                "wfe_node_results",
                records=[(*r, partitions.id_ms(r[0])) for r in nodes],
                columns=[*_NODE_COLUMNS, "id_ms"],
            )
        finally:
            await conn.close()

    def _sqlite(self, executions: list[tuple[Any, ...]], nodes: list[tuple[Any, ...]]) -> None:
        import sqlite3

        conn = sqlite3.connect(self.store.url.database or "", isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            marks = ", ".join("?" for _ in _EXECUTION_COLUMNS)
            conn.executemany(
                f"INSERT INTO wfe_executions ({', '.join(_EXECUTION_COLUMNS)}) VALUES ({marks})",
                executions,
            )
            marks = ", ".join("?" for _ in _NODE_COLUMNS)
            conn.executemany(
                f"INSERT INTO wfe_node_results ({', '.join(_NODE_COLUMNS)}) VALUES ({marks})",
                nodes,
            )
            conn.execute("COMMIT")
        finally:
            conn.close()

    async def recount(self) -> None:
        """The counts of what the loads added (they bypassed the store's writes)."""
        async with self.store.engine.begin() as conn:
            await conn.run_sync(migrations.recount)
            if self.postgres:
                await conn.execute(sa.text("ANALYZE wfe_executions"))
                await conn.execute(sa.text("ANALYZE wfe_node_results"))
            else:
                await conn.execute(sa.text("ANALYZE"))


_EXECUTION_COLUMNS = (
    "execution_id",
    "tenant_id",
    "workflow_id",
    "client_id",
    "queue",
    "status",
    "priority",
    "metadata",
    "definition",
    "inputs",
    "result",
    "error",
    "progress",
    "attempts",
    "idempotency_key",
    "created_at",
    "started_at",
    "updated_at",
    "completed_at",
)
_NODE_COLUMNS = (
    "execution_id",
    "node_id",
    "seq",
    "node_type",
    "name",
    "status",
    "input",
    "output",
    "error",
    "attempt",
    "started_at",
    "completed_at",
)


async def _timed(reads: int, call: Callable[[], Awaitable[Any]]) -> dict[str, float]:
    await call()  # warm: connections, prepared statements, caches
    samples = []
    for _ in range(reads):
        began = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - began) * 1000)
    p50, p99 = percentiles(samples)
    return {"p50_ms": round(p50, 3), "p99_ms": round(p99, 3)}


async def _measure(store: SqlStore, ids: Sequence[str], reads: int) -> dict[str, Any]:
    rng = random.Random(7)
    group_by = sa.text(
        "SELECT status, count(*) FROM wfe_executions WHERE tenant_id = :t GROUP BY status"
    )

    async def old_count() -> None:
        async with store.engine.connect() as conn:
            (await conn.execute(group_by, {"t": rng.choice(TENANTS)})).all()

    async def get() -> None:
        assert await store.get(rng.choice(ids)) is not None

    return {
        "count_by_status": await _timed(reads, lambda: store.count_by_status(rng.choice(TENANTS))),
        "group_by (before)": await _timed(max(5, reads // 10), old_count),
        "list_first_page": await _timed(
            reads, lambda: store.list_executions(rng.choice(TENANTS), limit=20)
        ),
        "get_by_id": await _timed(reads, get),
    }


async def _retention(store: SqlStore, months: list[int]) -> dict[str, Any]:
    """The oldest month by DELETE (the path every SQL store has), the next by ``cleanup``'s
    own path (PostgreSQL: DROP of its partitions)."""
    async with store.engine.connect() as conn:
        query = sa.text(
            "SELECT count(*) FROM wfe_node_results WHERE started_at >= :a AND started_at < :b"
        )
        sizes = [
            (await conn.execute(query, {"a": months[i], "b": months[i + 1]})).scalar()
            for i in (0, 1)
        ]
    began = time.perf_counter()
    deleted = await SqlStore._delete_finished_before(store, months[1])
    delete_s = time.perf_counter() - began
    began = time.perf_counter()
    dropped = await store._delete_finished_before(months[2])
    drop_s = time.perf_counter() - began
    postgres = store.engine.dialect.name == "postgresql"
    return {
        "delete": {"executions": len(deleted), "node_results": sizes[0], "s": round(delete_s, 3)},
        "drop_partition" if postgres else "delete (next month)": {
            "executions": len(dropped),
            "node_results": sizes[1],
            "s": round(drop_s, 3),
        },
    }


@asynccontextmanager
async def _fresh(store_url: str) -> AsyncIterator[str]:
    """A store URL of an empty database for this run (dropped afterwards)."""
    if store_url.startswith("sqlite"):
        with tempfile.TemporaryDirectory() as directory:
            yield f"sqlite:///{Path(directory) / 'history.db'}"
        return
    admin = store_url.replace("postgresql+asyncpg://", "postgresql://")
    name = f"wfe_history_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield f"{admin.rsplit('/', 1)[0]}/{name}"
    finally:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


async def run(
    store_url: str,
    sizes: Sequence[int] = SIZES,
    *,
    reads: int = 200,
    retention: bool = True,
    retention_rows: int | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Fill one store to each size in turn and time its reads; then retention at the
    largest size (``retention_rows``: on two months of that many executions each, added
    after the reads). Returns ``{"store", "sizes": {n: {read: {p50_ms, p99_ms}}}, "retention"}``."""
    out: dict[str, Any] = {"store": store_url.split(":")[0], "sizes": {}}
    async with _fresh(store_url) as url:
        store = open_store(url)
        assert isinstance(store, SqlStore)
        try:
            await store.migrate()
            now = now_ms()
            months = _month_starts(now)
            if isinstance(store, SqlStore) and store.engine.dialect.name == "postgresql":
                async with store.engine.begin() as conn:
                    for month in [*months, partitions.next_month(months[-1])]:
                        for table in partitions.PARTITIONED:
                            await conn.execute(
                                sa.text(partitions.create_partition_sql(table, month))
                            )
            fill, have = Fill(store), 0
            for size in sorted(sizes):
                began = time.perf_counter()
                await fill.add(have, size - have, months, now)
                await fill.recount()
                have = size
                progress(
                    f"{out['store']}: {size:,} executions in {time.perf_counter() - began:.1f} s"
                )
                async with store.engine.connect() as conn:
                    sample = await conn.execute(
                        sa.text("SELECT execution_id FROM wfe_executions LIMIT 2000")
                    )
                    ids = list(sample.scalars())
                out["sizes"][size] = await _measure(store, ids, reads)
            if retention_rows:  # the two oldest months hold that many each
                for index in (0, 1):
                    await fill.add(have, retention_rows, months, now, only=(index,))
                    have += retention_rows
                await fill.recount()
                progress(f"{out['store']}: two months of {retention_rows:,} executions added")
            if retention:
                out["retention"] = await _retention(store, months)
        finally:
            await store.close()
    return out


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        f"{'store':<10}{'executions':>12}  {'read':<20}{'p50 ms':>10}{'p99 ms':>10}",
    ]
    for result in results:
        for size, reads in result["sizes"].items():
            for name, figures in reads.items():
                lines.append(
                    f"{result['store']:<10}{size:>12,}  {name:<20}"
                    f"{figures['p50_ms']:>10.3f}{figures['p99_ms']:>10.3f}"
                )
        for name, figures in result.get("retention", {}).items():
            lines.append(
                f"{result['store']:<10}{'retention':>12}  {name:<20}"
                f"{figures['s']:>9.3f}s  {figures['executions']:,} executions, "
                f"{figures['node_results']:,} node results"
            )
    return "\n".join(lines)


async def _main(args: argparse.Namespace) -> list[dict[str, Any]]:
    urls = {"sqlite": "sqlite:///unused", "postgres": args.postgres_url}
    sizes: tuple[int, ...] = ()
    if args.quick:
        sizes = QUICK_SIZES
    elif args.sizes != "none":
        sizes = tuple(int(s) for s in args.sizes.split(","))
    reads = 30 if args.quick else args.reads
    results = []
    for name in args.stores.split(","):
        results.append(
            await run(
                urls[name],
                sizes,
                reads=reads,
                retention_rows=args.retention_rows,
                progress=lambda line: print(line, flush=True),
            )
        )
    return results


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.history", description=__doc__)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    parser.add_argument("--reads", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="1,000 and 10,000 executions")
    parser.add_argument(
        "--retention-rows",
        type=int,
        help="time retention on two months of this many executions (and node results) each; "
        "with --sizes none, retention alone",
    )
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    results = asyncio.run(_main(args))
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
