"""``condition``: pick the first branch whose ``when`` holds, else ``default``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from pydantic import Field, field_validator

from workflow_engine.definition.budget import OverBudget
from workflow_engine.errors import NodeError
from workflow_engine.nodes.base import NodeContext, NodeInputs, NodeType


class Branch(NodeInputs):
    name: str = Field(min_length=1)
    when: str = Field(min_length=1, description="A bare expression, e.g. `inputs.total > 100`.")


class ConditionInputs(NodeInputs):
    branches: list[Branch] = Field(min_length=1)
    default: str = Field("else", min_length=1)

    @field_validator("branches")
    @classmethod
    def _unique_names(cls, branches: list[Branch]) -> list[Branch]:
        counts = Counter(b.name for b in branches)  # (not list.count: quadratic, ~4 s for 20,000)
        duplicates = sorted(n for n, count in counts.items() if count > 1)
        if duplicates:
            raise ValueError(f"branch names must be unique; repeated: {', '.join(duplicates)}")
        return branches


class ConditionNode(NodeType[ConditionInputs]):
    type_name = "condition"
    description = "Chooses the first branch whose `when` is true, else `default`."
    Inputs = ConditionInputs
    pure = True
    chooses_branch = True
    bare_expression_fields = frozenset({"branches[*].when"})

    async def run(self, ctx: NodeContext, inputs: ConditionInputs) -> Any:
        try:
            with ctx.expressions.limit():  # every branch in one budget: the loop waits no longer
                for branch in inputs.branches:
                    if ctx.evaluate(branch.when):
                        return {"branch": branch.name}
        except OverBudget:  # (landed between two evaluations: a BaseException, not the node's)
            raise NodeError(
                f"node '{ctx.node_id}': its conditions used up their CPU budget",
                retryable=False,
                error_type="expression_limit",
            ) from None
        return {"branch": inputs.default}

    def declared_branches(self, inputs: Mapping[str, Any]) -> set[str] | None:
        branches = inputs.get("branches")
        names: set[str] = {str(inputs.get("default", "else"))}
        if isinstance(branches, list):
            names.update(str(b["name"]) for b in branches if isinstance(b, dict) and "name" in b)
        return names
