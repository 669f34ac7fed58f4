"""What the SQL backends share: migrations, reads and the rare writes through SQLAlchemy Core
async (aiosqlite, asyncpg), and the group-commit ``Batch``. Each backend sends its hot writes
(batches, new executions) to its driver itself."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from workflow_engine.store import counts, migrations
from workflow_engine.store.base import StateStore
from workflow_engine.store.errors import StoreError, StoreUnavailable
from workflow_engine.store.records import (
    ConnectionRecord,
    ExecutionRecord,
    Page,
    WorkflowPage,
    WorkflowRecord,
)
from workflow_engine.store.schema import connections, executions, node_results, workflows
from workflow_engine.store.writes import SaveNode, SaveProgress, Transition, Write
from workflow_engine.vocabulary import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    ExecutionStatus,
    NodeResult,
    NodeStatus,
    iso_ms,
    now_ms,
)

_UNAVAILABLE = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.TimeoutError,
    OSError,
    TimeoutError,
)

CLEANUP_CHUNK = 500
SAVE_ATTEMPTS = 100
"""Saves of one workflow id that may lose the race for a version number in a row (each round
one of the racing saves wins, so this many saves at once of one id still all succeed)."""

_CONTEXT_COLUMNS = [c for c in executions.c if c.name not in {"definition", "inputs"}]
_WORKFLOW_SUMMARY = [c for c in workflows.c if c.name != "definition"]
_GONE = (
    executions.c.execution_id,
    executions.c.tenant_id,
    executions.c.status,
    executions.c.idempotency_key,
)
"""What a delete returns of each execution: enough to take it out of the counts (and, on
PostgreSQL, to free its idempotency key)."""


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _loads(value: Any) -> Any:
    # SQLite gives a JSON column numeric affinity: a bare number comes back as a number
    return value if isinstance(value, int | float) else orjson.loads(value)


@dataclass(slots=True)
class Batch:
    """A group-commit batch sorted for set-based statements: the newest progress of each
    execution, transitions in segments (one transition per execution in a segment, so that two
    of one execution keep their order), and node results (the last one per node)."""

    size: int
    progress: dict[str, dict[str, Any]]
    segments: list[list[tuple[int, Transition]]]
    nodes: list[SaveNode]
    now: int

    @classmethod
    def of(cls, writes: Sequence[Write]) -> Batch:
        nodes: dict[tuple[str, str], SaveNode] = {}
        progress: dict[str, dict[str, Any]] = {}
        segments: list[list[tuple[int, Transition]]] = [[]]
        seen: set[str] = set()
        for index, op in enumerate(writes):
            if isinstance(op, Transition):
                if op.execution_id in seen:  # a second transition of one execution: keep order
                    segments.append([])
                    seen = set()
                seen.add(op.execution_id)
                segments[-1].append((index, op))
            elif isinstance(op, SaveNode):
                nodes[(op.execution_id, op.result.node_id)] = op
            elif isinstance(op, SaveProgress):
                progress[op.execution_id] = op.progress
        return cls(len(writes), progress, segments, list(nodes.values()), now_ms())

    def groups(self) -> Iterator[tuple[Shape, list[tuple[int, Transition]]]]:
        """Transitions by shape (one statement each), segment after segment."""
        for segment in self.segments:
            groups: dict[Shape, list[tuple[int, Transition]]] = {}
            for index, op in segment:
                groups.setdefault(shape_of(op), []).append((index, op))
            yield from groups.items()


class SqlStore(StateStore):
    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(**options)
        self.url = sa.make_url(url)
        kwargs: dict[str, Any] = {"json_serializer": _dumps, "json_deserializer": _loads}
        if self.url.get_backend_name() == "sqlite":
            database = self.url.database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30}
        else:
            # reads and rare writes; the hot writes have a pool of their own (postgres.py). A
            # burst (256 resumes at once) waits its turn instead of failing (503) after 10 s
            kwargs.update(pool_size=5, max_overflow=10, pool_timeout=30)
            kwargs["connect_args"] = {"timeout": 5, "command_timeout": 30}
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.url.get_backend_name() == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_connect)
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)
        self._writer = self.engine.execution_options(wfe_write=True)

    @asynccontextmanager
    async def _connect(self, *, write: bool = False) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._writer.begin() if write else self.engine.connect() as conn:
                yield conn
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"state store unreachable: {exc}") from exc

    async def migrate(self) -> None:
        try:
            await migrations.migrate(self.engine)
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"state store unreachable: {exc}") from exc

    async def ping(self) -> None:
        async with self._connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def close(self) -> None:
        await self.flush()
        await self.engine.dispose()

    # -- writes ---------------------------------------------------------------------------

    async def _by_idempotency_key(self, record: ExecutionRecord) -> ExecutionRecord:
        """The execution that already holds ``record``'s idempotency key."""
        async with self._connect() as conn:
            existing = await conn.execute(
                sa.select(*_CONTEXT_COLUMNS).where(
                    executions.c.tenant_id == record.tenant_id,
                    executions.c.idempotency_key == record.idempotency_key,
                )
            )
            return _record(existing.one()._mapping)

    async def delete(self, execution_id: str) -> None:
        async with self._connect(write=True) as conn:
            await conn.execute(
                sa.delete(node_results).where(
                    node_results.c.execution_id == execution_id,
                    *self._pinned([execution_id]),
                )
            )
            gone = await conn.execute(
                sa.delete(executions)
                .where(executions.c.execution_id == execution_id, *self._pinned([execution_id]))
                .returning(*_GONE)
            )
            await self._forget(conn, gone.all())

    async def _delete_finished_before(self, cutoff_ms: int) -> list[str]:
        old = sa.select(executions.c.execution_id).where(
            executions.c.status.in_([str(s) for s in FINAL_STATUSES]),
            executions.c.completed_at < cutoff_ms,
        )
        removed: list[str] = []
        while True:  # in chunks: a years-old backlog is not one huge transaction
            async with self._connect(write=True) as conn:
                ids = list((await conn.execute(old.limit(CLEANUP_CHUNK))).scalars())
                if not ids:
                    return removed
                await conn.execute(
                    sa.delete(node_results).where(
                        node_results.c.execution_id.in_(ids), *self._pinned(ids)
                    )
                )
                gone = await conn.execute(
                    sa.delete(executions)
                    .where(executions.c.execution_id.in_(ids), *self._pinned(ids))
                    .returning(*_GONE)
                )
                await self._forget(conn, gone.all())
            removed += ids

    # -- the backend's hooks for the status counts and the month layout ------------------

    def _bucket(self, execution_id: str) -> int:
        """The counts' bucket of an execution (PostgreSQL: its month)."""
        return 0

    def _pinned(self, execution_ids: Sequence[str]) -> tuple[sa.ColumnElement[bool], ...]:
        """Extra conditions that find these executions' rows faster (PostgreSQL: their
        partitions); none by default."""
        return ()

    async def _forget(self, conn: AsyncConnection, gone: Sequence[Any]) -> None:
        """Executions were deleted (``_GONE`` of each): their counts go, in the same
        transaction."""
        deltas = counts.Deltas()
        for execution_id, tenant_id, status, _key in gone:
            deltas[(tenant_id, status, self._bucket(execution_id))] -= 1
        rows = deltas.rows()
        if rows:
            await conn.execute(counts.upsert(self.engine.dialect.name, rows))

    async def answer(self, execution_id: str, node_id: str, answer: Any) -> bool:
        async with self._connect(write=True) as conn:
            # touching the execution's row first locks it: a worker resuming the execution
            # either commits before (and this finds it running) or reads the answer after
            touched = await conn.execute(
                sa.update(executions)
                .where(
                    executions.c.execution_id == execution_id,
                    executions.c.status == str(ExecutionStatus.WAITING),
                    *self._pinned([execution_id]),
                )
                .values(updated_at=now_ms())
            )
            if touched.rowcount != 1:
                return False
            where = (
                node_results.c.execution_id == execution_id,
                node_results.c.node_id == node_id,
                node_results.c.status == str(NodeStatus.WAITING),
                *self._pinned([execution_id]),
            )
            row = (await conn.execute(sa.select(node_results.c.output).where(*where))).first()
            ticket = row[0] if row is not None else None
            if not isinstance(ticket, dict) or "answer" in ticket:
                return False
            ticket = {**ticket, "answer": answer, "answeredAt": iso_ms(now_ms())}
            await conn.execute(sa.update(node_results).where(*where).values(output=ticket))
        return True

    # -- reads --------------------------------------------------------------------------

    async def get(
        self, execution_id: str, tenant_id: str | None = None, *, with_definition: bool = False
    ) -> ExecutionRecord | None:
        columns = list(executions.c) if with_definition else _CONTEXT_COLUMNS
        query = sa.select(*columns).where(
            executions.c.execution_id == execution_id, *self._pinned([execution_id])
        )
        if tenant_id is not None:
            query = query.where(executions.c.tenant_id == tenant_id)
        async with self._connect() as conn:
            row = (await conn.execute(query)).one_or_none()
        return None if row is None else _record(row._mapping)

    async def node_results(self, execution_id: str) -> list[NodeResult]:
        query = (
            sa.select(node_results)
            .where(node_results.c.execution_id == execution_id, *self._pinned([execution_id]))
            .order_by(node_results.c.seq, node_results.c.node_id)
        )
        async with self._connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_node_result(row._mapping) for row in rows]

    async def list_executions(
        self,
        tenant_id: str | None,
        *,
        status: ExecutionStatus | None = None,
        workflow_id: str | None = None,
        client_id: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> Page:
        query = sa.select(*_CONTEXT_COLUMNS)
        if tenant_id is not None:
            query = query.where(executions.c.tenant_id == tenant_id)
        if status is not None:
            query = query.where(executions.c.status == str(status))
        if workflow_id is not None:
            query = query.where(executions.c.workflow_id == workflow_id)
        if client_id is not None:
            query = query.where(executions.c.client_id == client_id)
        if cursor is not None:  # ids sort by creation time: keyset pagination on the id
            query = query.where(executions.c.execution_id < cursor)
        query = query.order_by(executions.c.execution_id.desc()).limit(limit + 1)
        async with self._connect() as conn:
            rows = (await conn.execute(query)).all()
        items = [_record(row._mapping) for row in rows[:limit]]
        next_cursor = items[-1].execution_id if len(rows) > limit else None
        return Page(items, next_cursor)

    async def active_for_client(
        self, tenant_id: str | None, client_id: str
    ) -> list[ExecutionRecord]:
        query = sa.select(*_CONTEXT_COLUMNS).where(
            executions.c.client_id == client_id,
            executions.c.status.in_([str(s) for s in ACTIVE_STATUSES]),
        )
        if tenant_id is not None:
            query = query.where(executions.c.tenant_id == tenant_id)
        async with self._connect() as conn:
            rows = (await conn.execute(query.order_by(executions.c.execution_id))).all()
        return [_record(row._mapping) for row in rows]

    async def stale_active(self, updated_before_ms: int, limit: int = 500) -> list[ExecutionRecord]:
        query = (
            sa.select(*_CONTEXT_COLUMNS)
            .where(
                executions.c.status.in_([str(s) for s in ACTIVE_STATUSES]),
                executions.c.updated_at < updated_before_ms,
            )
            .order_by(executions.c.updated_at)
            .limit(limit)
        )
        async with self._connect() as conn:
            return [_record(row._mapping) for row in (await conn.execute(query)).all()]

    async def final_among(self, execution_ids: Sequence[str]) -> set[str]:
        if not execution_ids:
            return set()
        query = sa.select(executions.c.execution_id).where(
            executions.c.execution_id.in_(list(execution_ids)),
            executions.c.status.in_([str(s) for s in FINAL_STATUSES]),
            *self._pinned(execution_ids),
        )
        async with self._connect() as conn:
            return set((await conn.execute(query)).scalars())

    # -- connections ----------------------------------------------------------------------

    async def put_connection(self, record: ConnectionRecord) -> None:
        dialect = postgresql if self.url.get_backend_name() == "postgresql" else sqlite
        values = {
            "tenant_id": record.tenant_id,
            "name": record.name,
            "kind": record.kind,
            "base_url": record.base_url,
            "secret": record.secret,
            "created_at": record.created_at,
            "updated_at": record.updated_at,
        }
        insert = dialect.insert(connections).values(**values)
        changed = {k: v for k, v in values.items() if k not in {"tenant_id", "name", "created_at"}}
        statement = insert.on_conflict_do_update(index_elements=["tenant_id", "name"], set_=changed)
        async with self._connect(write=True) as conn:
            await conn.execute(statement)

    async def get_connection(self, tenant_id: str, name: str) -> ConnectionRecord | None:
        query = sa.select(connections).where(
            connections.c.tenant_id == tenant_id, connections.c.name == name
        )
        async with self._connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else ConnectionRecord(**row._mapping)

    async def list_connections(self, tenant_id: str) -> list[ConnectionRecord]:
        query = (
            sa.select(connections)
            .where(connections.c.tenant_id == tenant_id)
            .order_by(connections.c.name)
        )
        async with self._connect() as conn:
            return [ConnectionRecord(**row._mapping) for row in await conn.execute(query)]

    async def delete_connection(self, tenant_id: str, name: str) -> bool:
        statement = sa.delete(connections).where(
            connections.c.tenant_id == tenant_id, connections.c.name == name
        )
        async with self._connect(write=True) as conn:
            return bool((await conn.execute(statement)).rowcount)

    async def has_connections(self) -> bool:
        async with self._connect() as conn:
            found = await conn.execute(sa.select(connections.c.name).limit(1))
            return found.first() is not None

    # -- stored workflows ----------------------------------------------------------------

    async def save_workflow(
        self, tenant_id: str, workflow_id: str, name: str | None, definition: dict[str, Any]
    ) -> WorkflowRecord:
        where = (workflows.c.tenant_id == tenant_id, workflows.c.workflow_id == workflow_id)
        latest = sa.select(sa.func.max(workflows.c.version)).where(*where)
        for _ in range(SAVE_ATTEMPTS):
            try:
                async with self._connect(write=True) as conn:
                    version = int((await conn.execute(latest)).scalar() or 0) + 1
                    record = WorkflowRecord(
                        tenant_id, workflow_id, version, name, definition, now_ms()
                    )
                    await conn.execute(sa.insert(workflows).values(**_workflow_row(record)))
                return record
            except sa.exc.IntegrityError:
                # PostgreSQL: a concurrent save inserted that number first (the primary key
                # refused ours); SQLite's writes take turns and never get here
                continue
        raise StoreError(f"could not number a new version of workflow {workflow_id!r}")

    async def get_workflow(
        self, tenant_id: str, workflow_id: str, version: int | None = None
    ) -> WorkflowRecord | None:
        query = sa.select(workflows).where(*_live(tenant_id, workflow_id))
        if version is not None:
            query = query.where(workflows.c.version == version)
        query = query.order_by(workflows.c.version.desc()).limit(1)
        async with self._connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _workflow(row._mapping)

    async def list_workflows(
        self, tenant_id: str, *, limit: int = 20, cursor: str | None = None
    ) -> WorkflowPage:
        latest = (
            sa.select(workflows.c.workflow_id, sa.func.max(workflows.c.version).label("version"))
            .where(workflows.c.tenant_id == tenant_id, workflows.c.deleted_at.is_(None))
            .group_by(workflows.c.workflow_id)
        )
        if cursor is not None:  # keyset pagination on the id
            latest = latest.where(workflows.c.workflow_id > cursor)
        page = latest.order_by(workflows.c.workflow_id).limit(limit + 1).subquery()
        query = (
            sa.select(*_WORKFLOW_SUMMARY)
            .join(
                page,
                sa.and_(
                    workflows.c.workflow_id == page.c.workflow_id,
                    workflows.c.version == page.c.version,
                ),
            )
            .where(workflows.c.tenant_id == tenant_id)
            .order_by(workflows.c.workflow_id)
        )
        async with self._connect() as conn:
            rows = (await conn.execute(query)).all()
        items = [_workflow(row._mapping) for row in rows[:limit]]
        return WorkflowPage(items, items[-1].workflow_id if len(rows) > limit else None)

    async def workflow_versions(self, tenant_id: str, workflow_id: str) -> list[WorkflowRecord]:
        query = (
            sa.select(*_WORKFLOW_SUMMARY)
            .where(*_live(tenant_id, workflow_id))
            .order_by(workflows.c.version)
        )
        async with self._connect() as conn:
            return [_workflow(row._mapping) for row in await conn.execute(query)]

    async def delete_workflow(self, tenant_id: str, workflow_id: str) -> bool:
        statement = (
            sa.update(workflows).where(*_live(tenant_id, workflow_id)).values(deleted_at=now_ms())
        )
        async with self._connect(write=True) as conn:
            return bool((await conn.execute(statement)).rowcount)

    async def count_by_status(self, tenant_id: str | None = None) -> dict[str, int]:
        """From the counts the writes keep (``store/counts.py``): as fast with a year of
        history as with none."""
        async with self._connect() as conn:
            rows = (await conn.execute(counts.read_query(tenant_id))).all()
        return counts.as_counts(rows)


def _live(tenant_id: str, workflow_id: str) -> tuple[sa.ColumnElement[bool], ...]:
    """A workflow's versions that are not deleted."""
    return (
        workflows.c.tenant_id == tenant_id,
        workflows.c.workflow_id == workflow_id,
        workflows.c.deleted_at.is_(None),
    )


def _workflow_row(record: WorkflowRecord) -> dict[str, Any]:
    return asdict(record)  # (its fields are the table's columns)


def _workflow(row: Any) -> WorkflowRecord:
    return WorkflowRecord(**{f.name: row.get(f.name) for f in fields(WorkflowRecord)})


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (below)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(conn: sa.Connection) -> None:
    """Writes take the database's write lock at BEGIN: a batch that reads statuses and then
    updates them sees no other process's write in between (and waits its turn, up to the
    busy timeout, instead of failing on a lock upgrade)."""
    write = conn.get_execution_options().get("wfe_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def record_row(record: ExecutionRecord) -> dict[str, Any]:
    return {
        "execution_id": record.execution_id,
        "tenant_id": record.tenant_id,
        "workflow_id": record.workflow_id,
        "client_id": record.client_id,
        "queue": record.queue,
        "status": str(record.status),
        "priority": record.priority,
        "metadata": record.metadata,
        "definition": record.definition,
        "inputs": record.inputs,
        "result": record.result,
        "error": record.error,
        "progress": record.progress,
        "attempts": record.attempts,
        "idempotency_key": record.idempotency_key,
        "created_at": record.created_at,
        "started_at": record.started_at,
        "updated_at": record.updated_at,
        "completed_at": record.completed_at,
        "token_usage": record.token_usage,
        "workflow_version": record.workflow_version,
        "variables": record.variables,
    }


def _record(row: Any) -> ExecutionRecord:
    return ExecutionRecord(
        execution_id=row["execution_id"],
        workflow_id=row["workflow_id"],
        tenant_id=row["tenant_id"],
        queue=row["queue"],
        status=ExecutionStatus(row["status"]),
        client_id=row["client_id"],
        priority=row["priority"],
        metadata=row["metadata"] or {},
        definition=row.get("definition"),
        inputs=row.get("inputs"),
        result=row["result"],
        error=row["error"],
        progress=row["progress"],
        attempts=row["attempts"],
        idempotency_key=row["idempotency_key"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        updated_at=row["updated_at"],
        completed_at=row["completed_at"],
        token_usage=row.get("token_usage"),
        workflow_version=row.get("workflow_version"),
        variables=row.get("variables"),
    )


Shape = tuple[str, frozenset[str], frozenset[str], tuple[str, ...]]
"""(target status, allowed current statuses, stamped columns, columns set)."""

JSON_COLUMNS = frozenset({"result", "error", "progress", "metadata", "token_usage", "variables"})
"""JSON columns a transition may set."""
RECORD_JSON_COLUMNS = JSON_COLUMNS | {"definition", "inputs"}
"""Every JSON column of an execution's row."""


def shape_of(op: Transition) -> Shape:
    allowed = frozenset(str(status) for status in op.allowed_from)
    return (str(op.to), allowed, op.stamp, tuple(sorted(op.values)))


def same_types(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return all(type(x) is type(y) for x, y in zip(a, b, strict=True))


def json_text(value: Any) -> str | None:
    """A JSON column's value as the drivers take it (SQL NULL for None)."""
    return None if value is None else orjson.dumps(value).decode()


def ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


def _node_result(row: Any) -> NodeResult:
    return NodeResult(
        node_id=row["node_id"],
        node_type=row["node_type"],
        name=row["name"],
        status=NodeStatus(row["status"]),
        input=row["input"],
        output=row["output"],
        error=row["error"],
        attempt=row["attempt"],
        started_at=None if row["started_at"] is None else row["started_at"] / 1000,
        completed_at=None if row["completed_at"] is None else row["completed_at"] / 1000,
    )
