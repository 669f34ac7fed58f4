"""Pydantic models of a workflow definition (SPEC section 2). Structure only: graph rules live in
``validate.py``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

NODE_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
ERROR_BRANCH = "error"

OnError = Literal["fail", "continue", "branch"]
VariableName = Annotated[str, Field(pattern=NODE_ID_PATTERN)]
"""A variable is read as ``vars.<name>``: a name is an identifier, as a node id is."""


MAX_BACKOFF_S = 3600.0
"""A retry never waits longer than an hour (SPEC section 8)."""


class _Strict(BaseModel):
    # Unknown keys are an error: a misspelt "retries" must not be silently ignored.
    # Infinity and NaN (Python's json reads them) are no number of seconds.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class RetryPolicy(_Strict):
    attempts: int = Field(1, ge=1, le=100, description="Total tries, including the first.")
    backoff: float = Field(
        0.0, ge=0, le=MAX_BACKOFF_S, description="Delay before the second try, in seconds."
    )
    max_backoff: float | None = Field(
        None, gt=0, le=MAX_BACKOFF_S, description="Cap of the doubling delay."
    )

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before ``attempt`` (2 = the first retry)."""
        # attempts <= 100, so the doubling stays finite; the cap keeps it within the hour
        delay: float = self.backoff * 2.0 ** max(attempt - 2, 0)
        return min(delay, self.max_backoff if self.max_backoff is not None else MAX_BACKOFF_S)


class NodeDef(_Strict):
    id: str = Field(pattern=NODE_ID_PATTERN)
    type: str = Field(min_length=1)
    name: str | None = None
    description: str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    timeout: float | None = Field(None, gt=0, description="Seconds per attempt.")
    retry: RetryPolicy | None = None
    on_error: OnError = "fail"
    default_output: Any = None
    metadata: dict[str, Any] = Field(default_factory=dict, description="Free-form (UI position).")


class EdgeDef(_Strict):
    source: str
    target: str
    branch: str | None = Field(None, min_length=1)
    recursive: bool = Field(
        False,
        description="Closes a cycle (FastGPT's recursive edge): when it is active, its target "
        "runs again, and the nodes after it; bounded by `max_run_times`.",
    )


class WorkflowDefinition(_Strict):
    id: str = Field(min_length=1, max_length=200)
    name: str | None = None
    description: str | None = None
    version: int = 1
    input_schema: dict[str, Any] | None = None
    variables: dict[VariableName, Any] = Field(
        default_factory=dict,
        description="Execution variables and their defaults: read as `vars.<name>`, set by "
        "`set_variables` nodes (SPEC section 9).",
    )
    max_parallel: int = Field(16, ge=1, le=1024)
    max_run_times: int = Field(
        500,
        ge=1,
        le=100_000,
        description="With recursive edges: node runs in all (a skip counts a tenth); past it "
        "nothing more runs (FastGPT's maxRunTimes).",
    )
    nodes: list[NodeDef] = Field(min_length=1)
    edges: list[EdgeDef] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
