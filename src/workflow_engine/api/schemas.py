"""Request bodies, camelCase on the wire (SPEC section 4), and the value bounds every JSON
body is held to (SPEC section 8)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from workflow_engine.errors import InvalidRequest
from workflow_engine.jsonvalues import MAX_DEPTH, value_problems
from workflow_engine.queue.submit import MAX_PRIORITY

DAY_MS = 86_400_000
MAX_DELAY_MS = 366 * DAY_MS
"""A request's ``delay``: more is a mistake (or an execution pending for ever)."""
MAX_EVERY_MS = 366 * DAY_MS
MAX_REPEAT_LIMIT = 100_000_000
"""Ticks of one schedule; omit ``limit`` for a schedule without an end."""


async def bounded_body(request: Request) -> None:
    """Refuse (422, each problem by its path) a JSON body holding a value that could not be
    stored or published: a non-finite number, an integer beyond 64 bits, a lone surrogate,
    nesting deeper than ``MAX_DEPTH`` in a field. A dependency of the routes: FastAPI has
    parsed the body (and kept it on the request) before dependencies run, and checks it
    against the route's model after them."""
    if not await request.body():
        return
    try:
        body = await request.json()
    except (ValueError, RecursionError):
        return  # not JSON: the route's own parsing answers that
    # the body itself is one level more than its fields
    problems = value_problems(body, "", max_depth=MAX_DEPTH + 1)
    if problems:
        raise InvalidRequest(problems)


class Body(BaseModel):
    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, allow_inf_nan=False
    )


def examples(*values: dict[str, Any]) -> ConfigDict:
    """A request body's examples, for the OpenAPI document (the rest of ``Body``'s
    configuration is inherited)."""
    return ConfigDict(json_schema_extra={"examples": list(values)})


_ORDER_TOTAL = {
    "id": "order_total",
    "nodes": [
        {"id": "order", "type": "transform", "inputs": {"value": "{{ inputs.items }}"}},
        {
            "id": "total",
            "type": "output",
            "inputs": {"value": {"total": "{{ nodes.order.output | sum(attribute='price') }}"}},
        },
    ],
    "edges": [{"source": "order", "target": "total"}],
}


class CleanRequest(Body):
    model_config = examples({"state": "completed", "graceMs": 3_600_000, "limit": 1000})

    state: Literal["completed", "failed", "delayed", "wait"] = Field(
        description="The jobs to remove: `wait` includes prioritized and paused jobs; "
        "the executions of removed `wait`/`delayed` jobs are cancelled."
    )
    grace_ms: int = Field(0, ge=0, description="Keep the jobs younger than this.")
    limit: int = Field(1000, gt=0, le=10_000, description="Remove at most this many.")


class RepeatOptions(Body):
    model_config = examples({"cron": "0 6 * * 1-5", "tz": "Europe/Berlin"}, {"every": 60_000})

    cron: str | None = None
    every: int | None = Field(
        None,
        gt=0,
        le=MAX_EVERY_MS,
        description="Milliseconds between runs (at least the server's WFE_MIN_REPEAT_MS).",
    )
    tz: str | None = None
    limit: int | None = Field(None, gt=0, le=MAX_REPEAT_LIMIT)


class ExecuteRequest(Body):
    model_config = examples(
        {
            "workflowDefinition": _ORDER_TOTAL,
            "inputs": {"items": [{"sku": "A-1", "price": 19.9}, {"sku": "B-7", "price": 40}]},
            "clientId": "web-7f3a",
            "metadata": {"orderId": "A-1042"},
            "idempotencyKey": "order-A-1042",
        },
        {
            "workflowId": "daily_report",
            "version": 4,
            "inputs": {"day": "today"},
            "repeat": {"cron": "0 6 * * 1-5", "tz": "Europe/Berlin"},
        },
    )

    # exactly one of the two (the route says which is missing or extra, by its path)
    workflow_definition: dict[str, Any] | None = None
    workflow_id: str | None = Field(
        None, min_length=1, max_length=200, description="A stored workflow (SPEC section 10)."
    )
    version: int | None = Field(
        None, ge=1, description="The stored workflow's version; default: its latest."
    )
    inputs: dict[str, Any] = Field(default_factory=dict)
    user_id: str | None = Field(None, min_length=1, max_length=200)
    type: Literal["realtime", "workflow", "scheduled", "background"] = "workflow"
    queue: str | None = Field(
        None,
        min_length=1,
        max_length=32,
        description="A queue by business type (WFE_NAMED_QUEUES), or a class; default: the "
        "class of `type`. `type`, when given too, must be the named queue's class.",
    )
    priority: int = Field(0, ge=0, le=MAX_PRIORITY, description="1 is the highest; 0: none.")
    delay: int = Field(
        0, ge=0, le=MAX_DELAY_MS, description="Milliseconds before the execution may start."
    )
    repeat: RepeatOptions | None = None
    client_id: str | None = Field(None, min_length=1, max_length=200)
    metadata: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)
    callback_url: str | None = None
    format: Literal["native", "fastgpt"] | None = Field(
        None,
        description="`fastgpt`: workflowDefinition is a FastGPT export, run as FastGPT runs it "
        "(SPEC section 13); default: detected.",
    )


class ResumeRequest(Body):
    model_config = examples({"nodeId": "approve", "input": {"approved": True, "note": "ok"}})

    node_id: str | None = Field(None, min_length=1, description="Needed when several wait.")
    input: Any = Field(description="The answer; it must satisfy the node's `schema`.")


class RerunRequest(Body):
    model_config = examples({"fromNode": "charge", "inputs": {"orderId": "A-1042"}})

    from_node: str = Field(min_length=1, description="Run this node and everything after it.")
    inputs: dict[str, Any] | None = Field(None, description="Default: the original inputs.")
