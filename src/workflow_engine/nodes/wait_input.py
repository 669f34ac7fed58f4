"""``wait_input``: wait for a person's answer (FastGPT's form input, Dify's human input). The
execution parks until ``POST /api/workflow/resume/{executionId}`` delivers an answer valid
against ``schema``; the answer is the node's output. After ``timeout`` seconds without one the
node fails (``on_error: branch`` gives a timeout branch)."""

from __future__ import annotations

from typing import Any

import jsonschema
from pydantic import Field, field_validator

from workflow_engine.errors import NodeTimeoutError
from workflow_engine.jsonschemas import compile_schema, json_path
from workflow_engine.nodes.base import NodeContext, NodeInputs, NodeType
from workflow_engine.vocabulary import from_iso, iso

WAITING_FOR_INPUT = "input"


class WaitInputInputs(NodeInputs):
    prompt: str = Field("", description="What to ask; shown to whoever answers.")
    schema_: dict[str, Any] = Field(
        default_factory=dict,
        alias="schema",
        description="JSON Schema the answer must satisfy ({} accepts anything).",
    )
    timeout: float | None = Field(
        None, gt=0, description="Seconds to wait for the answer; then the node fails."
    )

    @field_validator("schema_")
    @classmethod
    def _valid_schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        try:
            compile_schema(schema)
        except jsonschema.SchemaError as exc:
            where = json_path("schema", exc.path)
            raise ValueError(f"invalid JSON Schema at {where}: {exc.message}") from None
        return schema


class WaitInputNode(NodeType[WaitInputInputs]):
    type_name = "wait_input"
    description = "Parks the execution until an answer valid against `schema` is delivered."
    Inputs = WaitInputInputs

    async def run(self, ctx: NodeContext, inputs: WaitInputInputs) -> Any:
        ticket = ctx.ticket or {}
        if "answer" in ticket:
            return ticket["answer"]
        now = ctx.clock.now()
        deadline = from_iso(ticket.get("timeoutAt"))
        if deadline is None and inputs.timeout is not None:
            deadline = now + inputs.timeout
        if deadline is not None and now >= deadline:
            raise NodeTimeoutError(
                f"node '{ctx.node_id}': no input within {inputs.timeout or 0:g}s",
                retryable=False,
            )
        ctx.park(
            {
                "waitingFor": WAITING_FOR_INPUT,
                "prompt": inputs.prompt,
                "schema": inputs.schema_,
                "timeoutAt": iso(deadline),
            },
            deadline,
        )
