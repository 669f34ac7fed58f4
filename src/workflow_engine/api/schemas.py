"""Request bodies, camelCase on the wire (SPEC section 4)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from workflow_engine.queue.submit import MAX_PRIORITY


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)


class RepeatOptions(Body):
    cron: str | None = None
    every: int | None = Field(None, gt=0, description="Milliseconds between runs.")
    tz: str | None = None
    limit: int | None = Field(None, gt=0)


class ExecuteRequest(Body):
    workflow_definition: dict[str, Any]
    inputs: dict[str, Any] = Field(default_factory=dict)
    user_id: str | None = Field(None, min_length=1, max_length=200)
    type: Literal["realtime", "workflow", "scheduled", "background"] = "workflow"
    priority: int = Field(0, ge=0, le=MAX_PRIORITY, description="1 is the highest; 0: none.")
    delay: int = Field(0, ge=0, description="Milliseconds before the execution may start.")
    repeat: RepeatOptions | None = None
    client_id: str | None = Field(None, min_length=1, max_length=200)
    metadata: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)
    callback_url: str | None = None


class ResumeRequest(Body):
    node_id: str | None = Field(None, min_length=1, description="Needed when several wait.")
    input: Any = Field(description="The answer; it must satisfy the node's `schema`.")


class RerunRequest(Body):
    from_node: str = Field(min_length=1, description="Run this node and everything after it.")
    inputs: dict[str, Any] | None = Field(None, description="Default: the original inputs.")
