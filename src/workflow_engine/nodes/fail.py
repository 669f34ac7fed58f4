"""``fail``: always fails with ``message`` (for error paths and tests of them)."""

from __future__ import annotations

from typing import Any

from workflow_engine.errors import NodeError
from workflow_engine.nodes.base import NodeContext, NodeInputs, NodeType


class FailInputs(NodeInputs):
    message: str = "failed"


class FailNode(NodeType[FailInputs]):
    type_name = "fail"
    description = "Always fails with `message`."
    Inputs = FailInputs
    pure = True

    async def run(self, ctx: NodeContext, inputs: FailInputs) -> Any:
        raise NodeError(inputs.message, error_type="fail")
