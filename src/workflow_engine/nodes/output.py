"""``output``: the value that becomes the execution's result."""

from __future__ import annotations

from workflow_engine.nodes.transform import TransformNode


class OutputNode(TransformNode):
    type_name = "output"
    description = "Outputs `value`; it also becomes the execution result."
