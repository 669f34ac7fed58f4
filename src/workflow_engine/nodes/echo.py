"""``echo``: output its resolved inputs (any keys)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from workflow_engine.nodes.base import NodeContext, NodeType


class AnyInputs(BaseModel):
    model_config = ConfigDict(extra="allow")


class EchoNode(NodeType[AnyInputs]):
    type_name = "echo"
    description = "Outputs its resolved inputs."
    Inputs = AnyInputs
    pure = True

    async def run(self, ctx: NodeContext, inputs: AnyInputs) -> Any:
        return dict(inputs.model_extra or {})
