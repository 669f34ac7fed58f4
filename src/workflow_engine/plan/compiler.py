"""What compiles definitions: a node registry, the expression engine, the limits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from workflow_engine.definition.expressions import ExpressionEngine
from workflow_engine.definition.model import WorkflowDefinition
from workflow_engine.definition.validate import Limits
from workflow_engine.nodes.registry import NodeRegistry
from workflow_engine.plan.plan import WorkflowPlan, compile_workflow


class Compiler:
    def __init__(
        self,
        registry: NodeRegistry | None = None,
        *,
        expressions: ExpressionEngine | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.registry = registry if registry is not None else NodeRegistry.default()
        self.expressions = expressions if expressions is not None else ExpressionEngine()
        self.limits = limits or Limits()

    def compile(self, definition: Mapping[str, Any] | WorkflowDefinition) -> WorkflowPlan:
        """Validate and compile; raises ``DefinitionError`` listing every problem."""
        return compile_workflow(definition, self.registry, self.expressions, self.limits)
