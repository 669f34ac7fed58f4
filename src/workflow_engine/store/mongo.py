"""MongoDB through the official async driver (``pymongo.AsyncMongoClient``). Two collections,
``wfe_executions`` and ``wfe_node_results``, with the fields of SPEC section 4 in camelCase (the
seed's ExecutionContext/NodeResult model); times are epoch milliseconds, as in the SQL store.

There is no transaction around a batch (a standalone MongoDB has none): each write is atomic
on its document, and a batch is written in an order that keeps a crash harmless — progress,
then node results, then the transitions (an outcome is never stored before the node results
submitted with it). A transition is one conditional update (its filter holds the statuses it
may follow), so two workers racing on one execution cannot both take it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pymongo import (
    ASCENDING,
    DESCENDING,
    AsyncMongoClient,
    IndexModel,
    ReadPreference,
    ReplaceOne,
    UpdateOne,
)
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import (
    BulkWriteError,
    ConfigurationError,
    ConnectionFailure,
    DocumentTooLarge,
    DuplicateKeyError,
    PyMongoError,
)

from workflow_engine.store.base import StateStore
from workflow_engine.store.errors import StoreError, StoreUnavailable
from workflow_engine.store.records import (
    ConnectionRecord,
    ExecutionRecord,
    Page,
    WorkflowPage,
    WorkflowRecord,
)
from workflow_engine.store.sql import Batch, ms
from workflow_engine.store.writes import SaveNode, Transition, Write
from workflow_engine.vocabulary import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    ExecutionStatus,
    NodeResult,
    NodeStatus,
    iso_ms,
    now_ms,
)

Document = dict[str, Any]

EXECUTIONS = "wfe_executions"
NODE_RESULTS = "wfe_node_results"
CONNECTIONS = "wfe_connections"
WORKFLOWS = "wfe_workflows"
DEFAULT_DATABASE = "wfe"
SERVER_SELECTION_TIMEOUT_MS = 3000
"""A down MongoDB is reported (503) after this long; the URL's ``serverSelectionTimeoutMS``
overrides it."""
SOCKET_TIMEOUT_MS = 30_000
"""A read from the server that has no answer after this long fails (as the SQL stores' command
timeout), so a half-open socket cannot hang a batch; the URL's ``socketTimeoutMS`` or
``timeoutMS`` overrides it. Not ``timeoutMS``: that one also stretches server selection, and a
down MongoDB must still answer 503 within the selection timeout."""
CLEANUP_CHUNK = 500
WRITE_TOKENS_KEPT = 8
SAVE_ATTEMPTS = 100
"""Saves of one workflow id that may lose the race for a version number in a row."""

FIELDS = {
    "execution_id": "executionId",
    "tenant_id": "userId",
    "workflow_id": "workflowId",
    "client_id": "clientId",
    "queue": "type",
    "status": "status",
    "priority": "priority",
    "metadata": "metadata",
    "definition": "definition",
    "inputs": "inputs",
    "result": "result",
    "error": "error",
    "progress": "progress",
    "attempts": "attempts",
    "idempotency_key": "idempotencyKey",
    "created_at": "createdAt",
    "started_at": "startedAt",
    "updated_at": "updatedAt",
    "completed_at": "completedAt",
    "token_usage": "usage",
    "workflow_version": "workflowVersion",
    "variables": "variables",
}
"""Record attribute -> document field."""

_CONTEXT = {"_id": 0, "definition": 0, "inputs": 0, "writes": 0}
_FULL = {"_id": 0, "writes": 0}
_ACTIVE = [str(s) for s in ACTIVE_STATUSES]
_FINAL = [str(s) for s in FINAL_STATUSES]

EXECUTION_INDEXES = [
    IndexModel([("executionId", ASCENDING)], name="ux_execution", unique=True),
    IndexModel(
        [("userId", ASCENDING), ("idempotencyKey", ASCENDING)],
        name="ux_idempotency",
        unique=True,
        partialFilterExpression={"idempotencyKey": {"$type": "string"}},
    ),
    IndexModel(
        [("userId", ASCENDING), ("status", ASCENDING), ("createdAt", DESCENDING)],
        name="ix_user_status_created",
    ),
    IndexModel([("userId", ASCENDING), ("executionId", DESCENDING)], name="ix_user_execution"),
    IndexModel([("clientId", ASCENDING), ("status", ASCENDING)], name="ix_client_status"),
    IndexModel(
        [("workflowId", ASCENDING), ("executionId", DESCENDING)], name="ix_workflow_execution"
    ),
    IndexModel([("completedAt", ASCENDING)], name="ix_completed"),
]
NODE_INDEXES = [
    IndexModel([("executionId", ASCENDING), ("nodeId", ASCENDING)], name="ux_node", unique=True),
]
CONNECTION_INDEXES = [
    IndexModel([("userId", ASCENDING), ("name", ASCENDING)], name="ux_connection", unique=True),
]
WORKFLOW_INDEXES = [
    # the guard of a save: two saves that picked the same next version cannot both insert it
    IndexModel(
        [("userId", ASCENDING), ("workflowId", ASCENDING), ("version", ASCENDING)],
        name="ux_workflow_version",
        unique=True,
    ),
]
_WORKFLOW_FIELDS = {
    "tenant_id": "userId",
    "workflow_id": "workflowId",
    "version": "version",
    "name": "name",
    "definition": "definition",
    "created_at": "createdAt",
    "deleted_at": "deletedAt",
}
_WORKFLOW_SUMMARY = {"_id": 0, "definition": 0}
_CONNECTION_FIELDS = {
    "tenant_id": "userId",
    "name": "name",
    "kind": "kind",
    "base_url": "baseUrl",
    "secret": "secret",
    "created_at": "createdAt",
    "updated_at": "updatedAt",
}


@contextmanager
def _reachable() -> Iterator[None]:
    """The driver's connection failures (no server selected, a dropped socket, a primary
    stepping down), timeouts and a ``mongodb+srv`` name that does not resolve (looked up at
    the first operation) are the store being unavailable: the API answers 503. A write the
    server refuses (a document over 16 MB) is a store error naming the reason."""
    try:
        yield
    except (ConnectionFailure, ConfigurationError) as exc:
        raise StoreUnavailable(f"state store unreachable: {exc}") from exc
    except BulkWriteError as exc:  # the server refused a document (BSONObjectTooLarge)
        errors = exc.details.get("writeErrors") or [{}]
        raise StoreError(f"MongoDB refused a write: {errors[0].get('errmsg', exc)}") from exc
    except DocumentTooLarge as exc:  # the driver refused it before sending (over 48 MB)
        raise StoreError(f"MongoDB refused a write: {exc} (a document is at most 16 MB)") from exc
    except PyMongoError as exc:
        if exc.timeout:
            raise StoreUnavailable(f"state store timed out: {exc}") from exc
        raise


def client_options(url: str) -> dict[str, Any]:
    """Our defaults for the client; an option the URL sets wins."""
    given = {key.lower() for key, _ in parse_qsl(urlsplit(url).query)}
    options: dict[str, Any] = {"appname": "workflow-engine"}
    if "serverselectiontimeoutms" not in given:
        options["serverSelectionTimeoutMS"] = SERVER_SELECTION_TIMEOUT_MS
    if not given & {"timeoutms", "sockettimeoutms"}:
        options["socketTimeoutMS"] = SOCKET_TIMEOUT_MS
    return options


class MongoStore(StateStore):
    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(**options)
        self.url = url
        self.client: AsyncMongoClient[Document] = AsyncMongoClient(url, **client_options(url))
        # reads decide what a write did (which transitions took, whose idempotency key):
        # from the primary, whatever read preference the URL gives
        database = self.client.get_default_database(
            default=DEFAULT_DATABASE, read_preference=ReadPreference.PRIMARY
        )
        self.executions: AsyncCollection[Document] = database[EXECUTIONS]
        self.nodes: AsyncCollection[Document] = database[NODE_RESULTS]
        self.connections: AsyncCollection[Document] = database[CONNECTIONS]
        self.workflows: AsyncCollection[Document] = database[WORKFLOWS]

    async def migrate(self) -> None:
        """Create the indexes; creating an existing index with the same options is a no-op,
        so any number of processes may do it at once."""
        with _reachable():
            await self.executions.create_indexes(EXECUTION_INDEXES)
            await self.nodes.create_indexes(NODE_INDEXES)
            await self.connections.create_indexes(CONNECTION_INDEXES)
            await self.workflows.create_indexes(WORKFLOW_INDEXES)

    async def ping(self) -> None:
        with _reachable():
            await self.executions.database.command("ping")

    async def close(self) -> None:
        await self.flush()
        await self.client.close()

    # -- writes -------------------------------------------------------------------------

    async def _insert(self, record: ExecutionRecord) -> ExecutionRecord | None:
        with _reachable():
            try:
                await self.executions.insert_one(execution_document(record))
                return None
            except DuplicateKeyError:
                if record.idempotency_key is None:
                    raise
                existing = await self.executions.find_one(
                    {"userId": record.tenant_id, "idempotencyKey": record.idempotency_key},
                    _CONTEXT,
                )
                if existing is None:  # the duplicate was the execution id itself
                    raise
                return execution_record(existing)

    async def _apply(self, writes: Sequence[Write]) -> list[bool]:
        """Progress and node results first (two unordered bulk writes, one per collection),
        then the transitions, one unordered bulk write per segment (a segment holds at most
        one transition per execution; a second one of the same execution waits for the next
        segment, so the two keep their order)."""
        batch = Batch.of(writes)
        results: list[bool] = [True] * len(writes)
        with _reachable():
            await asyncio.gather(
                self._write_progress(batch.progress, batch.now), self._write_nodes(batch.nodes)
            )
            for segment in batch.segments:
                if not segment:
                    continue
                taken = await self._write_transitions([op for _, op in segment], batch.now)
                for index, op in segment:
                    results[index] = op.execution_id in taken
        return results

    async def _write_progress(self, progress: dict[str, dict[str, Any]], now: int) -> None:
        if not progress:
            return
        await self.executions.bulk_write(
            [
                UpdateOne(
                    {"executionId": execution_id, "status": {"$in": ["running", "waiting"]}},
                    {"$set": {"progress": value, "updatedAt": now}},
                )
                for execution_id, value in progress.items()
            ],
            ordered=False,
        )

    async def _write_nodes(self, ops: list[SaveNode]) -> None:
        if not ops:
            return
        await self.nodes.bulk_write(
            [
                ReplaceOne(
                    {"executionId": op.execution_id, "nodeId": op.result.node_id},
                    node_document(op),
                    upsert=True,
                )
                for op in ops
            ],
            ordered=False,
        )

    async def _write_transitions(self, ops: list[Transition], now: int) -> set[str]:
        """One conditional update per transition (at most one per execution), all in one
        bulk write; the ids of those that took. Each update also pushes the segment's token
        onto the document: when only some took, the token says which."""
        token = uuid.uuid4().hex
        requests: list[UpdateOne] = []
        for op in ops:
            requests += transition_updates(op, now, token)
        done = await self.executions.bulk_write(requests, ordered=False)
        ids = [op.execution_id for op in ops]
        if done.matched_count == len(ops):
            return set(ids)
        if done.matched_count == 0:
            return set()
        cursor = self.executions.find(
            {"executionId": {"$in": ids}, "writes": token}, {"_id": 0, "executionId": 1}
        )
        return {doc["executionId"] async for doc in cursor}

    async def delete(self, execution_id: str) -> None:
        with _reachable():
            await self.nodes.delete_many({"executionId": execution_id})
            await self.executions.delete_one({"executionId": execution_id})

    async def _delete_finished_before(self, cutoff_ms: int) -> list[str]:
        old = {"status": {"$in": _FINAL}, "completedAt": {"$lt": cutoff_ms}}
        removed: list[str] = []
        with _reachable():
            while True:  # in chunks: a years-old backlog is not one huge request
                cursor = self.executions.find(old, {"_id": 0, "executionId": 1})
                ids = [doc["executionId"] async for doc in cursor.limit(CLEANUP_CHUNK)]
                if not ids:
                    return removed
                # node results first: a crash in between leaves an execution to remove again,
                # never node results without their execution
                await self.nodes.delete_many({"executionId": {"$in": ids}})
                await self.executions.delete_many({"executionId": {"$in": ids}, **old})
                removed += ids

    async def answer(self, execution_id: str, node_id: str, answer: Any) -> bool:
        """Touch the execution if it is still waiting, then add the answer to the node's
        ticket with one conditional update (the node waits and has no answer yet). Without a
        transaction the two are not one step: an execution taken over between them (its
        input timed out at that very moment) ignores the answer, as it would a late one."""
        with _reachable():
            touched = await self.executions.update_one(
                {"executionId": execution_id, "status": str(ExecutionStatus.WAITING)},
                {"$set": {"updatedAt": now_ms()}},
            )
            if touched.matched_count != 1:
                return False
            answered = await self.nodes.update_one(
                {
                    "executionId": execution_id,
                    "nodeId": node_id,
                    "status": str(NodeStatus.WAITING),
                    "output": {"$type": "object"},
                    "output.answer": {"$exists": False},
                },
                {"$set": {"output.answer": answer, "output.answeredAt": iso_ms(now_ms())}},
            )
        return answered.matched_count == 1

    # -- reads --------------------------------------------------------------------------

    async def get(
        self, execution_id: str, tenant_id: str | None = None, *, with_definition: bool = False
    ) -> ExecutionRecord | None:
        query: Document = {"executionId": execution_id}
        if tenant_id is not None:
            query["userId"] = tenant_id
        with _reachable():
            doc = await self.executions.find_one(query, _FULL if with_definition else _CONTEXT)
        return None if doc is None else execution_record(doc)

    async def node_results(self, execution_id: str) -> list[NodeResult]:
        cursor = self.nodes.find({"executionId": execution_id}, {"_id": 0})
        with _reachable():
            docs = await cursor.sort([("seq", ASCENDING), ("nodeId", ASCENDING)]).to_list()
        return [node_result(doc) for doc in docs]

    async def _records(
        self, query: Document, order: list[tuple[str, int]], limit: int = 0
    ) -> list[ExecutionRecord]:
        cursor = self.executions.find(query, _CONTEXT).sort(order).limit(limit)
        with _reachable():
            return [execution_record(doc) async for doc in cursor]

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
        query = _scoped(tenant_id)
        if status is not None:
            query["status"] = str(status)
        if workflow_id is not None:
            query["workflowId"] = workflow_id
        if client_id is not None:
            query["clientId"] = client_id
        if cursor is not None:  # ids sort by creation time: keyset pagination on the id
            query["executionId"] = {"$lt": cursor}
        records = await self._records(query, [("executionId", DESCENDING)], limit + 1)
        items = records[:limit]
        next_cursor = items[-1].execution_id if len(records) > limit else None
        return Page(items, next_cursor)

    async def active_for_client(
        self, tenant_id: str | None, client_id: str
    ) -> list[ExecutionRecord]:
        query = {**_scoped(tenant_id), "clientId": client_id, "status": {"$in": _ACTIVE}}
        return await self._records(query, [("executionId", ASCENDING)])

    async def stale_active(self, updated_before_ms: int, limit: int = 500) -> list[ExecutionRecord]:
        query = {"status": {"$in": _ACTIVE}, "updatedAt": {"$lt": updated_before_ms}}
        return await self._records(query, [("updatedAt", ASCENDING)], limit)

    async def final_among(self, execution_ids: Sequence[str]) -> set[str]:
        if not execution_ids:
            return set()
        query = {"executionId": {"$in": list(execution_ids)}, "status": {"$in": _FINAL}}
        cursor = self.executions.find(query, {"_id": 0, "executionId": 1})
        with _reachable():
            return {doc["executionId"] async for doc in cursor}

    # -- connections ----------------------------------------------------------------------

    async def put_connection(self, record: ConnectionRecord) -> None:
        document = {
            field: getattr(record, attribute) for attribute, field in _CONNECTION_FIELDS.items()
        }
        created = document.pop("createdAt")
        with _reachable():
            await self.connections.update_one(
                {"userId": record.tenant_id, "name": record.name},
                {"$set": document, "$setOnInsert": {"createdAt": created}},
                upsert=True,
            )

    async def get_connection(self, tenant_id: str, name: str) -> ConnectionRecord | None:
        with _reachable():
            found = await self.connections.find_one({"userId": tenant_id, "name": name})
        return None if found is None else _connection(found)

    async def list_connections(self, tenant_id: str) -> list[ConnectionRecord]:
        cursor = self.connections.find({"userId": tenant_id}).sort("name", ASCENDING)
        with _reachable():
            return [_connection(doc) async for doc in cursor]

    async def delete_connection(self, tenant_id: str, name: str) -> bool:
        with _reachable():
            deleted = await self.connections.delete_one({"userId": tenant_id, "name": name})
        return deleted.deleted_count > 0

    async def has_connections(self) -> bool:
        with _reachable():
            return await self.connections.find_one({}, {"_id": 1}) is not None

    # -- stored workflows ----------------------------------------------------------------

    async def save_workflow(
        self, tenant_id: str, workflow_id: str, name: str | None, definition: dict[str, Any]
    ) -> WorkflowRecord:
        """The next number after the latest, inserted; the unique index refuses a number
        another save took first, and this one tries the next (no transaction needed)."""
        with _reachable():
            for _ in range(SAVE_ATTEMPTS):
                latest = await self.workflows.find_one(
                    {"userId": tenant_id, "workflowId": workflow_id},
                    {"_id": 0, "version": 1},
                    sort=[("version", DESCENDING)],
                )
                version = (latest["version"] if latest else 0) + 1
                record = WorkflowRecord(tenant_id, workflow_id, version, name, definition, now_ms())
                try:
                    await self.workflows.insert_one(_workflow_document(record))
                except DuplicateKeyError:
                    continue
                return record
        raise StoreError(f"could not number a new version of workflow {workflow_id!r}")

    async def get_workflow(
        self, tenant_id: str, workflow_id: str, version: int | None = None
    ) -> WorkflowRecord | None:
        query = _live(tenant_id, workflow_id)
        if version is not None:
            query["version"] = version
        with _reachable():
            found = await self.workflows.find_one(query, {"_id": 0}, sort=[("version", DESCENDING)])
        return None if found is None else _workflow(found)

    async def list_workflows(
        self, tenant_id: str, *, limit: int = 20, cursor: str | None = None
    ) -> WorkflowPage:
        """Two steps: the page's ids with their latest version (a ``$group`` on the index),
        then those versions. Not one ``$sort`` + ``$group`` with ``$first``: nx-27017 (the
        tests' stand-in) answers that with nothing."""
        match: Document = {"userId": tenant_id, "deletedAt": None}
        if cursor is not None:  # keyset pagination on the id
            match["workflowId"] = {"$gt": cursor}
        pipeline: list[Document] = [
            {"$match": match},
            {"$group": {"_id": "$workflowId", "version": {"$max": "$version"}}},
            {"$sort": {"_id": ASCENDING}},
            {"$limit": limit + 1},
        ]
        with _reachable():
            latest = [row async for row in await self.workflows.aggregate(pipeline)]
            wanted = [{"workflowId": row["_id"], "version": row["version"]} for row in latest]
            found = self.workflows.find({"userId": tenant_id, "$or": wanted}, _WORKFLOW_SUMMARY)
            docs = [doc async for doc in found] if wanted else []
        rows = sorted((_workflow(doc) for doc in docs), key=lambda w: w.workflow_id)
        items = rows[:limit]
        return WorkflowPage(items, items[-1].workflow_id if len(rows) > limit else None)

    async def workflow_versions(self, tenant_id: str, workflow_id: str) -> list[WorkflowRecord]:
        cursor = self.workflows.find(_live(tenant_id, workflow_id), _WORKFLOW_SUMMARY)
        with _reachable():
            return [_workflow(doc) async for doc in cursor.sort("version", ASCENDING)]

    async def delete_workflow(self, tenant_id: str, workflow_id: str) -> bool:
        with _reachable():
            deleted = await self.workflows.update_many(
                _live(tenant_id, workflow_id), {"$set": {"deletedAt": now_ms()}}
            )
        return deleted.matched_count > 0

    async def count_by_status(self, tenant_id: str | None = None) -> dict[str, int]:
        pipeline: list[Document] = [
            {"$match": _scoped(tenant_id)},
            {"$group": {"_id": "$status", "count": {"$sum": 1}}},
        ]
        counts = {str(s): 0 for s in ExecutionStatus}
        with _reachable():
            async for row in await self.executions.aggregate(pipeline):
                counts[row["_id"]] = int(row["count"])
        return counts


def _connection(document: Document) -> ConnectionRecord:
    return ConnectionRecord(
        **{attribute: document[field] for attribute, field in _CONNECTION_FIELDS.items()}
    )


def _live(tenant_id: str, workflow_id: str) -> Document:
    """A workflow's versions that are not deleted (``None`` matches a missing field too)."""
    return {"userId": tenant_id, "workflowId": workflow_id, "deletedAt": None}


def _workflow_document(record: WorkflowRecord) -> Document:
    return {field: getattr(record, attribute) for attribute, field in _WORKFLOW_FIELDS.items()}


def _workflow(document: Mapping[str, Any]) -> WorkflowRecord:
    values: dict[str, Any] = {attr: document.get(field) for attr, field in _WORKFLOW_FIELDS.items()}
    return WorkflowRecord(**values)


def _scoped(tenant_id: str | None) -> Document:
    return {} if tenant_id is None else {"userId": tenant_id}


def transition_updates(op: Transition, now: int, token: str) -> list[UpdateOne]:
    """The conditional update(s) of one transition. ``started_at`` is stamped only where it is
    unset: two updates, one for each case, guarded by the token so that exactly one applies
    (the first one's write would otherwise let the second match too)."""
    values: Document = {"status": str(op.to), "updatedAt": now}
    for column in op.stamp - {"started_at"}:
        values[FIELDS[column]] = now
    values.update({FIELDS[column]: value for column, value in op.values.items()})
    where: Document = {
        "executionId": op.execution_id,
        "status": {"$in": [str(s) for s in op.allowed_from]},
    }
    push = {"$push": {"writes": {"$each": [token], "$slice": -WRITE_TOKENS_KEPT}}}
    if "started_at" not in op.stamp or "startedAt" in values:
        return [UpdateOne(where, {"$set": values, **push})]
    once = {**where, "writes": {"$ne": token}}
    return [
        UpdateOne({**once, "startedAt": None}, {"$set": {**values, "startedAt": now}, **push}),
        UpdateOne({**once, "startedAt": {"$ne": None}}, {"$set": values, **push}),
    ]


def execution_document(record: ExecutionRecord) -> Document:
    return {field: _plain(getattr(record, attr)) for attr, field in FIELDS.items()}


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, ExecutionStatus) else value


