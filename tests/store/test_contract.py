"""One contract for every store backend, run against SQLite, PostgreSQL and MongoDB (see
``store_url``). ``nx_gap`` marks what the MongoDB stand-in of the tests (nx-27017) cannot do."""

from __future__ import annotations

import asyncio
import multiprocessing
from typing import Any

import pytest
import sqlalchemy as sa

from tests.store import counting
from workflow_engine.store import (
    ExecutionRecord,
    IllegalTransition,
    StateStore,
    StoreUnavailable,
    open_store,
)
from workflow_engine.store.base import Start
from workflow_engine.store.records import ConnectionRecord, WorkflowRecord
from workflow_engine.store.sql import SqlStore
from workflow_engine.store.writes import Transition
from workflow_engine.vocabulary import (
    ExecutionError,
    ExecutionStatus,
    NodeResult,
    NodeStatus,
    now_ms,
)

S = ExecutionStatus


def record(execution_id: str, **fields: Any) -> ExecutionRecord:
    defaults: dict[str, Any] = {
        "workflow_id": "wf",
        "tenant_id": "t1",
        "queue": "workflow",
        "definition": {"id": "wf", "nodes": []},
        "inputs": {"x": 1},
        "metadata": {"source": "test"},
    }
    return ExecutionRecord(execution_id=execution_id, **{**defaults, **fields})


async def test_create_and_read_back(store: StateStore) -> None:
    _, fresh = await store.create(record("exec_1", client_id="c1", priority=3))
    assert fresh
    got = await store.get("exec_1")
    assert got is not None
    assert got.status is S.PENDING
    assert got.definition is None  # heavy columns only on request
    full = await store.get("exec_1", with_definition=True)
    assert full is not None
    assert full.definition == {"id": "wf", "nodes": []}
    assert full.inputs == {"x": 1}
    context = got.context()
    assert context["executionId"] == "exec_1"
    assert context["userId"] == "t1"
    assert context["clientId"] == "c1"
    assert context["type"] == "workflow"
    assert context["metadata"] == {"source": "test"}
    assert context["createdAt"].endswith("Z")
    assert context["startedAt"] is None
    assert context["error"] is None
    assert await store.get("nope") is None


async def test_get_is_scoped_by_tenant(store: StateStore) -> None:
    await store.create(record("exec_1", tenant_id="a"))
    assert await store.get("exec_1", "a") is not None
    assert await store.get("exec_1", "b") is None


async def test_idempotency_key_returns_the_first_execution(store: StateStore) -> None:
    _, fresh1 = await store.create(record("exec_1", idempotency_key="k"))
    second, fresh2 = await store.create(record("exec_2", idempotency_key="k"))
    other, fresh3 = await store.create(record("exec_3", idempotency_key="k", tenant_id="t2"))
    assert (fresh1, fresh2, fresh3) == (True, False, True)
    assert second.execution_id == "exec_1"
    assert await store.get("exec_2") is None
    assert other.execution_id == "exec_3"


async def test_status_transitions_follow_the_rules(store: StateStore) -> None:
    await store.create(record("exec_1"))
    assert not await store.transition("exec_1", S.COMPLETED)  # pending -> completed: no
    assert await store.mark_running("exec_1", attempt=1) is Start.STARTED
    assert await store.finish("exec_1", S.COMPLETED, result={"ok": True})
    assert await store.mark_running("exec_1", attempt=2) is Start.REFUSED  # completed is final
    assert not await store.transition("exec_1", S.CANCELLED)
    got = await store.get("exec_1")
    assert got is not None
    assert got.status is S.COMPLETED
    assert got.result == {"ok": True}
    assert got.completed_at is not None
    with pytest.raises(
        IllegalTransition, match="execution exec_1 is completed; it cannot become running"
    ):
        await store.require_transition("exec_1", S.RUNNING)
    with pytest.raises(IllegalTransition, match="does not exist"):
        await store.require_transition("ghost", S.RUNNING)


async def test_cancelled_pending_execution_cannot_start(store: StateStore) -> None:
    await store.create(record("exec_1"))
    assert await store.transition("exec_1", S.CANCELLED)
    assert await store.mark_running("exec_1", attempt=1) is Start.REFUSED


async def test_retry_keeps_the_first_start_and_counts_attempts(store: StateStore) -> None:
    await store.create(record("exec_1"))
    assert await store.mark_running("exec_1", attempt=1) is Start.STARTED
    first = await store.get("exec_1")
    assert first is not None
    await asyncio.sleep(0.01)  # two distinct millisecond clocks
    # running -> running: a retry or a stalled job taken over; its nodes are to be restored
    assert await store.mark_running("exec_1", attempt=2) is Start.RESUMED
    again = await store.get("exec_1")
    assert again is not None
    assert again.attempts == 2
    assert again.started_at == first.started_at
    assert again.updated_at >= first.updated_at


