"""``set_variables``: update execution variables (SPEC section 9); the output is the variables
after the update. The executor gives the node (as every node) the ``vars`` its upstream
setters wrote; the nodes downstream read this node's writes from its output."""

from __future__ import annotations

from typing import Any

from workflow_engine.nodes.base import NodeContext, NodeInputs, NodeType


class SetVariablesInputs(NodeInputs):
    values: dict[str, Any]


class SetVariablesNode(NodeType[SetVariablesInputs]):
    type_name = "set_variables"
    description = (
        "Sets the execution variables named by the keys of `values` (templated); outputs the "
        "variables after the update."
    )
    Inputs = SetVariablesInputs
    pure = True
    sets_variables = True

    async def run(self, ctx: NodeContext, inputs: SetVariablesInputs) -> Any:
        current = ctx.scope.get("vars")
        return {**(current if current is not None else {}), **inputs.values}
