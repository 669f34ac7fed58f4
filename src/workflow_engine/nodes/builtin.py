"""The first set of built-in node types."""

from __future__ import annotations

from typing import Any

from workflow_engine.nodes.base import NodeType
from workflow_engine.nodes.code import CodeNode
from workflow_engine.nodes.condition import ConditionNode
from workflow_engine.nodes.delay import DelayNode
from workflow_engine.nodes.echo import EchoNode
from workflow_engine.nodes.fail import FailNode
from workflow_engine.nodes.http import HttpNode
from workflow_engine.nodes.llm import LlmNode
from workflow_engine.nodes.loop import LoopNode
from workflow_engine.nodes.output import OutputNode
from workflow_engine.nodes.set_variables import SetVariablesNode
from workflow_engine.nodes.transform import TransformNode
from workflow_engine.nodes.wait_input import WaitInputNode
from workflow_engine.nodes.workflow import WorkflowNode

BUILTIN_TYPES: tuple[type[NodeType[Any]], ...] = (
    TransformNode,
    OutputNode,
    ConditionNode,
    HttpNode,
    DelayNode,
    EchoNode,
    FailNode,
    WaitInputNode,
    CodeNode,
    LlmNode,
    SetVariablesNode,
    LoopNode,
    WorkflowNode,
)