async def test_a_start_is_stamped_once_even_after_a_plain_transition(store: StateStore) -> None:
    await store.create(record("exec_1"))
    assert await store.transition("exec_1", S.RUNNING)  # no start time stamped
    plain = await store.get("exec_1")
    assert plain is not None
    assert plain.started_at is None
    assert await store.mark_running("exec_1", attempt=2) is Start.RESUMED
    stamped = await store.get("exec_1")
    assert stamped is not None
    assert stamped.started_at is not None
    assert stamped.attempts == 2


async def test_one_batch_tells_each_write_whether_it_took(store: StateStore) -> None:
    for name in ("exec_run", "exec_pending", "exec_done", "exec_run2"):
        await store.create(record(name))
    await store.mark_running("exec_run", 1)
    await store.mark_running("exec_run2", 1)
    await store.mark_running("exec_done", 1)
    await store.finish("exec_done", S.COMPLETED)
    batches: list[int] = []
    apply = store._apply

    async def counting(writes: Any) -> list[bool]:
        batches.append(len(writes))
        return await apply(writes)

    store._apply = counting  # type: ignore[method-assign]
    taken = await asyncio.gather(
        store.finish("exec_run", S.COMPLETED, result=1),
        store.finish("exec_pending", S.COMPLETED, result=2),  # pending -> completed: no
        store.finish("exec_done", S.FAILED),  # final already
        store.finish("exec_run2", S.FAILED, error=ExecutionError("x", "fail")),
        store.transition("ghost", S.CANCELLED),
    )
    assert taken == [True, False, False, True, False]
    assert max(batches) >= 4  # at least four shared a batch: mixed outcomes in one
    statuses = {
        name: got.status
        for name in ("exec_run", "exec_pending", "exec_done", "exec_run2")
        if (got := await store.get(name)) is not None
    }
    assert statuses == {
        "exec_run": S.COMPLETED,
        "exec_pending": S.PENDING,
        "exec_done": S.COMPLETED,
        "exec_run2": S.FAILED,
    }


async def test_failed_execution_keeps_its_error(store: StateStore) -> None:
    await store.create(record("exec_1"))
    await store.mark_running("exec_1", attempt=1)
    error = ExecutionError("boom", "fail", "n")
    progress = {"currentNode": "n", "completedNodes": ["n"], "totalNodes": 2, "percentage": 50}
    assert await store.finish("exec_1", S.FAILED, error=error, progress=progress)
    got = await store.get("exec_1")
    assert got is not None
    assert got.error == {"message": "boom", "nodeId": "n", "type": "fail"}  # the wire form
    assert got.context()["error"] == got.error
    assert got.progress == progress


async def test_a_transition_sets_only_the_columns_it_is_given(store: StateStore) -> None:
    await store.create(record("exec_1"))
    await store.mark_running("exec_1", attempt=1)
    progress = {"currentNode": "a", "completedNodes": ["a"], "totalNodes": 2, "percentage": 50}
    assert await store.transition("exec_1", S.WAITING, progress=progress)
    assert await store.mark_running("exec_1", attempt=2) is Start.RESUMED
    assert await store.transition("exec_1", S.WAITING)  # no progress given: it stays
    parked = await store.get("exec_1")
    assert parked is not None
    assert (parked.status, parked.progress, parked.error) == (S.WAITING, progress, None)
    assert await store.mark_running("exec_1", attempt=3) is Start.RESUMED
    assert await store.transition("exec_1", S.WAITING, progress=None)  # given as None: cleared
    cleared = await store.get("exec_1")
    assert cleared is not None
    assert cleared.progress is None
    lost = ExecutionError("its job was lost", "lost")
    with pytest.raises(IllegalTransition, match="is waiting; it cannot become failed"):
        await store.require_transition(
            "exec_1", S.FAILED, expect=frozenset({S.RUNNING}), error=lost
        )
    await store.require_transition(
        "exec_1", S.FAILED, expect=frozenset({S.WAITING}), error=lost, completed_at=1234
    )
    failed = await store.get("exec_1")
    assert failed is not None
    assert (failed.status, failed.completed_at) == (S.FAILED, 1234)
    assert failed.error == {"message": "its job was lost", "nodeId": None, "type": "lost"}


