"""What a ``waiting`` execution waits for from a person: its ``wait_input`` nodes (loop
iterations' too, by their iteration id), read from the node results of its status, and an
answer shaped like a node's ``schema`` to start from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workflow_engine.client.models import Status

WAITING_FOR_INPUT = "input"
EXAMPLE_DEPTH = 6
"""Deeper schemas (or ``$ref`` cycles) end in a placeholder string."""


@dataclass(frozen=True, slots=True)
class InputWait:
    """A node parked until ``POST /api/workflow/resume/{executionId}`` answers it."""

    node_id: str
    prompt: str | None
    schema: dict[str, Any]
    timeout_at: str | None = None


def input_waits(status: Status) -> list[InputWait]:
    """The nodes of a ``waiting`` execution that wait for an answer (``status`` fetched with
    ``nodes=True``); empty when it waits only for time or for a child execution."""
    if status.context.status != "waiting":
        return []
    waits = []
    for node in status.nodes or []:
        output = node.output if isinstance(node.output, dict) else {}
        asks = output.get("waitingFor") == WAITING_FOR_INPUT and "answer" not in output
        if node.status == "waiting" and asks:  # (an answer is in its ticket until it resumes)
            schema = output.get("schema")
            waits.append(
                InputWait(
                    node_id=node.node_id,
                    prompt=output.get("prompt"),
                    schema=schema if isinstance(schema, dict) else {},
                    timeout_at=output.get("timeoutAt"),
                )
            )
    return waits


def example_answer(schema: Any, depth: int = 0) -> Any:
    """A value of the shape ``schema`` describes (its ``default``, ``const`` or first ``enum``
    value when it names one), to edit into the real answer."""
    if not isinstance(schema, dict) or depth > EXAMPLE_DEPTH:
        return "..."
    for key in ("default", "const"):
        if key in schema:
            return schema[key]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("oneOf", "anyOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return example_answer(schema[key][0], depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            return {}
        return {name: example_answer(sub, depth + 1) for name, sub in properties.items()}
    if kind == "array":
        items = schema.get("items")
        return [example_answer(items, depth + 1)] if schema.get("minItems") else []
    simple: dict[str, Any] = {
        "boolean": True,
        "integer": schema.get("minimum", 0),
        "number": schema.get("minimum", 0),
        "null": None,
    }
    return simple.get(kind, "...") if isinstance(kind, str) else "..."
