"""``transform``: shape data with templates; the output is the resolved ``value``."""

from __future__ import annotations

from typing import Any

from workflow_engine.nodes.base import NodeContext, NodeInputs, NodeType


class ValueInputs(NodeInputs):
    value: Any = None


class TransformNode(NodeType[ValueInputs]):
    type_name = "transform"
    description = "Outputs `value` (templated, native types kept)."
    Inputs = ValueInputs
    pure = True

    async def run(self, ctx: NodeContext, inputs: ValueInputs) -> Any:
        return inputs.value
