"""A definition compiled for execution against a node registry: validated once, node types
looked up, templates compiled, the graph's order precomputed. The API compiles to validate a
submission, the worker to run it; both go through a ``PlanCache``."""

from workflow_engine.plan.cache import PlanCache, definition_digest
from workflow_engine.plan.compiler import Compiler
from workflow_engine.plan.plan import NodePlan, PureNodes, WorkflowPlan, compile_workflow

__all__ = [
    "Compiler",
    "NodePlan",
    "PlanCache",
    "PureNodes",
    "WorkflowPlan",
    "compile_workflow",
    "definition_digest",
]