async def test_node_results_round_trip_and_upsert(store: StateStore) -> None:
    await store.create(record("exec_1"))
    base = 1_700_000_000.0
    a = NodeResult(
        "a",
        "http",
        "Fetch",
        NodeStatus.COMPLETED,
        {"url": "u"},
        {"status": 200},
        None,
        2,
        base,
        base + 0.25,
    )
    b = NodeResult(
        "b",
        "fail",
        None,
        NodeStatus.FAILED,
        {},
        None,
        {"message": "x", "type": "fail"},
        1,
        base + 1,
        base + 1.5,
    )
    c = NodeResult("c", "echo", None, NodeStatus.SKIPPED, completed_at=base + 2)
    await asyncio.gather(
        store.save_node("exec_1", b, 2),
        store.save_node("exec_1", a, 1),
        store.save_node("exec_1", c, 3),
    )
    results = await store.node_results("exec_1")
    assert [r.node_id for r in results] == ["a", "b", "c"]
    assert results[0] == a
    assert results[0].to_dict()["durationMs"] == 250.0
    assert results[1].error == {"message": "x", "type": "fail"}
    assert results[2].status is NodeStatus.SKIPPED
    # a node re-run after a retry replaces its row
    a2 = NodeResult(
        "a",
        "http",
        "Fetch",
        NodeStatus.COMPLETED,
        {"url": "u"},
        {"status": 201},
        None,
        3,
        base,
        base + 0.5,
    )
    await store.save_node("exec_1", a2, 1)
    results = await store.node_results("exec_1")
    assert len(results) == 3
    assert results[0].output == {"status": 201}
    assert results[0].attempt == 3


@pytest.mark.parametrize("output", [2, 2.5, "text", "", True, None, [1, "a"], {"k": [None]}])
async def test_any_json_output_round_trips(store: StateStore, output: Any) -> None:
    await store.create(record("exec_1"))
    await store.save_node(
        "exec_1", NodeResult("n", "echo", None, NodeStatus.COMPLETED, output, output)
    )
    await store.mark_running("exec_1", 1)
    await store.finish("exec_1", S.COMPLETED, result=output)
    [node] = await store.node_results("exec_1")
    assert (node.input, node.output) == (output, output)
    got = await store.get("exec_1")
    assert got is not None
    assert got.result == output


async def test_a_nested_loop_iteration_node_id_round_trips(store: StateStore) -> None:
    """A loop iteration's node id (SPEC 9) is longer than a node id: nested loops of 64-character
    ids reach a few hundred characters."""
    long_id = "o" * 64
    node_id = f"{long_id}[999].{long_id}[999].{long_id}[999].{long_id}"
    await store.create(record("exec_1"))
    await store.save_node("exec_1", _done(node_id, 1))
    [node] = await store.node_results("exec_1")
    assert node.node_id == node_id


async def test_progress_is_saved_while_running_only(store: StateStore) -> None:
    await store.create(record("exec_1"))
    await store.mark_running("exec_1", 1)
    progress = {"currentNode": "a", "completedNodes": ["a"], "totalNodes": 3, "percentage": 33}
    await store.save_progress("exec_1", progress)
    got = await store.get("exec_1")
    assert got is not None
    assert got.progress == progress
    await store.transition("exec_1", S.CANCELLED)  # cancelled elsewhere: a late run's
    await store.save_progress("exec_1", {**progress, "percentage": 66})  # progress is ignored
    got = await store.get("exec_1")
    assert got is not None
    assert got.progress == progress


async def test_concurrent_writes_are_group_committed(store: StateStore) -> None:
    for i in range(50):
        await store.create(record(f"exec_{i:03}"))
    batches: list[int] = []
    apply = store._apply

    async def counting(writes: Any) -> list[bool]:
        batches.append(len(writes))
        return await apply(writes)

    store._apply = counting  # type: ignore[method-assign]
    results = await asyncio.gather(*(store.mark_running(f"exec_{i:03}", 1) for i in range(50)))
    assert results == [Start.STARTED] * 50
    assert sum(batches) == 50
    assert len(batches) < 10  # the first write goes alone, the rest share a few transactions
    counts = await store.count_by_status()
    assert counts["running"] == 50


def _done(node_id: str, output: Any) -> NodeResult:
    return NodeResult(node_id, "echo", None, NodeStatus.COMPLETED, output=output, attempt=1)


