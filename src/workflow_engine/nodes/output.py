"""``output``: the value that becomes the execution's result."""

from __future__ import annotations

from typing import Any

from workflow_engine.nodes.base import NodeContext, NodeType
from workflow_engine.nodes.transform import ValueInputs


class OutputNode(NodeType[ValueInputs]):
    type_name = "output"
    description = "Outputs `value`; it also becomes the execution result."
    Inputs = ValueInputs

    async def run(self, ctx: NodeContext, inputs: ValueInputs) -> Any:
        return inputs.value
