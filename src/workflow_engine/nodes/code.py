"""``code``: a function ``main`` in Python (called as ``main(**inputs)``, as Dify does) or
JavaScript (``main(inputs)``, may be async, as FastGPT does), run in a sandbox process from the
executor's warm pool (``workflow_engine.sandbox``). Its JSON return value is the output; what it
prints becomes ``node.log`` events. Sandbox violations fail the node with type ``sandbox`` (or
``timeout``), the code's own errors with ``code_error``; none is retried (the same code fails
the same way), except a sandbox that could not start."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from workflow_engine.errors import NodeError
from workflow_engine.nodes.base import NodeContext, NodeInputs, NodeType
from workflow_engine.sandbox.errors import CodeRunError, SandboxUnavailable

MAX_CODE_CHARS = 256 * 1024


class CodeInputs(NodeInputs):
    language: Literal["python", "javascript"]
    code: str = Field(
        min_length=1, max_length=MAX_CODE_CHARS, description="Source that defines `main`."
    )
    inputs: dict[str, Any] = Field(
        default_factory=dict, description="Passed to `main` (templated)."
    )


class CodeNode(NodeType[CodeInputs]):
    type_name = "code"
    description = "Runs `main` in a sandboxed Python or JavaScript process; output its result."
    Inputs = CodeInputs

    async def run(self, ctx: NodeContext, inputs: CodeInputs) -> Any:
        try:
            return await ctx.sandboxes().run(inputs.language, inputs.code, inputs.inputs, ctx.log)
        except SandboxUnavailable as exc:
            raise NodeError(f"node '{ctx.node_id}': {exc}", error_type="sandbox") from exc
        except CodeRunError as exc:
            raise NodeError(
                f"node '{ctx.node_id}' ({inputs.language}): {exc}",
                retryable=False,
                error_type=exc.error_type,
            ) from exc