async def test_a_batch_of_every_kind_of_write_applies_each(store: StateStore) -> None:
    """Node results with their outcome (the common end of a run), a refused outcome beside
    them, progress, and transitions of different shapes, all in one batch."""
    for name in ("ends", "cancelled", "goes_on", "fresh"):
        await store.create(record(name))
    for name in ("ends", "cancelled", "goes_on"):
        await store.mark_running(name, 1)
    await store.transition("cancelled", S.CANCELLED)
    batches = store.batches
    writes = [
        store.save_node("ends", _done("a", 1), 0),
        store.save_node("ends", _done("b", [2]), 1),
        store.save_node("cancelled", _done("a", "late")),
        store.finish_later("ends", S.COMPLETED, result={"r": 2}),
        store.finish_later("cancelled", S.COMPLETED, result="late"),
    ]
    assert await asyncio.gather(*writes) == [True, True, True, True, False]
    assert store.batches == batches + 1
    ends = await store.get("ends")
    assert ends is not None
    assert (ends.status, ends.result) == (S.COMPLETED, {"r": 2})
    assert [(n.node_id, n.output) for n in await store.node_results("ends")] == [
        ("a", 1),
        ("b", [2]),
    ]
    cancelled = await store.get("cancelled")
    assert cancelled is not None
    assert (cancelled.status, cancelled.result) == (S.CANCELLED, None)
    assert [n.output for n in await store.node_results("cancelled")] == ["late"]

    mixed = [
        store.save_progress("goes_on", {"percentage": 50}),
        store.save_node("goes_on", _done("a", None)),
        store.submit(Transition("fresh", S.RUNNING, {"attempts": 1})),
        store.submit(Transition("goes_on", S.FAILED, {"error": {"message": "boom"}})),
    ]
    assert await asyncio.gather(*mixed) == [True, True, True, True]
    assert store.batches == batches + 2
    goes_on = await store.get("goes_on")
    fresh = await store.get("fresh")
    assert goes_on is not None
    assert fresh is not None
    assert (goes_on.status, goes_on.progress, goes_on.error) == (
        S.FAILED,
        {"percentage": 50},
        {"message": "boom"},
    )
    assert (fresh.status, fresh.attempts) == (S.RUNNING, 1)
    assert [n.node_id for n in await store.node_results("goes_on")] == ["a"]


async def test_list_executions_newest_first_with_filters_and_cursor(store: StateStore) -> None:
    for i in range(7):
        await store.create(
            record(f"exec_{i:03}", client_id="c1" if i % 2 else "c2", workflow_id=f"wf{i % 3}")
        )
    await store.create(record("exec_999", tenant_id="other"))
    await store.mark_running("exec_004", 1)
    page = await store.list_executions("t1", limit=3)
    assert [r.execution_id for r in page.items] == ["exec_006", "exec_005", "exec_004"]
    page2 = await store.list_executions("t1", limit=3, cursor=page.next_cursor)
    assert [r.execution_id for r in page2.items] == ["exec_003", "exec_002", "exec_001"]
    page3 = await store.list_executions("t1", limit=3, cursor=page2.next_cursor)
    assert [r.execution_id for r in page3.items] == ["exec_000"]
    assert page3.next_cursor is None
    running = await store.list_executions("t1", status=S.RUNNING)
    assert [r.execution_id for r in running.items] == ["exec_004"]
    by_client = await store.list_executions("t1", client_id="c1")
    assert [r.execution_id for r in by_client.items] == ["exec_005", "exec_003", "exec_001"]
    by_workflow = await store.list_executions("t1", workflow_id="wf0")
    assert [r.execution_id for r in by_workflow.items] == ["exec_006", "exec_003", "exec_000"]
    everyone = await store.list_executions(None, limit=100)
    assert len(everyone.items) == 8


async def test_active_executions_of_a_client(store: StateStore) -> None:
    for i in range(4):
        await store.create(record(f"exec_{i}", client_id="c1"))
    await store.create(record("exec_x", client_id="c1", tenant_id="other"))
    await store.mark_running("exec_1", 1)
    await store.mark_running("exec_2", 1)
    await store.finish("exec_2", S.COMPLETED)
    await store.transition("exec_3", S.CANCELLED)
    active = await store.active_for_client("t1", "c1")
    assert [(r.execution_id, r.status) for r in active] == [
        ("exec_0", S.PENDING),
        ("exec_1", S.RUNNING),
    ]


async def test_count_by_status_per_tenant(store: StateStore) -> None:
    await store.create(record("exec_1"))
    await store.create(record("exec_2"))
    await store.create(record("exec_3", tenant_id="other"))
    await store.mark_running("exec_2", 1)
    counts = await store.count_by_status("t1")
    assert counts["pending"] == 1
    assert counts["running"] == 1
    assert counts["completed"] == 0
    assert (await store.count_by_status())["pending"] == 2


async def test_cleanup_removes_old_finished_executions_and_their_nodes(store: StateStore) -> None:
    old = now_ms() - 40 * 86_400_000
    for name in ("old_done", "recent_done", "old_running"):
        await store.create(record(name))
        await store.mark_running(name, 1)
        await store.save_node(name, NodeResult("n", "echo", None, NodeStatus.COMPLETED, attempt=1))
    await store.transition("old_done", S.COMPLETED, completed_at=old)
    await store.finish("recent_done", S.COMPLETED)
    assert await store.cleanup(days=30) == ["old_done"]
    assert await store.get("old_done") is None
    assert await store.node_results("old_done") == []
    assert await store.get("recent_done") is not None
    assert await store.get("old_running") is not None
    assert len(await store.node_results("recent_done")) == 1


