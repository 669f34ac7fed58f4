"""FastGPT's node types come as a plugin (an entry point the default registry loads)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from workflow_engine.engine.executor import Executor
from workflow_engine.nodes.registry import NodeRegistry


@pytest.fixture
async def executor() -> AsyncIterator[Executor]:
    async with Executor(NodeRegistry.default()) as ex:
        yield ex
