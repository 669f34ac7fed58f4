"""``llm``: one chat completion from an OpenAI-compatible server (SPEC §9).

The server and its key come from a named connection (``ctx.connection``), never from the
definition. ``system``, ``history``, ``messages`` and ``prompt`` make one message list, in that
order. While the answer streams, its pieces are published as ``node.stream`` events
(``{"text": ...}``, ``{"reasoning": ...}`` for a reasoning model's thinking), coalesced. With
``json_schema`` the server is asked for JSON; the answer is parsed and checked against the
schema, a mismatch failing the node with error type ``llm_output`` (retryable: another answer
may fit).

The protocol itself (the SDK, failures, ``Retry-After``) is in ``openai_chat``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from workflow_engine.errors import NodeError
from workflow_engine.nodes.base import NodeContext, NodeInputs, NodeType

if TYPE_CHECKING:
    import jsonschema

    from workflow_engine.nodes.openai_chat import ChatAnswer

MAX_PROBLEMS = 5


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]] = Field(
        description="Text, or content parts ([{type: text, text}, {type: image_url, ...}])."
    )
    name: str | None = None


class LlmInputs(NodeInputs):
    connection: str = Field("default", min_length=1, description="A configured connection.")
    model: str | None = Field(None, min_length=1, description="Default: the connection's.")
    system: str | None = None
    history: list[Message] = Field(default_factory=list, description="Earlier turns.")
    messages: list[Message] = Field(default_factory=list)
    prompt: str | None = Field(None, description="The user's turn, last.")
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1)
    json_schema: dict[str, Any] | None = Field(
        None, description="Ask for JSON matching this schema; the answer is parsed and checked."
    )
    stream: bool = Field(True, description="Publish the answer as it comes (node.stream).")

    @field_validator("json_schema")
    @classmethod
    def _schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            _validator(value)  # (raises ValueError saying what is wrong)
        return value

    @model_validator(mode="after")
    def _some_message(self) -> LlmInputs:
        if not self.message_list():
            raise ValueError("give `prompt`, `messages`, `history` or `system`")
        return self

    def message_list(self) -> list[dict[str, Any]]:
        """``system``, ``history``, ``messages``, ``prompt``: one list, in that order."""
        messages: list[dict[str, Any]] = []
        if self.system is not None:
            messages.append({"role": "system", "content": self.system})
        for message in (*self.history, *self.messages):
            messages.append(message.model_dump(exclude_none=True))
        if self.prompt is not None:
            messages.append({"role": "user", "content": self.prompt})
        return messages


class LlmNode(NodeType[LlmInputs]):
    type_name = "llm"
    description = (
        "Asks an OpenAI-compatible model; output `{text, json?, reasoning?, finishReason, "
        "model, usage}`."
    )
    Inputs = LlmInputs

    async def run(self, ctx: NodeContext, inputs: LlmInputs) -> Any:
        from workflow_engine.nodes.openai_chat import ChatRequest, complete_streaming

        connection = await ctx.connection(inputs.connection)
        model = inputs.model or connection.model
        if model is None:
            raise NodeError(
                f"node '{ctx.node_id}': no `model`, and connection '{connection.name}' names "
                "none (set its __MODEL or the node's `model`)",
                retryable=False,
                error_type="config",
            )
        validator = _validator(inputs.json_schema) if inputs.json_schema is not None else None
        request = ChatRequest(
            model, inputs.message_list(), inputs.temperature, inputs.max_tokens, inputs.json_schema
        )
        publish = ctx.stream if inputs.stream else None
        answer = await complete_streaming(ctx.http, connection, request, publish)
        return _output(ctx.node_id, answer, validator)


def _output(
    node_id: str, answer: ChatAnswer, validator: jsonschema.protocols.Validator | None
) -> dict[str, Any]:
    output: dict[str, Any] = {"text": answer.text}
    if validator is not None:
        output["json"] = _checked_json(node_id, answer.text, validator)
    if answer.reasoning:
        output["reasoning"] = answer.reasoning
    output["finishReason"] = answer.finish_reason
    output["model"] = answer.model
    output["usage"] = answer.usage.to_dict()
    return output


def _checked_json(node_id: str, text: str, validator: jsonschema.protocols.Validator) -> Any:
    from workflow_engine.jsonschemas import schema_problems

    try:
        value = orjson.loads(_unfenced(text))
    except orjson.JSONDecodeError as exc:
        raise NodeError(
            f"node '{node_id}': the answer is not JSON ({exc}): {text[:100]!r}",
            error_type="llm_output",
        ) from None
    problems = schema_problems(validator, value, "json", "llm_output")
    if problems:
        shown = "; ".join(str(p) for p in problems[:MAX_PROBLEMS])
        more = f" (and {len(problems) - MAX_PROBLEMS} more)" if len(problems) > MAX_PROBLEMS else ""
        raise NodeError(
            f"node '{node_id}': the answer does not match json_schema: {shown}{more}",
            error_type="llm_output",
        )
    return value


def _unfenced(text: str) -> str:
    """The JSON in a Markdown code fence, as some models answer even when asked for JSON."""
    stripped = text.strip()
    if stripped.startswith("```") and stripped.endswith("```"):
        stripped = stripped[3:-3]
        first, _, rest = stripped.partition("\n")
        return rest if first.strip().isalpha() or not first.strip() else stripped
    return stripped


def _validator(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    import jsonschema

    from workflow_engine.jsonschemas import compile_schema

    try:
        return compile_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ValueError(f"not a valid JSON Schema: {exc.message}") from None
