"""PostgreSQL: the write pool reads the URL as SQLAlchemy does; executions and node results
are split by month (store/partitions.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa

from tests.store import counting
from workflow_engine.ids import new_execution_id, new_id
from workflow_engine.store import StateStore, migrations, open_store, partitions
from workflow_engine.store.base import Start
from workflow_engine.store.records import ExecutionRecord
from workflow_engine.store.schema import executions, node_results
from workflow_engine.store.sql import SqlStore
from workflow_engine.vocabulary import ExecutionStatus, NodeResult, NodeStatus, now_ms


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


# -- the month layout (store/partitions.py) ---------------------------------------------------

pg = pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
S = ExecutionStatus
DAY_MS = 86_400_000


def at(year: int, month: int, day: int = 2) -> int:
    return int(datetime(year, month, day, 12, tzinfo=UTC).timestamp() * 1000)


def made_at(ms: int, **fields: Any) -> ExecutionRecord:
    """An execution whose id was made at ``ms`` (its month partition)."""
    values: dict[str, Any] = {"workflow_id": "w", "tenant_id": "t", "queue": "workflow"}
    return ExecutionRecord(
        execution_id=new_id("exec_", now=ms / 1000), created_at=ms, **{**values, **fields}
    )


async def sql(store: StateStore, query: str, *args: Any) -> list[Any]:
    assert isinstance(store, SqlStore)
    params = {f"p{i}": a for i, a in enumerate(args)}
    async with store.engine.connect() as conn:
        return list((await conn.execute(sa.text(query), params)).all())


async def partition_of(store: StateStore, table: str, execution_id: str) -> list[str]:
    rows = await sql(
        store,
        f"SELECT tableoid::regclass::text FROM {table} WHERE execution_id = :p0",
        execution_id,
    )
    return [row[0] for row in rows]


async def exists(store: StateStore, table: str) -> bool:
    return (await sql(store, "SELECT to_regclass(:p0) IS NOT NULL", table))[0][0]


async def finished(store: StateStore, record: ExecutionRecord, completed_at: int) -> None:
    await store.create(record)
    assert await store.mark_running(record.execution_id, 1) is Start.STARTED
    node = NodeResult("n", "echo", None, NodeStatus.COMPLETED, output=1, attempt=1)
    assert await store.save_node(record.execution_id, node)
    assert await store.transition(record.execution_id, S.COMPLETED, completed_at=completed_at)


def test_the_sql_twins_of_id_ms_and_month_of_agree_with_python(store_url: str) -> None:
    """Covered by the next tests through the database; here the Python side's edges."""
    jan = at(2026, 1, 1) - 43_200_000  # 2026-01-01T00:00:00Z
    assert partitions.month_of(jan) == jan
    assert partitions.month_of(jan - 1) == at(2025, 12, 1) - 43_200_000
    assert partitions.next_month(at(2025, 12, 1) - 43_200_000) == jan
    assert partitions.id_ms(new_id("exec_", now=jan / 1000)) == jan
    assert partitions.id_ms("order-123") == partitions.UNTIMED
    assert partitions.id_ms("exec_1") == partitions.UNTIMED


@pg
async def test_the_database_computes_the_same_keys(store: StateStore) -> None:
    ids = [new_id("exec_", now=ms / 1000) for ms in (0, at(2026, 1, 1) - 43_200_001, now_ms())]
    ids += ["order-123", "exec_1", "exec_" + "Z" * 26]
    for execution_id in ids:
        key = partitions.id_ms(execution_id)
        row = await sql(store, "SELECT wfe_id_ms(:p0), wfe_month(wfe_id_ms(:p0))", execution_id)
        assert tuple(row[0]) == (key, partitions.month_of(key)), execution_id


