"""``delay``: wait a number of seconds."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from workflow_engine.nodes.base import NodeContext, NodeInputs, NodeType


class DelayInputs(NodeInputs):
    seconds: float = Field(ge=0, le=31 * 24 * 3600)


class DelayNode(NodeType[DelayInputs]):
    type_name = "delay"
    description = "Waits `seconds`."
    Inputs = DelayInputs

    async def run(self, ctx: NodeContext, inputs: DelayInputs) -> Any:
        await ctx.sleep(inputs.seconds)
        return {"delayed": inputs.seconds}
