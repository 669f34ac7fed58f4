"""What a run ends with: the outcome. Wire form is camelCase."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from workflow_engine.vocabulary import ExecutionError, ExecutionStatus, NodeResult, Progress, iso

USAGE_KEYS = ("promptTokens", "completionTokens", "totalTokens")


def add_usage(total: dict[str, int] | None, used: dict[str, Any] | None) -> dict[str, int] | None:
    """``total`` with the token counts of ``used`` added (None + None: None)."""
    if used is None:
        return total
    total = total if total is not None else dict.fromkeys(USAGE_KEYS, 0)
    for key in USAGE_KEYS:
        value = used.get(key)
        count = value if isinstance(value, int) and not isinstance(value, bool) else 0
        total[key] = min(total[key] + max(count, 0), MAX_TOKENS)
    return total


@dataclass(slots=True)
class ExecutionOutcome:
    execution_id: str
    workflow_id: str
    status: ExecutionStatus
    result: Any
    error: ExecutionError | None
    nodes: dict[str, NodeResult]
    progress: Progress
    started_at: float
    completed_at: float
    metadata: dict[str, Any] = field(default_factory=dict)
    parked: dict[str, float | None] = field(default_factory=dict)
    """When ``waiting``: the parked nodes and when each wants to resume (None: on an answer)."""
    released: bool = False
    """Stopped by ``WorkflowRun.release``: the run is to be resumed elsewhere, not ended."""
    variables: dict[str, Any] | None = None
    """The execution variables at the end (SPEC section 9); None when none is declared."""
    body_usage: dict[str, int] | None = None
    """What the ``llm`` nodes of its loops' iterations used (``nodes`` holds this run's own)."""

    @property
    def ok(self) -> bool:
        return self.status is ExecutionStatus.COMPLETED

    @property
    def resume_at(self) -> float | None:
        """The earliest time a parked node wants to resume; None when all wait for answers."""
        times = [t for t in self.parked.values() if t is not None]
        return min(times) if times else None

    @property
    def usage(self) -> dict[str, int] | None:
        """What the ``llm`` nodes (and FastGPT's model nodes) used, summed (SPEC section 9); None
        when none reported any."""
        total = add_usage(None, self.body_usage)
        for node in self.nodes.values():
            used = node.output.get("usage") if isinstance(node.output, dict) else None
            if _uses_models(node.node_type) and isinstance(used, dict):
                total = add_usage(total, used)
        return total

    @property
    def error_dict(self) -> dict[str, Any] | None:
        """``error`` in its wire form."""
        return None if self.error is None else self.error.to_dict()

    def to_dict(self, *, nodes: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "executionId": self.execution_id,
            "workflowId": self.workflow_id,
            "status": str(self.status),
            "result": self.result,
            "error": self.error_dict,
            "progress": self.progress.to_dict(),
            "startedAt": iso(self.started_at),
            "completedAt": iso(self.completed_at),
        }
        usage = self.usage
        if usage is not None:
            data["usage"] = usage
        if self.variables is not None:
            data["variables"] = self.variables
        if nodes:
            data["nodes"] = [n.to_dict() for n in self.nodes.values()]
        return data


MODEL_NODE_TYPES: frozenset[str] = frozenset(
    {
        "llm",
        "fastgpt.chatNode",
        "fastgpt.classifyQuestion",
        "fastgpt.contentExtract",
        "fastgpt.tools",
    }
)
"""The node types whose output ``usage`` is what a model server reported (no other node's
output counts: a code node or a user's answer could say anything)."""
MAX_TOKENS = 2**53


def _uses_models(node_type: str) -> bool:
    return node_type in MODEL_NODE_TYPES
