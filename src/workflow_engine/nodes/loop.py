"""``loop``: run a sub-graph (``body``) once per item of ``items`` (SPEC section 9); the output
is the list of the body's ``output`` node's outputs, in item order.

The node checks its inputs and asks the executor to run the iterations (``ctx.run_body``):
the body is compiled with the plan, and its nodes run with the engine's own node machinery,
their results recorded as ``<loopId>[<index>].<bodyNodeId>``."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from workflow_engine.errors import NodeError
from workflow_engine.nodes.base import NodeContext, NodeInputs, NodeType

DEFAULT_MAX_ITEMS = 1000
LARGEST_MAX_ITEMS = 10_000
"""A workflow may raise ``max_items`` to this, not past it: every iteration is stored."""


class LoopBody(NodeInputs):
    """The sub-graph; validated as a workflow of its own (``definition/validate.py``), with
    paths under ``inputs.body``."""

    nodes: list[dict[str, Any]] = Field(min_length=1)
    edges: list[dict[str, Any]] = Field(default_factory=list)
    output: str = Field(min_length=1, description="The body node whose output is collected.")


class LoopInputs(NodeInputs):
    items: list[Any]
    body: LoopBody
    max_parallel: int = Field(1, ge=1, le=1024, description="Iterations run at once.")
    max_items: int = Field(
        DEFAULT_MAX_ITEMS, ge=0, le=LARGEST_MAX_ITEMS, description="More items fail the node."
    )


class LoopNode(NodeType[LoopInputs]):
    type_name = "loop"
    description = (
        "Runs `body` (a sub-graph) for each of `items` (`item`, `index` in its templates); "
        "outputs the body `output` node's outputs, in item order."
    )
    Inputs = LoopInputs
    subgraph_field = "body"

    async def run(self, ctx: NodeContext, inputs: LoopInputs) -> Any:
        if len(inputs.items) > inputs.max_items:
            raise NodeError(
                f"node '{ctx.node_id}': {len(inputs.items)} items exceed max_items "
                f"({inputs.max_items})",
                retryable=False,
                error_type="limit",
            )
        return await ctx.run_body(inputs.items, inputs.max_parallel)
