"""Child executions of ``workflow`` nodes (SPEC section 9).

A child is an execution of its own, in its parent's tenant and queue; its metadata carries the
link to its parent under ``PARENT_KEY`` (``{executionId, nodeId, depth}``), which its context
shows as ``parentExecutionId`` and ``parentNodeId`` (``store/records.py``). The parent's node
parks on the ticket ``{waitingFor: "child", childExecutionId}``. When the child ends, its
outcome ``{status, result, error}`` is delivered to that ticket as an answer and the parent's
delayed job is promoted, as ``POST /resume`` does for ``wait_input``. Either side may end
first: the child delivers after its final status is stored, the parent looks for ended
children after it parked (``deliver_finished_children``), and the store takes one answer
only."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from workflow_engine.errors import DefinitionError, InputValidationError, NodeError
from workflow_engine.monitor.logging import get_logger
from workflow_engine.nodes.base import ChildRequest
from workflow_engine.nodes.workflow import WAITING_FOR_CHILD
from workflow_engine.queue.bullmq_adapter import promote_job
from workflow_engine.queue.fairness import TenantBusy, queue_priority
from workflow_engine.queue.queues import JOB_NAME, QueueSet
from workflow_engine.queue.submit import (
    Conflict,
    NotFound,
    QueueFull,
    Submission,
    Submitter,
    job_data,
)
from workflow_engine.queue.workflows import WorkflowLibrary
from workflow_engine.store.base import StateStore
from workflow_engine.store.records import PARENT_KEY, ExecutionRecord
from workflow_engine.vocabulary import FINAL_STATUSES, NodeResult, NodeStatus

log = get_logger(__name__)

__all__ = [
    "PARENT_KEY",
    "ChildLauncher",
    "ParentLink",
    "ancestors_of",
    "deliver_finished_children",
    "notify_parent",
    "parent_link",
    "waiting_children",
    "wake",
    "wake_if_children_ended",
]

CHILD_KEY_PREFIX: Final = "wfe-child:"


@dataclass(frozen=True, slots=True)
class ParentLink:
    execution_id: str
    node_id: str
    depth: int
    ancestors: tuple[tuple[str, str], ...]
    """(execution id, node id) of the parent's node, then of the grandparent's node whose
    child the parent is, and so on up to the top: the streams that get a copy of this
    execution's node events."""


def parent_link(metadata: Mapping[str, Any] | None) -> ParentLink | None:
    """The parent of an execution with this metadata; None for a top-level one."""
    link = (metadata or {}).get(PARENT_KEY)
    if not isinstance(link, dict):
        return None
    execution_id, node_id, depth = link.get("executionId"), link.get("nodeId"), link.get("depth")
    if not isinstance(execution_id, str) or not isinstance(node_id, str):
        return None
    ancestors = tuple(
        (pair[0], pair[1])
        for pair in link.get("ancestors") or [[execution_id, node_id]]
        if isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, str) for v in pair)
    )
    return ParentLink(execution_id, node_id, depth if isinstance(depth, int) else 1, ancestors)


def ancestors_of(metadata: Mapping[str, Any] | None) -> tuple[tuple[str, str], ...]:
    """The streams a child's node events are copied to (``ParentLink.ancestors``); none for
    a top-level execution."""
    link = parent_link(metadata)
    return link.ancestors if link is not None else ()


def waiting_children(results: Iterable[NodeResult]) -> dict[str, str]:
    """Node id -> child execution id, for the nodes waiting for a child (no answer yet)."""
    found: dict[str, str] = {}
    for result in results:
        ticket = result.output
        if (
            result.status is NodeStatus.WAITING
            and isinstance(ticket, dict)
            and ticket.get("waitingFor") == WAITING_FOR_CHILD
            and isinstance(ticket.get("childExecutionId"), str)
            and "answer" not in ticket
        ):
            found[result.node_id] = ticket["childExecutionId"]
    return found


def outcome_of(record: ExecutionRecord) -> dict[str, Any]:
    return {"status": str(record.status), "result": record.result, "error": record.error}


