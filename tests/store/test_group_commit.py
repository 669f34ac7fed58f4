"""The group-commit machinery on its own: pure asyncio, over an in-memory ``apply`` (a dict of
statuses that checks each transition as a backend does). The contract suite runs the same
machinery against every real backend."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from workflow_engine.store.errors import StoreUnavailable
from workflow_engine.store.group_commit import GroupCommit
from workflow_engine.store.writes import SaveNode, SaveProgress, Transition, Write
from workflow_engine.vocabulary import ExecutionStatus, NodeResult, NodeStatus

S = ExecutionStatus


class Ledger:
    """Executions in a dict. ``apply`` applies a batch all or nothing and says, per write,
    whether it took; it can be held (``gate``) or made to fail once (``fail_with``)."""

    def __init__(self, **statuses: ExecutionStatus) -> None:
        self.statuses = dict(statuses)
        self.nodes: dict[str, list[str]] = {}
        self.batches: list[list[Write]] = []
        self.started = asyncio.Event()
        """Set when a batch reaches ``apply``."""
        self.gate: asyncio.Event | None = None
        """When given, a batch waits for it before it is applied."""
        self.fail_with: Exception | None = None

    async def apply(self, writes: Sequence[Write]) -> list[bool]:
        self.batches.append(list(writes))
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_with is not None:
            error, self.fail_with = self.fail_with, None
            raise error
        return [self._apply(op) for op in writes]

    def _apply(self, op: Write) -> bool:
        if isinstance(op, Transition):
            if self.statuses.get(op.execution_id) not in op.allowed_from:
                return False
            self.statuses[op.execution_id] = op.to
        elif isinstance(op, SaveNode):
            self.nodes.setdefault(op.execution_id, []).append(op.result.node_id)
        return True

    def sizes(self) -> list[int]:
        return [len(batch) for batch in self.batches]


def node(execution_id: str, node_id: str) -> SaveNode:
    return SaveNode(execution_id, NodeResult(node_id, "echo", None, NodeStatus.COMPLETED))


async def test_writes_submitted_together_share_one_batch_and_each_learns_its_result() -> None:
    ledger = Ledger(run=S.RUNNING, done=S.COMPLETED)
    commits = GroupCommit(ledger.apply)
    writes: list[Write] = [
        node("run", "a"),
        SaveProgress("run", {"percentage": 50}),
        Transition("run", S.COMPLETED),
        Transition("done", S.FAILED),  # final already: refused
        Transition("ghost", S.CANCELLED),  # does not exist
    ]
    futures = [commits.submit(op) for op in writes]
    assert await asyncio.gather(*futures) == [True, True, True, False, False]
    assert ledger.batches == [writes]  # one batch, in the order submitted
    assert (commits.batches, commits.batched_writes) == (1, 5)
    assert ledger.statuses == {"run": S.COMPLETED, "done": S.COMPLETED}


async def test_writes_submitted_while_a_batch_commits_go_into_the_next_one_in_order() -> None:
    ledger = Ledger(a=S.PENDING, b=S.PENDING, c=S.PENDING)
    ledger.gate = asyncio.Event()
    commits = GroupCommit(ledger.apply)
    first = commits.submit(Transition("a", S.RUNNING))
    await ledger.started.wait()
    later = [
        commits.submit(Transition("b", S.RUNNING)),
        commits.submit(Transition("b", S.COMPLETED)),  # after its start, in the same batch
        commits.submit(Transition("c", S.COMPLETED)),  # pending -> completed: no
    ]
    ledger.gate.set()
    assert await first
    assert await asyncio.gather(*later) == [True, True, False]
    assert ledger.sizes() == [1, 3]
    assert ledger.statuses == {"a": S.RUNNING, "b": S.COMPLETED, "c": S.PENDING}


async def test_max_batch_splits_the_writes_into_batches_in_order() -> None:
    ledger = Ledger()
    commits = GroupCommit(ledger.apply, max_batch=3)
    writes = [node("exec_1", f"n{i}") for i in range(7)]
    assert all(await asyncio.gather(*(commits.submit(op) for op in writes)))
    assert ledger.sizes() == [3, 3, 1]
    assert [op for batch in ledger.batches for op in batch] == writes
    assert ledger.nodes == {"exec_1": [f"n{i}" for i in range(7)]}
    assert (commits.batches, commits.batched_writes) == (3, 7)


async def test_a_failed_batch_fails_the_writes_queued_behind_it() -> None:
    ledger = Ledger(a=S.RUNNING, b=S.RUNNING)
    ledger.gate = asyncio.Event()
    commits = GroupCommit(ledger.apply)
    lost = commits.submit(node("a", "n1"))
    await ledger.started.wait()
    behind = [commits.submit(Transition("b", S.COMPLETED)), commits.submit(node("b", "n2"))]
    ledger.fail_with = StoreUnavailable("the database blinked")
    ledger.gate.set()
    for future in [lost, *behind]:
        with pytest.raises(StoreUnavailable, match="the database blinked"):
            await future
    assert ledger.sizes() == [1]  # what was queued behind it never reached the database
    assert ledger.statuses == {"a": S.RUNNING, "b": S.RUNNING}
    assert ledger.nodes == {}


async def test_an_execution_whose_node_result_was_lost_fails_its_writes_until_reset() -> None:
    ledger = Ledger(a=S.RUNNING, b=S.RUNNING)
    commits = GroupCommit(ledger.apply)
    ledger.fail_with = StoreUnavailable("the database blinked")
    failed = [
        commits.submit(node("a", "n1")),  # a's record is now incomplete
        commits.submit(Transition("b", S.WAITING)),  # a transition: its caller learns of it
    ]
    for future in failed:
        with pytest.raises(StoreUnavailable):
            await future
    with pytest.raises(StoreUnavailable, match=r"an earlier write of a failed: .*blinked"):
        await commits.submit(Transition("a", S.COMPLETED))  # no outcome without its node
    assert len(ledger.batches) == 1  # refused at once, not sent
    assert await commits.submit(Transition("b", S.COMPLETED))  # b is not broken
    commits.reset("a")  # the next attempt starts from what is stored
    assert await commits.submit(node("a", "n1"))
    assert await commits.submit(Transition("a", S.COMPLETED))
    assert ledger.statuses == {"a": S.COMPLETED, "b": S.COMPLETED}
    assert ledger.nodes == {"a": ["n1"]}


async def test_lost_progress_breaks_the_execution_too() -> None:
    ledger = Ledger(a=S.RUNNING)
    commits = GroupCommit(ledger.apply)
    ledger.fail_with = StoreUnavailable("the database blinked")
    with pytest.raises(StoreUnavailable):
        await commits.submit(SaveProgress("a", {"percentage": 50}))
    with pytest.raises(StoreUnavailable, match="an earlier write of a failed"):
        await commits.submit(Transition("a", S.COMPLETED))


async def test_flush_waits_for_every_write_submitted_so_far() -> None:
    ledger = Ledger(a=S.RUNNING)
    ledger.gate = asyncio.Event()
    commits = GroupCommit(ledger.apply)
    await commits.flush()  # nothing submitted: returns at once
    first = commits.submit(node("a", "n1"))
    await ledger.started.wait()
    second = commits.submit(Transition("a", S.COMPLETED))  # the next batch
    flushing = asyncio.ensure_future(commits.flush())
    ledger.gate.set()
    await flushing
    assert first.done()
    assert second.done()
    assert ledger.sizes() == [1, 1]
    assert ledger.statuses == {"a": S.COMPLETED}
