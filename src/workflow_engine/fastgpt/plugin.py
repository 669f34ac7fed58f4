"""The node types a translated FastGPT graph runs, as the ``workflow_engine.nodes`` entry
point loads them (``pyproject.toml``)."""

from __future__ import annotations

from workflow_engine.fastgpt.nodes import FASTGPT_TYPES, FastGptNode
from workflow_engine.fastgpt.tools import TOOL_TYPES

NODE_TYPES: tuple[type[FastGptNode], ...] = (*FASTGPT_TYPES, *TOOL_TYPES)