async def test_delete_removes_the_execution(store: StateStore) -> None:
    await store.create(record("exec_1"))
    await store.delete("exec_1")
    assert await store.get("exec_1") is None


async def test_migrate_is_idempotent(store: StateStore) -> None:
    await store.migrate()
    await store.migrate()
    await store.create(record("exec_1"))
    assert await store.get("exec_1") is not None


def _migrate_in_process(url: str) -> None:
    async def run() -> None:
        s = open_store(url)
        await s.migrate()
        await s.close()

    asyncio.run(run())


async def test_migrations_are_safe_from_several_processes_at_once(store_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_migrate_in_process, args=(store_url,)) for _ in range(4)]
    for p in processes:
        p.start()
    for p in processes:
        await asyncio.to_thread(p.join, 60)
    assert [p.exitcode for p in processes] == [0, 0, 0, 0]
    s = open_store(store_url)
    try:
        await s.create(record("exec_1"))
        assert await s.get("exec_1") is not None
    finally:
        await s.close()


async def test_an_unreachable_database_is_reported_as_unavailable(tmp_path: Any) -> None:
    from tests.support.services import free_port

    s = open_store(f"postgresql://postgres@127.0.0.1:{free_port()}/nope")
    with pytest.raises(StoreUnavailable):
        await s.ping()
    with pytest.raises(StoreUnavailable):
        await s.create(record("exec_1"))
    with pytest.raises(StoreUnavailable):
        await s.mark_running("exec_1", 1)
    await s.close()


async def test_no_outcome_after_a_lost_node_result(store: StateStore) -> None:
    """A node result's batch fails; the outcome submitted later must fail too, until the next
    attempt resets the execution."""
    await store.create(record("exec_1"))
    await store.mark_running("exec_1", 1)
    apply = store._apply
    calls = 0

    async def fail_once(writes: Any) -> list[bool]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise StoreUnavailable("the database blinked")
        return await apply(writes)

    store._apply = fail_once  # type: ignore[method-assign]
    lost = store.save_node("exec_1", NodeResult("a", "echo", None, NodeStatus.COMPLETED, attempt=1))
    with pytest.raises(StoreUnavailable):
        await lost
    with pytest.raises(StoreUnavailable, match="an earlier write of exec_1 failed"):
        await store.finish("exec_1", S.COMPLETED, result=1)
    got = await store.get("exec_1")
    assert got is not None
    assert got.status is S.RUNNING  # not completed without its node result
    store.reset("exec_1")  # the next attempt
    assert await store.mark_running("exec_1", 2) is Start.RESUMED
    assert await store.finish("exec_1", S.COMPLETED, result=1)


@pytest.mark.nx_gap("a boolean written by $set is stored as the integer 1 (inserts keep it)")
async def test_outcomes_equal_in_python_but_not_in_json_stay_apart(store: StateStore) -> None:
    results = {"exec_a": 1, "exec_b": True, "exec_c": 1.5, "exec_d": None}
    for name in results:
        await store.create(record(name))
        await store.mark_running(name, 1)
    progress = {"currentNode": None, "completedNodes": [], "totalNodes": 1, "percentage": 100}
    # one batch: the same shape and, in Python, nearly the same values
    done = await asyncio.gather(
        *(store.finish(n, S.COMPLETED, result=r, progress=progress) for n, r in results.items())
    )
    assert all(done)
    for name, result in results.items():
        got = await store.get(name)
        assert got is not None
        assert got.result == result
        assert type(got.result) is type(result)


async def test_an_answer_reaches_only_a_node_that_waits_in_a_waiting_execution(
    store: StateStore,
) -> None:
    await store.create(record("exec_w"))
    await store.mark_running("exec_w", 1)
    ticket = {"waitingFor": "input", "prompt": "ok?", "schema": {}}
    waiting = NodeResult("ask", "wait_input", None, NodeStatus.WAITING, output=ticket, attempt=1)
    await store.save_node("exec_w", waiting)
    assert not await store.answer("exec_w", "ask", True)  # the execution is still running
    assert await store.transition("exec_w", S.WAITING)
    assert not await store.answer("exec_w", "other", True)
    assert await store.answer("exec_w", "ask", {"approved": True})
    assert not await store.answer("exec_w", "ask", False)  # answered already
    [saved] = await store.node_results("exec_w")
    assert saved.output["answer"] == {"approved": True}
    assert saved.output["prompt"] == "ok?"
    assert saved.output["answeredAt"] is not None


