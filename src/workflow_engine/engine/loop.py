"""The engine's side of a ``loop`` node (``ctx.run_body``): each iteration is a run of the
body's compiled plan (a ``WorkflowRun`` of its own) inside the loop node's attempt, sharing
the execution's hooks. Its nodes' results carry the ids ``<loopId>[<index>].<bodyNodeId>``,
so they are stored, announced, checkpointed and restored as any node's: a resumed loop
restores the finished iterations (nothing of theirs runs again) and resumes the others."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from workflow_engine.definition.expressions import Scope
from workflow_engine.engine.results import ExecutionOutcome, add_usage
from workflow_engine.errors import NodeError
from workflow_engine.nodes.base import BODY_CALL, Park
from workflow_engine.plan import NodePlan, WorkflowPlan
from workflow_engine.vocabulary import ExecutionStatus, NodeResult, NodeStatus

if TYPE_CHECKING:
    from workflow_engine.engine.run import WorkflowRun

V = TypeVar("V")

WAITING_FOR_ITERATIONS = "iterations"
"""The ticket of a loop parked because some of its iterations wait."""
ITERATION_CANCELLED = "another iteration failed"


@dataclass(frozen=True, slots=True)
class Iteration:
    """What an iteration's run sees of its loop."""

    prefix: str
    """Put before its nodes' ids: ``<loopId>[<index>].`` (after the loop's own prefix)."""
    scope: Scope
    """The loop node's scope: inputs, vars, execution, and the nodes outside the body."""
    item: Any
    index: int


def by_iteration(values: Mapping[str, V], loop_id: str) -> dict[int, dict[str, V]]:
    """``values`` keyed by ``<loop_id>[<index>].<rest>``, grouped by index and keyed by
    ``<rest>`` (a body node, or a nested loop's iteration node)."""
    head = loop_id + "["
    grouped: dict[int, dict[str, V]] = {}
    for key, value in values.items():
        if not key.startswith(head):
            continue
        index, dot, rest = key[len(head) :].partition("].")
        if dot and index.isdigit():
            grouped.setdefault(int(index), {})[rest] = value
    return grouped


def iteration_of(node_id: str) -> tuple[str, int] | None:
    """The innermost loop and iteration of a body node's id ``<loopId>[<index>].<bodyNodeId>``
    (``("outer[1].inner", 2)`` for ``outer[1].inner[2].fetch``); None for a node outside any
    loop. Plain node ids hold no ``[``."""
    head, dot, _ = node_id.rpartition("].")
    if not dot:
        return None
    loop_id, bracket, index = head.rpartition("[")
    if not bracket or not index.isdigit():
        return None
    return loop_id, int(index)


class LoopBudget:
    """The loop body node results an execution may still record (``Limits.max_loop_results``),
    shared by all its loops: a loop takes ``items x body nodes`` before its first iteration,
    so nested loops cannot multiply past the bound."""

    def __init__(self, remaining: int) -> None:
        self.limit = remaining
        self.remaining = remaining

    def take(self, count: int, loop_id: str) -> None:
        if count > self.remaining:
            raise NodeError(
                f"node '{loop_id}': its iterations would record {count} node results, more "
                f"than the {self.remaining} this execution may still record (all its loops "
                f"together may record {self.limit}; WFE_MAX_LOOP_RESULTS)",
                retryable=False,
                error_type="limit",
            )
        self.remaining -= count


