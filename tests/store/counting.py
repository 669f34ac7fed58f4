"""What the status counts should be, asked of each backend directly: a fresh GROUP BY over
the executions, and (SQL stores) the rows of the counts table the writes keep."""

from __future__ import annotations

import sqlalchemy as sa

from workflow_engine.store import StateStore
from workflow_engine.store.mongo import MongoStore
from workflow_engine.store.sql import SqlStore
from workflow_engine.vocabulary import ExecutionStatus

Counts = dict[tuple[str, str], int]


async def grouped(store: StateStore) -> Counts:
    """(tenant, status) -> executions, counted now from the executions themselves."""
    if isinstance(store, MongoStore):  # counted here: nx-27017 groups by one field only
        found: Counts = {}
        async for doc in store.executions.find({}, {"_id": 0, "userId": 1, "status": 1}):
            key = (doc["userId"], doc["status"])
            found[key] = found.get(key, 0) + 1
        return found
    assert isinstance(store, SqlStore)
    async with store.engine.connect() as conn:
        rows = await conn.execute(
            sa.text("SELECT tenant_id, status, count(*) FROM wfe_executions GROUP BY 1, 2")
        )
        return {(t, s): int(n) for t, s, n in rows}


async def kept(store: StateStore) -> Counts:
    """(tenant, status) -> executions, as the store keeps them: the counts table of a SQL
    store (summed over its buckets and slots; zeros left out), ``count_by_status`` of each
    tenant on MongoDB (which groups at each read)."""
    if isinstance(store, SqlStore):
        async with store.engine.connect() as conn:
            rows = await conn.execute(
                sa.text(
                    "SELECT tenant_id, status, sum(n) FROM wfe_execution_counts "
                    "GROUP BY 1, 2 HAVING sum(n) <> 0"
                )
            )
            return {(t, s): int(n) for t, s, n in rows}
    tenants = {tenant for tenant, _ in await grouped(store)}
    found: Counts = {}
    for tenant in tenants:
        for status, n in (await store.count_by_status(tenant)).items():
            if n:
                found[(tenant, status)] = n
    return found


async def check(store: StateStore) -> Counts:
    """The kept counts equal a fresh GROUP BY, and ``count_by_status`` (per tenant and in
    all) says the same; the counts."""
    truth = await grouped(store)
    assert await kept(store) == truth
    for tenant in {t for t, _ in truth} | {"nobody"}:
        expected = {str(s): truth.get((tenant, str(s)), 0) for s in ExecutionStatus}
        assert await store.count_by_status(tenant) == expected
    overall = {str(s): sum(n for (_, st), n in truth.items() if st == s) for s in ExecutionStatus}
    assert await store.count_by_status() == overall
    return truth