@pg
async def test_rows_land_in_their_month_and_are_read_across_months(store: StateStore) -> None:
    old, new = made_at(at(2025, 11)), made_at(now_ms())
    foreign = ExecutionRecord("order-123", "w", "t", "workflow")
    for record in (old, new, foreign):
        assert (await store.create(record))[1]
        assert await store.mark_running(record.execution_id, 1) is Start.STARTED
        node = NodeResult("n", "echo", None, NodeStatus.COMPLETED, output=1, attempt=1)
        assert await store.save_node(record.execution_id, node)
    this_month = partitions.partition_name("wfe_executions", partitions.bucket_of(new.execution_id))
    assert await partition_of(store, "wfe_executions", old.execution_id) == [
        "wfe_executions_202511"
    ]
    assert await partition_of(store, "wfe_node_results", old.execution_id) == [
        "wfe_node_results_202511"
    ]
    assert await partition_of(store, "wfe_executions", new.execution_id) == [this_month]
    assert await partition_of(store, "wfe_executions", "order-123") == ["wfe_executions_untimed"]
    # the month after each is there before its first execution
    assert await exists(store, "wfe_executions_202512")
    for record in (old, new, foreign):
        got = await store.get(record.execution_id)
        assert got is not None
        assert got.status is S.RUNNING
        assert [n.node_id for n in await store.node_results(record.execution_id)] == ["n"]
        assert await store.finish(record.execution_id, S.COMPLETED)
    assert await store.final_among([old.execution_id, "order-123", "ghost"]) == {
        old.execution_id,
        "order-123",
    }
    page = await store.list_executions("t", limit=3)
    ids = ["order-123", new.execution_id, old.execution_id]  # by id, newest ULID first
    assert [r.execution_id for r in page.items] == ids
    assert await counting.check(store) == {("t", "completed"): 3}


@pg
async def test_retention_drops_an_expired_month_and_deletes_in_a_partly_expired_one(
    store: StateStore,
) -> None:
    expired = [made_at(at(2025, 1, d), idempotency_key=f"k{d}") for d in (3, 4)]
    for record in expired:
        await finished(store, record, at(2025, 2))
    partly_done = made_at(at(2025, 3))
    await finished(store, partly_done, at(2025, 3, 5))
    partly_running = made_at(at(2025, 3, 9))
    await store.create(partly_running)
    await store.mark_running(partly_running.execution_id, 1)
    recent = made_at(now_ms())
    await finished(store, recent, now_ms())
    removed = await store.cleanup(days=30)
    assert sorted(removed) == sorted([*(r.execution_id for r in expired), partly_done.execution_id])
    assert not await exists(store, "wfe_executions_202501")  # dropped, node results too
    assert not await exists(store, "wfe_node_results_202501")
    assert await exists(store, "wfe_executions_202503")  # a running execution keeps it
    assert await store.get(partly_done.execution_id) is None
    assert await store.node_results(partly_done.execution_id) == []
    assert await store.get(partly_running.execution_id) is not None
    assert await store.get(recent.execution_id) is not None
    assert await counting.check(store) == {("t", "running"): 1, ("t", "completed"): 1}
    # the dropped executions' keys are free again; the month comes back for them
    again = made_at(at(2025, 1, 20), idempotency_key="k3")
    assert (await store.create(again))[1]
    assert await partition_of(store, "wfe_executions", again.execution_id) == [
        "wfe_executions_202501"
    ]


@pg
async def test_a_month_is_not_dropped_while_one_execution_in_it_finished_late(
    store: StateStore,
) -> None:
    early, late = made_at(at(2025, 1, 3)), made_at(at(2025, 1, 4))
    await finished(store, early, at(2025, 1, 5))
    await finished(store, late, now_ms())  # finished today: kept 30 days more
    assert await store.cleanup(days=30) == [early.execution_id]
    assert await exists(store, "wfe_executions_202501")
    assert await store.get(late.execution_id) is not None


