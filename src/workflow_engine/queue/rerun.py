"""Rerun from a node (Dify's and n8n's most requested recovery feature): a new execution of
the same definition that reuses the recorded results of every node upstream of ``fromNode``
and runs the rest."""

from __future__ import annotations

from typing import Any

from workflow_engine.errors import InvalidRequest, Problem
from workflow_engine.plan import PlanCache
from workflow_engine.queue.submit import Conflict, NotFound, Submission, Submitted, Submitter
from workflow_engine.store.base import StateStore
from workflow_engine.store.records import PARENT_KEY
from workflow_engine.vocabulary import ACTIVE_STATUSES, NodeResult, NodeStatus


def reusable(result: NodeResult | None, on_error: str) -> bool:
    """A recorded result a rerun can stand on: completed, skipped, or failed in a way the
    graph went on from."""
    if result is None:
        return False
    if result.status is NodeStatus.FAILED:
        return on_error != "fail"
    return result.status in (NodeStatus.COMPLETED, NodeStatus.SKIPPED)


class Rerunner:
    def __init__(self, store: StateStore, plans: PlanCache, submitter: Submitter) -> None:
        self.store = store
        self.plans = plans
        self.submitter = submitter

    async def rerun(
        self,
        execution_id: str,
        tenant_id: str | None,
        from_node: str,
        inputs: dict[str, Any] | None = None,
    ) -> Submitted:
        """``NotFound``; ``InvalidRequest`` for a node the workflow does not have; ``Conflict``
        while the execution is still active, or when a node upstream has no usable result."""
        record = await self.store.get(execution_id, tenant_id, with_definition=True)
        if record is None or record.definition is None:
            raise NotFound(f"execution {execution_id} not found")
        plan = self.plans.get(record.definition)
        if from_node not in plan.nodes:
            raise InvalidRequest(
                [Problem("fromNode", f"the workflow has no node {from_node!r}", "unknown_node")]
            )
        if record.status in ACTIVE_STATUSES:
            raise Conflict(f"execution {execution_id} is {record.status}; rerun it once it ends")
        results = {r.node_id: r for r in await self.store.node_results(execution_id)}
        upstream = plan.upstream_of(from_node)
        unusable = [
            n for n in upstream if not reusable(results.get(n), plan.nodes[n].definition.on_error)
        ]
        if unusable:
            raise Conflict(
                f"execution {execution_id} has no usable result for node(s) upstream of "
                f"{from_node}: {', '.join(unusable)}"
            )
        submission = Submission(
            definition=record.definition,
            inputs=inputs if inputs is not None else record.inputs or {},
            tenant_id=record.tenant_id,
            queue=record.queue,
            priority=record.priority,
            client_id=record.client_id,
            # a rerun is an execution of its own: not a child of the first one's parent
            metadata={
                **{k: v for k, v in record.metadata.items() if k != PARENT_KEY},
                "rerunOf": execution_id,
                "fromNode": from_node,
            },
            restored=tuple(results[n].to_dict() for n in upstream),
            workflow_version=record.workflow_version,  # the very version it ran, even deleted
        )
        return await self.submitter.submit(submission)
