"""Node types: the contract, the registry, the built-ins."""

from workflow_engine.nodes.base import NodeContext, NodeInputs, NodeType
from workflow_engine.nodes.registry import NodeRegistry, PluginError

__all__ = ["NodeContext", "NodeInputs", "NodeRegistry", "NodeType", "PluginError"]