@pg
async def test_an_idempotency_key_holds_across_months(store: StateStore) -> None:
    first = made_at(at(2025, 6), idempotency_key="k")
    assert (await store.create(first))[1]
    later, fresh = await store.create(made_at(now_ms(), idempotency_key="k"))
    assert not fresh
    assert later.execution_id == first.execution_id
    racing = [made_at(at(2025, m), idempotency_key="race") for m in (7, 8, 9, 10)]
    results = await asyncio.gather(*(store.create(r) for r in racing))
    assert sum(fresh for _, fresh in results) == 1
    assert len({r.execution_id for r, _ in results}) == 1
    other_tenant = made_at(now_ms(), idempotency_key="k", tenant_id="t2")
    assert (await store.create(other_tenant))[1]
    assert await counting.check(store) == {("t", "pending"): 2, ("t2", "pending"): 1}


@pg
async def test_a_database_on_the_old_layout_is_converted_keeping_its_rows(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_versions = [m for m in migrations.MIGRATIONS if m[0] <= 6]
    monkeypatch.setattr(migrations, "MIGRATIONS", old_versions)
    store = open_store(store_url)
    await store.migrate()
    monkeypatch.undo()
    old_id, new_id_ = new_id("exec_", now=at(2024, 5) / 1000), new_execution_id()
    assert isinstance(store, SqlStore)
    async with store.engine.begin() as conn:
        for execution_id, status, key in (
            (old_id, "completed", "k"),
            (new_id_, "running", None),
            ("order-9", "pending", None),
        ):
            await conn.execute(
                sa.insert(executions).values(
                    execution_id=execution_id,
                    tenant_id="t",
                    workflow_id="w",
                    queue="workflow",
                    status=status,
                    priority=0,
                    attempts=1,
                    idempotency_key=key,
                    created_at=1,
                    updated_at=1,
                    completed_at=at(2024, 6) if status == "completed" else None,
                )
            )
            await conn.execute(
                sa.insert(node_results).values(
                    execution_id=execution_id,
                    node_id="n",
                    seq=0,
                    node_type="echo",
                    status="completed",
                    attempt=1,
                    output=execution_id,
                )
            )
    await store.close()
    store = open_store(store_url)
    try:
        await store.migrate()
        assert await partition_of(store, "wfe_executions", old_id) == ["wfe_executions_202405"]
        assert await partition_of(store, "wfe_node_results", "order-9") == [
            "wfe_node_results_untimed"
        ]
        for execution_id in (old_id, new_id_, "order-9"):
            assert await store.get(execution_id) is not None
            assert [n.output for n in await store.node_results(execution_id)] == [execution_id]
        assert await counting.check(store) == {
            ("t", "completed"): 1,
            ("t", "running"): 1,
            ("t", "pending"): 1,
        }
        held, fresh = await store.create(made_at(now_ms(), idempotency_key="k"))
        assert (held.execution_id, fresh) == (old_id, False)  # its key came along
        assert await store.finish(new_id_, S.COMPLETED)
        assert sorted(await store.cleanup(days=30)) == [old_id]
        assert not await exists(store, "wfe_executions_202405")
    finally:
        await store.close()


# -- ids at the edges, and partitions made while the tables are in use -----------------------

FAR = "exec_7ZZZZZZZZZZZZZZZZZZZZZZZZZ"  # a ULID's last millisecond: year 10889
"""A producer's job id (issue 20) may look like a ULID of any time."""


@pg
async def test_an_id_whose_time_no_date_holds_is_untimed(store: StateStore) -> None:
    """Python's dates end in year 9999 (a ULID's in 10889): such an id is written, to the
    untimed partition, instead of failing its create with a ValueError; the last month that
    still has a month after it is partitioned as any."""
    last = new_id("exec_", now=(partitions.LAST_MS - 1) / 1000)
    beyond = new_id("exec_", now=partitions.LAST_MS / 1000)
    for execution_id in (FAR, beyond, last):
        record = ExecutionRecord(execution_id, "w", "t", "workflow")
        assert (await store.create(record))[1]
        assert await store.mark_running(execution_id, 1) is Start.STARTED
        assert await store.finish(execution_id, S.COMPLETED)
        key = partitions.id_ms(execution_id)
        row = await sql(store, "SELECT wfe_id_ms(:p0), wfe_month(wfe_id_ms(:p0))", execution_id)
        assert tuple(row[0]) == (key, partitions.month_of(key))
    for execution_id in (FAR, beyond):
        assert await partition_of(store, "wfe_executions", execution_id) == [
            "wfe_executions_untimed"
        ]
    assert await partition_of(store, "wfe_executions", last) == ["wfe_executions_999910"]
    assert await counting.check(store) == {("t", "completed"): 3}


@pg
async def test_a_database_holding_such_an_id_is_converted(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(migrations, "MIGRATIONS", [m for m in migrations.MIGRATIONS if m[0] <= 6])
    store = open_store(store_url)
    await store.migrate()
    monkeypatch.undo()
    assert isinstance(store, SqlStore)
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.insert(executions).values(
                execution_id=FAR,
                tenant_id="t",
                workflow_id="w",
                queue="workflow",
                status="completed",
                priority=0,
                attempts=1,
                created_at=1,
                updated_at=1,
            )
        )
    try:
        await store.migrate()
        assert await partition_of(store, "wfe_executions", FAR) == ["wfe_executions_untimed"]
        assert await counting.check(store) == {("t", "completed"): 1}
    finally:
        await store.close()


@pg
async def test_a_month_is_made_while_a_transaction_writes_both_tables(
    store: StateStore, store_url: str
) -> None:
    """A new month's partitions are attached (SHARE UPDATE EXCLUSIVE on the tables), not
    created as partitions (ACCESS EXCLUSIVE): they do not wait for a transaction that writes
    the tables, and that transaction, a delete as ``SqlStore.delete`` makes it (node results,
    then the execution), does not deadlock with them."""
    running = made_at(now_ms())
    await finished(store, running, now_ms())
    conn = await asyncpg.connect(store_url)
    try:
        async with conn.transaction():
            await conn.execute(
                "DELETE FROM wfe_node_results WHERE execution_id = $1", running.execution_id
            )
            later = made_at(at(2031, 5))
            # without the attach, this waited for the transaction (and every write behind it)
            assert (await asyncio.wait_for(store.create(later), 10))[1]
            await conn.execute(
                "DELETE FROM wfe_executions WHERE execution_id = $1", running.execution_id
            )
    finally:
        await conn.close()
    assert await partition_of(store, "wfe_executions", later.execution_id) == [
        "wfe_executions_203105"
    ]
    for table in ("wfe_executions", "wfe_node_results"):  # made whole: keys and indexes
        indexes = await sql(
            store,
            "SELECT count(*) FROM pg_index WHERE indrelid = to_regclass(:p0)",
            table + "_203106",
        )
        assert indexes[0][0] == (5 if table == "wfe_executions" else 1)
    node = NodeResult("n", "echo", None, NodeStatus.COMPLETED, output=1, attempt=1)
    assert await store.mark_running(later.execution_id, 1) is Start.STARTED
    assert await store.save_node(later.execution_id, node)
    with pytest.raises(asyncpg.UniqueViolationError):  # the key holds in an attached month
        await store.create(later)


@pg
async def test_a_process_makes_the_month_after_the_one_it_writes_in(store: StateStore) -> None:
    """A process that first wrote in May made May and June; writing in June all month, it
    makes July before July begins (it made nothing, and July's first writes made it, under
    load)."""
    await store.create(made_at(at(2031, 5)))
    assert not await exists(store, "wfe_executions_203107")
    await store.create(made_at(at(2031, 6)))
    assert await exists(store, "wfe_executions_203107")
    assert await exists(store, "wfe_node_results_203107")