def execution_record(doc: Mapping[str, Any]) -> ExecutionRecord:
    values: dict[str, Any] = {attr: doc.get(field) for attr, field in FIELDS.items()}
    values["status"] = ExecutionStatus(values["status"])
    values["metadata"] = values["metadata"] or {}
    return ExecutionRecord(**values)


def node_document(op: SaveNode) -> Document:
    r = op.result
    return {
        "executionId": op.execution_id,
        "nodeId": r.node_id,
        "seq": op.seq,
        "nodeType": r.node_type,
        "name": r.name,
        "status": str(r.status),
        "input": r.input,
        "output": r.output,
        "error": r.error,
        "attempt": r.attempt,
        "startedAt": ms(r.started_at),
        "completedAt": ms(r.completed_at),
        "durationMs": r.duration_ms,
    }


def node_result(doc: Mapping[str, Any]) -> NodeResult:
    started, completed = doc.get("startedAt"), doc.get("completedAt")
    return NodeResult(
        node_id=doc["nodeId"],
        node_type=doc["nodeType"],
        name=doc.get("name"),
        status=NodeStatus(doc["status"]),
        input=doc.get("input"),
        output=doc.get("output"),
        error=doc.get("error"),
        attempt=doc.get("attempt") or 0,
        started_at=None if started is None else started / 1000,
        completed_at=None if completed is None else completed / 1000,
    )