async def test_stale_active_lists_only_unchanged_active_executions(store: StateStore) -> None:
    for name in ("a_running", "b_pending", "c_done"):
        await store.create(record(name))
    await store.mark_running("a_running", 1)
    await store.mark_running("c_done", 1)
    await store.finish("c_done", S.COMPLETED)
    later = now_ms() + 1000
    assert {r.execution_id for r in await store.stale_active(later)} == {"a_running", "b_pending"}
    assert await store.stale_active(now_ms() - 60_000) == []


async def test_connections_are_kept_per_tenant_and_replaced_by_name(store: StateStore) -> None:
    assert not await store.has_connections()
    first = ConnectionRecord("t1", "default", "openai", "https://a.example/v1", "sealed-1", 1, 1)
    await store.put_connection(first)
    await store.put_connection(
        ConnectionRecord("t2", "default", "openai", "https://b/v1", "s", 2, 2)
    )
    assert await store.has_connections()
    again = ConnectionRecord("t1", "default", "openai", "https://c.example/v1", "sealed-2", 9, 9)
    await store.put_connection(again)  # the same name: replaced, its creation time kept
    assert await store.get_connection("t1", "default") == ConnectionRecord(
        "t1", "default", "openai", "https://c.example/v1", "sealed-2", 1, 9
    )
    await store.put_connection(
        ConnectionRecord("t1", "another", "openai", "https://d/v1", "x", 3, 3)
    )
    assert [c.name for c in await store.list_connections("t1")] == ["another", "default"]
    assert await store.get_connection("t3", "default") is None
    assert await store.delete_connection("t1", "default")
    assert not await store.delete_connection("t1", "default")
    assert await store.get_connection("t1", "default") is None
    assert (await store.get_connection("t2", "default")) is not None  # another tenant's stays


async def test_usage_is_kept_with_the_outcome_and_shown_in_the_context(store: StateStore) -> None:
    await store.create(record("exec_u"))
    assert "usage" not in (await store.get("exec_u") or record("x")).context()
    await store.mark_running("exec_u", 1)
    usage = {"promptTokens": 10, "completionTokens": 5, "totalTokens": 15}
    assert await store.finish("exec_u", S.COMPLETED, result="ok", usage=usage)
    found = await store.get("exec_u")
    assert found is not None
    assert found.token_usage == usage
    assert found.context()["usage"] == usage
    (listed,) = (await store.list_executions("t1", limit=5)).items
    assert listed.context()["usage"] == usage


async def test_final_variables_are_kept_with_the_outcome(store: StateStore) -> None:
    await store.create(record("exec_v"))
    await store.create(record("exec_none"))
    for execution_id in ("exec_v", "exec_none"):
        await store.mark_running(execution_id, 1)
    variables = {"total": 3, "tags": ["a"], "nothing": None}
    assert await store.finish("exec_v", S.COMPLETED, result="ok", variables=variables)
    assert await store.finish("exec_none", S.COMPLETED, result="ok")
    found = await store.get("exec_v")
    assert found is not None
    assert found.variables == variables
    assert "variables" not in found.context()  # (the status answer has them beside it)
    none = await store.get("exec_none")
    assert none is not None
    assert none.variables is None


def flow(label: str) -> dict[str, Any]:
    return {"id": "wf", "nodes": [{"id": "a", "type": "transform", "inputs": {"v": label}}]}


async def test_workflow_versions_are_numbered_per_tenant_and_id(store: StateStore) -> None:
    first = await store.save_workflow("t1", "orders", "Orders", flow("one"))
    second = await store.save_workflow("t1", "orders", "Orders v2", flow("two"))
    other_id = await store.save_workflow("t1", "refunds", None, flow("r"))
    other_tenant = await store.save_workflow("t2", "orders", "Theirs", flow("theirs"))
    assert [first.version, second.version, other_id.version, other_tenant.version] == [1, 2, 1, 1]
    assert second.created_at >= first.created_at
    latest = await store.get_workflow("t1", "orders")
    assert latest == WorkflowRecord(
        "t1", "orders", 2, "Orders v2", flow("two"), second.created_at, None
    )
    older = await store.get_workflow("t1", "orders", version=1)
    assert older is not None
    assert (older.version, older.name, older.definition) == (1, "Orders", flow("one"))
    assert await store.get_workflow("t1", "orders", version=3) is None
    assert await store.get_workflow("t3", "orders") is None
    theirs = await store.get_workflow("t2", "orders")
    assert theirs is not None
    assert theirs.definition == flow("theirs")
    versions = await store.workflow_versions("t1", "orders")
    assert [(v.version, v.created_at, v.definition) for v in versions] == [
        (1, first.created_at, None),
        (2, second.created_at, None),
    ]
    assert await store.workflow_versions("t3", "orders") == []


