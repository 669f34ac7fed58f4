"""The MongoDB store's own concerns: the documents and indexes it leaves in the database, two
processes racing on one execution (conditional updates, no lost update), and a MongoDB that
cannot be reached (503 fast, not after the driver's 30 s default)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest
from pymongo import AsyncMongoClient, ReadPreference
from pymongo.errors import BulkWriteError, ConfigurationError, ExecutionTimeout

from workflow_engine.ids import new_execution_id
from workflow_engine.store import StateStore, StoreUnavailable, open_store
from workflow_engine.store.base import Start
from workflow_engine.store.errors import StoreError
from workflow_engine.store.mongo import (
    EXECUTIONS,
    NODE_RESULTS,
    MongoStore,
    _reachable,
    client_options,
)
from workflow_engine.store.records import ExecutionRecord
from workflow_engine.vocabulary import ExecutionStatus, NodeResult, NodeStatus

S = ExecutionStatus


def record(**fields: object) -> ExecutionRecord:
    values: dict[str, object] = {
        "execution_id": new_execution_id(),
        "workflow_id": "w",
        "tenant_id": "t",
        "queue": "workflow",
    }
    values.update(fields)
    return ExecutionRecord(**values)  # type: ignore[arg-type]


@pytest.fixture
async def stores(mongodb_url: str) -> AsyncIterator[tuple[StateStore, StateStore]]:
    """Two stores on one database, each with its own client: two processes, as far as the
    database can tell."""
    a, b = open_store(mongodb_url), open_store(mongodb_url)
    await a.migrate()
    yield a, b
    await a.close()
    await b.close()


@pytest.fixture
async def raw(mongodb_url: str) -> AsyncIterator[AsyncMongoClient[dict[str, object]]]:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongodb_url)
    yield client
    await client.close()


async def test_documents_carry_the_fields_of_the_execution_context(
    stores: tuple[StateStore, StateStore], raw: AsyncMongoClient[dict[str, object]]
) -> None:
    store, _ = stores
    rec = record(client_id="c1", metadata={"k": "v"}, idempotency_key="key")
    await store.create(rec)
    await store.mark_running(rec.execution_id, 1)
    node = NodeResult("a", "echo", "A", NodeStatus.COMPLETED, {"x": 1}, {"x": 1}, None, 1, 1.0, 1.5)
    await store.save_node(rec.execution_id, node, 1)
    database = raw.get_default_database()
    doc = await database[EXECUTIONS].find_one({"executionId": rec.execution_id}, {"_id": 0})
    assert doc is not None
    assert {
        "executionId",
        "workflowId",
        "userId",
        "clientId",
        "type",
        "status",
        "metadata",
        "attempts",
        "createdAt",
        "startedAt",
        "updatedAt",
        "completedAt",
        "error",
        "progress",
        "result",
        "idempotencyKey",
    } <= set(doc)
    assert (doc["userId"], doc["clientId"], doc["status"]) == ("t", "c1", "running")
    saved = await database[NODE_RESULTS].find_one({"executionId": rec.execution_id}, {"_id": 0})
    assert saved is not None
    assert (saved["nodeId"], saved["nodeType"], saved["name"]) == ("a", "echo", "A")
    assert (saved["startedAt"], saved["completedAt"], saved["durationMs"]) == (1000, 1500, 500.0)


async def test_indexes_are_created_at_migrate(
    stores: tuple[StateStore, StateStore], raw: AsyncMongoClient[dict[str, object]]
) -> None:
    database = raw.get_default_database()
    executions = await database[EXECUTIONS].index_information()
    keys = {tuple(field for field, _ in info["key"]): info for info in executions.values()}
    assert keys[("executionId",)].get("unique") is True
    assert keys[("userId", "idempotencyKey")].get("unique") is True
    assert ("userId", "status", "createdAt") in keys
    assert ("clientId", "status") in keys
    nodes = await database[NODE_RESULTS].index_information()
    node_keys = {tuple(field for field, _ in info["key"]): info for info in nodes.values()}
    assert node_keys[("executionId", "nodeId")].get("unique") is True


async def test_two_processes_racing_to_start_an_execution_start_it_once(
    stores: tuple[StateStore, StateStore],
) -> None:
    a, b = stores
    records = [record() for _ in range(20)]
    for rec in records:
        await a.create(rec)
    starts = await asyncio.gather(
        *(store.mark_running(rec.execution_id, 1) for rec in records for store in (a, b))
    )
    for first, second in zip(starts[::2], starts[1::2], strict=True):
        # one started it; the other found it running (a stalled job taken over)
        assert sorted([first.value, second.value]) == ["resumed", "started"]


async def test_a_finish_and_a_cancel_racing_never_both_take(
    stores: tuple[StateStore, StateStore],
) -> None:
    a, b = stores
    records = [record() for _ in range(20)]
    for rec in records:
        await a.create(rec)
        assert await a.mark_running(rec.execution_id, 1) is Start.STARTED
    outcomes = await asyncio.gather(
        *(
            call
            for rec in records
            for call in (
                a.finish(rec.execution_id, S.COMPLETED, result=1),
                b.transition(rec.execution_id, S.CANCELLED),
            )
        )
    )
    for rec, finished, cancelled in zip(records, outcomes[::2], outcomes[1::2], strict=True):
        assert finished != cancelled  # exactly one of them took
        got = await a.get(rec.execution_id)
        assert got is not None
        assert got.status is (S.COMPLETED if finished else S.CANCELLED)


async def test_an_unreachable_mongodb_is_reported_as_unavailable_fast(tmp_path: Path) -> None:
    # a socket path where no server listens: a TCP port with no server would do as well, but
    # the driver's monitor, cancelled by close() in the middle of a TCP connect, leaves that
    # socket to the garbage collector (a ResourceWarning some time later, in another test)
    nowhere = quote(str(tmp_path / "mongodb-27017.sock"), safe="")
    store = open_store(f"mongodb://{nowhere}/wfe?serverSelectionTimeoutMS=300")
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await store.ping()
    with pytest.raises(StoreUnavailable):
        await store.create(record())
    with pytest.raises(StoreUnavailable):
        await store.mark_running("exec_1", 1)
    with pytest.raises(StoreUnavailable):
        await store.get("exec_1")
    assert time.monotonic() - started < 10
    await store.close()


def test_the_url_options_win_over_the_store_defaults() -> None:
    assert client_options("mongodb://h/db")["serverSelectionTimeoutMS"] == 3000
    assert "serverSelectionTimeoutMS" not in client_options(
        "mongodb://h/db?replicaSet=rs0&serverSelectionTimeoutMS=10000"
    )
    assert client_options("mongodb://h/db")["socketTimeoutMS"] == 30_000
    assert "socketTimeoutMS" not in client_options("mongodb://h/db?socketTimeoutMS=5000")
    assert "socketTimeoutMS" not in client_options("mongodb://h/db?timeoutMS=5000")


async def test_reads_go_to_the_primary_whatever_the_url_prefers() -> None:
    """A read decides what a write did (which transitions took): never from a lagging
    secondary."""
    store = open_store("mongodb://h1,h2/wfe?replicaSet=rs0&readPreference=secondaryPreferred")
    try:
        assert isinstance(store, MongoStore)
        assert store.executions.read_preference == ReadPreference.PRIMARY
        assert store.nodes.read_preference == ReadPreference.PRIMARY
    finally:
        await store.close()


async def test_an_unresolvable_srv_name_is_unavailable_not_an_error() -> None:
    store = open_store("mongodb+srv://cluster.invalid/wfe?serverSelectionTimeoutMS=300")
    try:
        with pytest.raises(StoreUnavailable):
            await store.ping()
        with pytest.raises(StoreUnavailable):
            await store.create(ExecutionRecord("exec_1", "w", "t", "workflow"))
    finally:
        await store.close()


async def test_a_node_output_over_the_document_limit_is_a_store_error_naming_it(
    stores: tuple[StateStore, StateStore],
) -> None:
    """MongoDB caps a document at 16 MB; the SQL stores have no such cap. The write fails as a
    store error naming the reason, not as the store being unavailable.
    Over 48 MB the driver refuses it before sending, which nx-27017 (it does not enforce the cap
    itself) lets the suite check; between 16 and 48 MB MongoDB refuses it the same way."""
    store, _ = stores
    rec = record()
    await store.create(rec)
    await store.mark_running(rec.execution_id, 1)
    big = {"text": "x" * (49 * 1024 * 1024)}
    node = NodeResult("a", "echo", "A", NodeStatus.COMPLETED, {}, big, None, 1, 1.0, 1.5)
    with pytest.raises(StoreError) as refused:
        await store.save_node(rec.execution_id, node, 1)
    assert not isinstance(refused.value, StoreUnavailable)
    assert "too large" in str(refused.value)


@pytest.mark.parametrize(
    ("raised", "expected", "message"),
    [
        (
            BulkWriteError(
                {
                    "writeErrors": [
                        {"index": 0, "code": 10334, "errmsg": "BSONObj size: 17 is invalid"}
                    ]
                }
            ),
            StoreError,
            "MongoDB refused a write: BSONObj size: 17 is invalid",
        ),
        (ExecutionTimeout("operation exceeded time limit"), StoreUnavailable, "timed out"),
        (ConfigurationError("The DNS query name does not exist"), StoreUnavailable, "unreachable"),
    ],
)
def test_driver_errors_become_store_errors(
    raised: Exception, expected: type[Exception], message: str
) -> None:
    """What nx-27017 cannot make the driver raise (a server's refusal of a document, an
    operation over the URL's timeoutMS): a refused write names the server's reason; a timeout
    is the store being unavailable (503, retried)."""
    with pytest.raises(expected, match=message) as caught, _reachable():
        raise raised
    assert isinstance(caught.value, StoreUnavailable) is (expected is StoreUnavailable)