async def wake(store: StateStore, queues: QueueSet, queue_name: str, execution_id: str) -> None:
    """Promote a parked execution's delayed job. If it is active (its worker is parking it
    right now), that worker looks for answers once the job is delayed. If it is gone,
    enqueue it again."""
    queue = queues[queue_name]
    try:
        await promote_job(queue, execution_id)
        return
    except Exception:  # not delayed: active, waiting, or gone
        pass
    if await queue.getJobState(execution_id) != "unknown":
        return
    record = await store.get(execution_id, with_definition=True)
    if record is not None:
        log.warning("a parked execution had no job: enqueued again", executionId=execution_id)
        await queue.add(JOB_NAME, job_data(record), {"jobId": execution_id})


async def notify_parent(store: StateStore, queues: QueueSet, child: ExecutionRecord) -> bool:
    """An execution ended: if it is a child, deliver its outcome to its parent's node and wake
    the parent. Whether an answer was delivered (False: not a child, the parent does not wait
    for it, or it has the answer already)."""
    link = parent_link(child.metadata)
    if link is None or child.status not in FINAL_STATUSES:
        return False
    # the parent's own ticket must name this child (metadata comes from a client too)
    results = await store.node_results(link.execution_id)
    if (
        waiting_children(r for r in results if r.node_id == link.node_id).get(link.node_id)
        != child.execution_id
    ):
        return False
    if not await store.answer(link.execution_id, link.node_id, outcome_of(child)):
        return False
    parent = await store.get(link.execution_id)
    await wake(
        store, queues, parent.queue if parent is not None else child.queue, link.execution_id
    )
    log.info(
        "child outcome delivered",
        executionId=link.execution_id,
        nodeId=link.node_id,
        childExecutionId=child.execution_id,
        status=str(child.status),
    )
    return True


async def deliver_finished_children(
    store: StateStore, execution_id: str, results: Iterable[NodeResult]
) -> bool:
    """The parent's side, once it is parked: deliver the outcome of the children that ended
    before it parked (their own delivery found it still running). Whether any was."""
    delivered = False
    for node_id, child_id in waiting_children(results).items():
        child = await store.get(child_id)
        if child is not None and child.status in FINAL_STATUSES:
            delivered |= await store.answer(execution_id, node_id, outcome_of(child))
        elif child is None:  # removed (retention): it cannot tell any more
            gone = {"status": "failed", "result": None, "error": {"message": "child not found"}}
            delivered |= await store.answer(execution_id, node_id, gone)
    return delivered


async def wake_if_children_ended(
    store: StateStore, queues: QueueSet, parent: ExecutionRecord
) -> bool:
    """A parked execution left waiting for a while (recovery's sweep): if a child it waits
    for has ended and its outcome did not reach the parent (the store or Redis was down when
    the child ended), or reached it but the wake-up did not, deliver it and wake the parent.
    Whether it was woken."""
    results = await store.node_results(parent.execution_id)
    answered = any(
        r.status is NodeStatus.WAITING
        and isinstance(r.output, dict)
        and r.output.get("waitingFor") == WAITING_FOR_CHILD
        and "answer" in r.output
        for r in results
    )
    if not (await deliver_finished_children(store, parent.execution_id, results) or answered):
        return False
    await wake(store, queues, parent.queue, parent.execution_id)
    log.warning("a parent's wake-up was lost: woken again", executionId=parent.execution_id)
    return True


