"""Workflow definitions: the model, the validator, the expression language."""

from workflow_engine.definition.model import EdgeDef, NodeDef, RetryPolicy, WorkflowDefinition

__all__ = ["EdgeDef", "NodeDef", "RetryPolicy", "WorkflowDefinition"]