class LoopRunner:
    """Runs a loop node's iterations, at most ``max_parallel`` at a time, on lanes that each
    take the next item; the first iteration to fail stops the others (they end ``cancelled``)
    and fails the loop. Iterations that park leave the others running; then the loop parks."""

    def __init__(self, run: WorkflowRun, plan_node: NodePlan, scope: Scope) -> None:
        assert plan_node.body is not None
        self.run = run
        self.body: WorkflowPlan = plan_node.body
        self.loop_id = plan_node.id
        self.prefix = f"{run.prefix}{plan_node.id}"
        self.scope = scope
        self.restored = by_iteration(run.restored, plan_node.id)
        self.prior = by_iteration(run.prior_attempts, plan_node.id)
        self.active: set[WorkflowRun] = set()
        self.failure: tuple[int, ExecutionOutcome] | None = None
        self.parked: dict[int, ExecutionOutcome] = {}

    async def __call__(self, items: list[Any], max_parallel: int) -> list[Any]:
        self.run.loop_budget.take(len(items) * len(self.body.nodes), self.prefix)
        outputs: list[Any] = [None] * len(items)
        indices = iter(range(len(items)))
        lanes = [
            asyncio.ensure_future(self._lane(indices, items, outputs))
            for _ in range(min(max_parallel, len(items)))
        ]
        try:
            await asyncio.gather(*lanes)
        except BaseException:  # the loop node is cancelled: its iterations with it
            for lane in lanes:
                lane.cancel()
            await asyncio.wait(lanes)
            raise
        if self.failure is not None:
            raise self._failed(*self.failure)
        if self.parked:
            raise self._park()
        return outputs

    async def once(
        self,
        index: int,
        item: Any,
        *,
        restore: bool = False,
        variables: Mapping[str, Any] | None = None,
        call: Mapping[str, Any] | None = None,
    ) -> list[NodeResult]:
        """One run of the body, as run ``index``; its nodes' results in the order they ended.
        ``restore``: what an earlier attempt finished of run ``index`` is restored, and a run
        that waits parks the node (as an iteration of ``__call__``); without it the run starts
        from scratch (the caller, a model choosing tools, may not ask for the same run again)
        and one that waits fails the node. ``variables`` replace the loop's view of those
        variables in the run's scope; ``call`` is what its nodes find under ``BODY_CALL``.
        A run that fails fails the node."""
        self.run.loop_budget.take(len(self.body.nodes), self.prefix)
        scope = self.scope
        if variables is not None:
            scope = {**scope, "vars": {**(scope.get("vars") or {}), **variables}}
        if call is not None:
            scope = {**scope, BODY_CALL: call}
        outcome = await self._iteration(index, item, fresh=not restore, scope=scope)
        self.run.body_usage = add_usage(self.run.body_usage, outcome.usage)
        if outcome.status is ExecutionStatus.WAITING and restore:
            self.parked[index] = outcome
            raise self._park()
        if outcome.status is ExecutionStatus.WAITING:
            raise NodeError(
                f"node '{self.loop_id}': run {index} of its body waits "
                f"({', '.join(outcome.parked)}), which it cannot do",
                retryable=False,
                error_type="unsupported",
            )
        if outcome.status is not ExecutionStatus.COMPLETED:
            raise self._failed(index, outcome)
        return [outcome.nodes[n] for n in outcome.progress.completed_nodes if n in outcome.nodes]

    async def _lane(self, indices: Iterator[int], items: list[Any], outputs: list[Any]) -> None:
        for index in indices:
            if self.failure is not None:
                return
            outcome = await self._iteration(index, items[index])
            self.run.body_usage = add_usage(self.run.body_usage, outcome.usage)
            if outcome.status is ExecutionStatus.COMPLETED:
                result = outcome.nodes[self.body.collect or ""]
                if result.status in (NodeStatus.COMPLETED, NodeStatus.FAILED):
                    outputs[index] = result.output
            elif outcome.status is ExecutionStatus.WAITING:
                self.parked[index] = outcome
            elif self.failure is None:  # failed (or cancelled: only by another's failure)
                self.failure = (index, outcome)
                for run in list(self.active):
                    run.cancel(ITERATION_CANCELLED)

    async def _iteration(
        self, index: int, item: Any, *, fresh: bool = False, scope: Scope | None = None
    ) -> ExecutionOutcome:
        parent = self.run
        run = parent.iteration(
            self.body,
            Iteration(f"{self.prefix}[{index}].", scope or self.scope, item, index),
            restored={} if fresh else self.restored.get(index, {}),
            prior_attempts={} if fresh else self.prior.get(index, {}),
        )
        self.active.add(run)
        try:
            return await run.wait()
        finally:
            self.active.discard(run)

    def _failed(self, index: int, outcome: ExecutionOutcome) -> NodeError:
        error = outcome.error
        where = f"{self.prefix}[{index}]"
        if error is not None and error.node_id is not None:
            where = f"{where}.{error.node_id}"
        message = error.message if error is not None else "iteration failed"
        return NodeError(
            f"node '{self.loop_id}': iteration {index} failed at '{where}': {message}",
            retryable=False,
            error_type=error.type if error is not None else "node_error",
        )

    def _park(self) -> Park:
        """Some iterations wait and none failed: the loop parks until the first of them wants
        to resume (None: an answer wakes the execution)."""
        times = [o.resume_at for o in self.parked.values() if o.resume_at is not None]
        resume_at = min(times) if times else None
        waiting = [
            f"{self.prefix}[{i}].{node}"
            for i, outcome in sorted(self.parked.items())
            for node in outcome.parked
        ]
        return Park({"waitingFor": WAITING_FOR_ITERATIONS, "nodes": waiting}, resume_at)