async def test_list_workflows_gives_the_latest_of_each_by_id_with_a_cursor(
    store: StateStore,
) -> None:
    await store.save_workflow("t1", "b", "b one", flow("b1"))
    await store.save_workflow("t1", "a", "a one", flow("a1"))
    await store.save_workflow("t1", "b", "b two", flow("b2"))
    await store.save_workflow("t1", "c", None, flow("c1"))
    await store.save_workflow("t2", "aa", "theirs", flow("x"))
    page = await store.list_workflows("t1", limit=2)
    assert [(w.workflow_id, w.version, w.name) for w in page.items] == [
        ("a", 1, "a one"),
        ("b", 2, "b two"),
    ]
    assert all(w.definition is None for w in page.items)
    assert page.next_cursor == "b"
    rest = await store.list_workflows("t1", limit=2, cursor=page.next_cursor)
    assert [(w.workflow_id, w.version) for w in rest.items] == [("c", 1)]
    assert rest.next_cursor is None
    exact = await store.list_workflows("t1", limit=3)
    assert (len(exact.items), exact.next_cursor) == (3, None)
    assert (await store.list_workflows("t3")).items == []


async def test_a_deleted_workflow_is_hidden_and_its_numbers_are_not_reused(
    store: StateStore,
) -> None:
    await store.save_workflow("t1", "gone", None, flow("1"))
    await store.save_workflow("t1", "gone", None, flow("2"))
    await store.save_workflow("t1", "kept", None, flow("k"))
    await store.save_workflow("t2", "gone", None, flow("theirs"))
    assert await store.delete_workflow("t1", "gone")
    assert not await store.delete_workflow("t1", "gone")
    assert not await store.delete_workflow("t1", "never")
    assert await store.get_workflow("t1", "gone") is None
    assert await store.get_workflow("t1", "gone", version=1) is None
    assert await store.workflow_versions("t1", "gone") == []
    assert [w.workflow_id for w in (await store.list_workflows("t1")).items] == ["kept"]
    assert await store.get_workflow("t2", "gone") is not None  # another tenant's stays
    again = await store.save_workflow("t1", "gone", None, flow("3"))
    assert again.version == 3  # an execution that ran version 1 or 2 still means that one
    assert [v.version for v in await store.workflow_versions("t1", "gone")] == [3]
    assert [w.workflow_id for w in (await store.list_workflows("t1")).items] == ["gone", "kept"]


async def test_concurrent_saves_of_one_workflow_get_distinct_versions(
    store: StateStore, store_url: str
) -> None:
    other = open_store(store_url)  # a second process's store, as another API replica has
    try:
        saved = await asyncio.gather(
            *(
                (store if i % 2 else other).save_workflow("t1", "busy", None, flow(str(i)))
                for i in range(12)
            )
        )
    finally:
        await other.close()
    assert sorted(r.version for r in saved) == list(range(1, 13))
    for record in saved:  # each number holds the definition its save was given
        found = await store.get_workflow("t1", "busy", version=record.version)
        assert found is not None
        assert found.definition == record.definition


async def test_an_execution_keeps_the_stored_workflow_version_it_runs(store: StateStore) -> None:
    await store.create(record("exec_v", workflow_version=3))
    await store.create(record("exec_plain"))
    found = await store.get("exec_v")
    assert found is not None
    assert found.workflow_version == 3
    assert found.context()["workflowVersion"] == 3
    plain = await store.get("exec_plain")
    assert plain is not None
    assert "workflowVersion" not in plain.context()
    listed = {r.execution_id: r for r in (await store.list_executions("t1")).items}
    assert listed["exec_v"].workflow_version == 3


# -- status counts (kept by the writes themselves on SQL stores: tests/store/counting.py) ----


async def test_counts_follow_each_create_transition_and_delete(store: StateStore) -> None:
    for name in ("done", "broken", "stopped", "gone", "old", "waits"):
        await store.create(record(name))
    await store.create(record("theirs", tenant_id="t2"))
    assert await counting.check(store) == {("t1", "pending"): 6, ("t2", "pending"): 1}
    for name in ("done", "broken", "old", "waits"):
        assert await store.mark_running(name, 1) is Start.STARTED
    assert await store.mark_running("done", 2) is Start.RESUMED  # running -> running
    assert await store.transition("waits", S.WAITING)
    assert await counting.check(store) == {
        ("t1", "pending"): 2,
        ("t1", "running"): 3,
        ("t1", "waiting"): 1,
        ("t2", "pending"): 1,
    }
    assert await store.finish("done", S.COMPLETED, result=1)
    assert await store.finish("broken", S.FAILED, error=ExecutionError("x", "fail"))
    assert await store.transition("stopped", S.CANCELLED)
    assert not await store.finish("stopped", S.COMPLETED)  # refused: nothing moves
    assert await store.transition("old", S.COMPLETED, completed_at=now_ms() - 40 * 86_400_000)
    await store.delete("gone")
    await store.delete("ghost")  # nothing to delete, nothing counted
    assert await counting.check(store) == {
        ("t1", "completed"): 2,
        ("t1", "failed"): 1,
        ("t1", "cancelled"): 1,
        ("t1", "waiting"): 1,
        ("t2", "pending"): 1,
    }
    assert await store.cleanup(days=30) == ["old"]
    assert await store.transition("broken", S.PENDING)  # an admin's retry of a failed job
    assert await counting.check(store) == {
        ("t1", "completed"): 1,
        ("t1", "pending"): 1,
        ("t1", "cancelled"): 1,
        ("t1", "waiting"): 1,
        ("t2", "pending"): 1,
    }