class ChildLauncher:
    """Starts the children of ``workflow`` nodes (``ctx.children``) through the same
    ``Submitter`` as the API: a child is admitted by its tenant's gate (counted among its
    tenant's executions in flight, rate-limited, ranked; not refused at the cap, which its
    running parent would otherwise hold against it),
    recorded, announced and enqueued in the parent's queue. Its idempotency key is derived from
    the parent node's attempt, so a parent resumed before it parked gets the same child."""

    def __init__(self, submitter: Submitter, max_depth: int) -> None:
        self.submitter = submitter
        self.store = submitter.store
        self.queues = submitter.queues
        self.plans = submitter.plans
        self.max_depth = max_depth
        self.library = WorkflowLibrary(submitter.store, submitter.plans)

    async def launch(self, request: ChildRequest) -> str:
        node = request.parent_node_id
        parent = await self.store.get(request.parent_execution_id)
        if parent is None:
            raise NodeError(f"node '{node}': its execution is gone", error_type="not_found")
        above = parent_link(parent.metadata)
        depth = (above.depth if above is not None else 0) + 1
        if depth > self.max_depth:
            raise NodeError(
                f"node '{node}': a child workflow at depth {depth} exceeds the nesting limit "
                f"(WFE_MAX_DEPTH={self.max_depth})",
                retryable=False,
                error_type="depth_limit",
            )
        definition, version = await self._definition(request)
        ancestors = [[parent.execution_id, node], *(above.ancestors if above else ())]
        metadata = {
            PARENT_KEY: {
                "executionId": parent.execution_id,
                "nodeId": node,
                "depth": depth,
                "ancestors": [list(pair) for pair in ancestors],
            }
        }
        submission = Submission(
            definition=definition,
            inputs=request.inputs,
            tenant_id=parent.tenant_id,
            queue=parent.queue,
            priority=parent.priority,
            metadata=metadata,
            idempotency_key=_child_key(request),
            workflow_version=version,
            capped=False,
        )
        try:
            submitted = await self.submitter.submit(submission)
        except (DefinitionError, InputValidationError) as exc:
            problems = "; ".join(f"{p.path}: {p.message}" for p in exc.problems)
            raise NodeError(
                f"node '{node}': {exc}: {problems}",
                retryable=False,
                error_type="invalid_definition"
                if isinstance(exc, DefinitionError)
                else "invalid_input",
            ) from exc
        except TenantBusy as exc:  # the tenant's rate counts children too
            raise NodeError(
                f"node '{node}': the child execution was not admitted: {exc}",
                retryable=True,
                error_type="rate_limited",
                retry_after=exc.retry_after_s,
            ) from exc
        except QueueFull as exc:
            raise NodeError(
                f"node '{node}': the child execution was not started: {exc}",
                retryable=True,
                error_type="queue_full",
            ) from exc
        except Conflict as exc:
            if exc.execution_id is None:
                raise NodeError(f"node '{node}': {exc}", error_type="conflict") from exc
            # the same node attempt asked before (the parent resumed before it parked) with
            # inputs that render differently now: its child is the one started then
            await self._enqueue_lost(exc.execution_id)
            return exc.execution_id
        if not submitted.created:
            await self._enqueue_lost(submitted.execution_id)
        log.info(
            "child execution started",
            executionId=parent.execution_id,
            nodeId=node,
            childExecutionId=submitted.execution_id,
            depth=depth,
            created=submitted.created,
        )
        return submitted.execution_id

    async def _enqueue_lost(self, child_id: str) -> None:
        """The same child again (the parent resumed before it parked). If the process that
        created it died before its job was added, add it now."""
        record = await self.store.get(child_id, with_definition=True)
        if record is None or record.status in FINAL_STATUSES:
            return
        queue = self.queues[record.queue]
        if await queue.getJobState(child_id) == "unknown":
            await queue.add(
                JOB_NAME,
                job_data(record),
                {"jobId": child_id, "priority": queue_priority(record.priority, 0)},
            )

    async def _definition(self, request: ChildRequest) -> tuple[dict[str, Any], int | None]:
        if request.definition is not None:
            return request.definition, None
        assert request.workflow_id is not None  # the node's inputs say one or the other
        try:
            return await self.library.runnable(
                request.tenant_id, request.workflow_id, request.version
            )
        except NotFound as exc:
            raise NodeError(
                f"node '{request.parent_node_id}': {exc}", retryable=False, error_type="not_found"
            ) from exc

    async def notify_parent(self, child: ExecutionRecord) -> bool:
        return await notify_parent(self.store, self.queues, child)

    async def deliver_finished_children(
        self, execution_id: str, results: Iterable[NodeResult]
    ) -> bool:
        return await deliver_finished_children(self.store, execution_id, results)


def _child_key(request: ChildRequest) -> str:
    """The child's idempotency key: one child per parent node attempt."""
    raw = f"{request.parent_execution_id}\n{request.parent_node_id}\n{request.attempt}"
    return CHILD_KEY_PREFIX + hashlib.sha256(raw.encode()).hexdigest()[:40]
