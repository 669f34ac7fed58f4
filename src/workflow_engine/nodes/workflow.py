"""``workflow``: run another workflow as a child execution (SPEC section 9): a stored one
(``workflowId`` + ``version``) or an inline ``definition``, with ``inputs``. The output is the
child's result.

The child is an execution of its own (same tenant and queue). The node starts it through
``ctx.children`` (the worker's: ``queue/children.py``) and parks with the ticket
``{waitingFor: "child", childExecutionId}``, holding no worker; when the child ends, its
outcome is delivered to the ticket as an answer (``{status, result, error}``) and the parent
resumes: the node outputs the result, or fails (``child_failed``, ``cancelled``)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from workflow_engine.errors import NodeError
from workflow_engine.nodes.base import ChildRequest, NodeContext, NodeInputs, NodeType

WAITING_FOR_CHILD = "child"
"""The ticket of a node waiting for its child execution."""


class WorkflowInputs(NodeInputs):
    workflow_id: str | None = Field(
        None, alias="workflowId", min_length=1, description="A stored workflow's id."
    )
    version: int | None = Field(None, ge=1, description="Its version (default: the latest).")
    definition: dict[str, Any] | None = Field(
        None, description="An inline definition (its templates are the child's, not rendered)."
    )
    inputs: dict[str, Any] = Field(default_factory=dict, description="The child's inputs.")

    @model_validator(mode="after")
    def _one_source(self) -> WorkflowInputs:
        if (self.workflow_id is None) == (self.definition is None):
            raise ValueError("give either `workflowId` (+ `version`) or `definition`")
        if self.version is not None and self.workflow_id is None:
            raise ValueError("`version` goes with `workflowId`")
        return self


class WorkflowNode(NodeType[WorkflowInputs]):
    type_name = "workflow"
    description = (
        "Runs a stored workflow (`workflowId`, `version`) or an inline `definition` as a "
        "child execution with `inputs`; outputs the child's result."
    )
    Inputs = WorkflowInputs
    verbatim_fields = frozenset({"definition"})

    async def run(self, ctx: NodeContext, inputs: WorkflowInputs) -> Any:
        ticket = ctx.ticket or {}
        child_id = ticket.get("childExecutionId")
        if child_id is not None and "answer" in ticket:
            return _outcome(ctx, str(child_id), ticket["answer"])
        if child_id is None:
            if not ctx.can_park:
                ctx.park({})  # explains that this run cannot wait
            child_id = await ctx.children.launch(
                ChildRequest(
                    parent_execution_id=ctx.execution_id,
                    parent_node_id=ctx.node_id,
                    attempt=ctx.attempt,
                    tenant_id=ctx.tenant_id,
                    workflow_id=inputs.workflow_id,
                    version=inputs.version,
                    definition=inputs.definition,
                    inputs=inputs.inputs,
                )
            )
        ctx.park({"waitingFor": WAITING_FOR_CHILD, "childExecutionId": child_id})


def _outcome(ctx: NodeContext, child_id: str, answer: Any) -> Any:
    outcome = answer if isinstance(answer, dict) else {}
    status = outcome.get("status")
    if status == "completed":
        return outcome.get("result")
    error = outcome.get("error") if isinstance(outcome.get("error"), dict) else {}
    message = (error or {}).get("message") or status or "ended"
    cancelled = status == "cancelled"
    raise NodeError(
        f"node '{ctx.node_id}': child execution {child_id} "
        f"{'was cancelled' if cancelled else 'failed'}: {message}",
        retryable=False,
        error_type="cancelled" if cancelled else "child_failed",
    )