async def test_a_batch_whose_count_changes_cancel_out_commits(store: StateStore) -> None:
    """One execution parks while another of the same tenant resumes, in one batch: running
    -1 +1, waiting +1 -1, nothing to add to the counts (PostgreSQL sent an upsert of no
    rows and the whole batch failed)."""
    for name in ("parks", "resumes"):
        await store.create(record(name))
        await store.mark_running(name, 1)
    assert await store.transition("resumes", S.WAITING)
    batches = store.batches
    both = [
        store.submit(Transition("resumes", S.RUNNING)),
        store.submit(Transition("parks", S.WAITING)),
    ]
    assert await asyncio.gather(*both) == [True, True]
    assert store.batches == batches + 1
    assert await counting.check(store) == {("t1", "running"): 1, ("t1", "waiting"): 1}


async def test_a_repeated_idempotency_key_is_not_counted_twice(store: StateStore) -> None:
    await store.create(record("first", idempotency_key="k"))
    _, fresh = await store.create(record("second", idempotency_key="k"))
    assert not fresh
    assert await counting.check(store) == {("t1", "pending"): 1}


async def test_counts_equal_a_fresh_group_by_after_a_mixed_workload(store: StateStore) -> None:
    """Hundreds of writes of every kind, concurrent (so that they share batches: several
    transitions of one key, and of one execution, in one transaction), over three tenants."""
    names = [f"mix_{i:03}" for i in range(120)]
    tenants = {name: f"t{i % 3}" for i, name in enumerate(names)}
    await asyncio.gather(*(store.create(record(n, tenant_id=tenants[n])) for n in names))
    await asyncio.gather(*(store.mark_running(n, 1) for n in names[:100]))
    ends: list[Any] = []
    for i, name in enumerate(names[:100]):
        if i % 5 == 0:
            ends.append(store.finish(name, S.COMPLETED, result=i))
        elif i % 5 == 1:
            ends.append(store.finish(name, S.FAILED, error=ExecutionError("x", "fail")))
        elif i % 5 == 2:
            ends.append(store.transition(name, S.WAITING))
            ends.append(store.mark_running(name, 2))  # the same execution, same batch
            ends.append(store.transition(name, S.CANCELLED))
        elif i % 5 == 3:
            ends.append(store.save_node(name, _done("n", i)))
            ends.append(store.finish(name, S.SKIPPED))
        # i % 5 == 4: stays running
    ends += [store.transition(n, S.CANCELLED) for n in names[100:110]]
    ends += [store.finish(n, S.COMPLETED) for n in names[110:]]  # refused: still pending
    await asyncio.gather(*ends)
    await asyncio.gather(*(store.delete(n) for n in names[::7]))
    truth = await counting.check(store)
    assert sum(truth.values()) == len(names) - len(names[::7])


async def test_the_counts_migration_counts_the_executions_already_there(
    store_url: str, store: StateStore
) -> None:
    """A database from before the counts (its table dropped, migration 8 not applied) gets
    them from its rows."""
    if not isinstance(store, SqlStore):
        pytest.skip("MongoDB groups at each read: nothing to migrate")
    for i in range(9):
        await store.create(record(f"exec_{i}", tenant_id=f"t{i % 2}"))
    for i in range(6):
        await store.mark_running(f"exec_{i}", 1)
    for i in range(3):
        await store.finish(f"exec_{i}", S.COMPLETED)
    async with store.engine.begin() as conn:
        await conn.execute(sa.text("DROP TABLE wfe_execution_counts"))
        await conn.execute(sa.text("DELETE FROM wfe_schema_migrations WHERE version = 8"))
    await store.migrate()
    assert await counting.check(store) == {
        ("t0", "completed"): 2,
        ("t1", "completed"): 1,
        ("t0", "running"): 1,
        ("t1", "running"): 2,
        ("t0", "pending"): 2,
        ("t1", "pending"): 1,
    }
    await store.mark_running("exec_8", 1)  # and kept from there
    assert (await counting.check(store))[("t0", "running")] == 2
