from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from workflow_engine.engine.executor import Executor
from workflow_engine.nodes.base import NodeContext, NodeInputs, NodeType
from workflow_engine.nodes.registry import NodeRegistry, PluginError


class GreetInputs(NodeInputs):
    name: str


async def test_decorator_registers_a_custom_type() -> None:
    registry = NodeRegistry.with_builtins()

    @registry.register
    class Greet(NodeType[GreetInputs]):
        type_name = "greet"
        Inputs = GreetInputs

        async def run(self, ctx: NodeContext, inputs: GreetInputs) -> Any:
            return f"hi {inputs.name} from {ctx.node_id}"

    async with Executor(registry) as executor:
        plan = executor.compile(
            {"id": "g", "nodes": [{"id": "g1", "type": "greet", "inputs": {"name": "ada"}}]}
        )
        outcome = await executor.run(plan)
    assert outcome.result == {"g1": "hi ada from g1"}
    assert "greet" in registry.names()


def test_duplicate_names_are_refused_unless_replacing() -> None:
    registry = NodeRegistry.with_builtins()

    class Other(NodeType[GreetInputs]):
        type_name = "echo"
        Inputs = GreetInputs

        async def run(self, ctx: NodeContext, inputs: GreetInputs) -> Any:
            return None

    with pytest.raises(PluginError, match="already registered"):
        registry.register(Other)
    registry.register(Other, replace=True)
    assert isinstance(registry.get("echo"), Other)


def test_registries_do_not_share_state() -> None:
    a, b = NodeRegistry.with_builtins(), NodeRegistry.with_builtins()

    class Only(NodeType[GreetInputs]):
        type_name = "only_in_a"
        Inputs = GreetInputs

        async def run(self, ctx: NodeContext, inputs: GreetInputs) -> Any:
            return None

    a.register(Only)
    assert "only_in_a" in a
    assert "only_in_a" not in b


PLUGIN = """
from workflow_engine.nodes.base import NodeContext, NodeInputs, NodeType

class ShoutInputs(NodeInputs):
    text: str

class Shout(NodeType[ShoutInputs]):
    type_name = "shout"
    Inputs = ShoutInputs

    async def run(self, ctx: NodeContext, inputs: ShoutInputs) -> str:
        return inputs.text.upper()
"""


def install_plugin(root: Path, entry: str) -> None:
    """A real installed distribution on sys.path, with an entry point in our group."""
    (root / "wfe_shout.py").write_text(PLUGIN)
    dist = root / "wfe_shout-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: wfe-shout\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[workflow_engine.nodes]\nshout = {entry}\n")


async def test_entry_point_plugins_are_discovered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(tmp_path, "wfe_shout:Shout")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = NodeRegistry.default()
    assert "shout" in registry
    async with Executor(registry) as executor:
        plan = executor.compile(
            {"id": "p", "nodes": [{"id": "s", "type": "shout", "inputs": {"text": "hey"}}]}
        )
        assert (await executor.run(plan)).result == {"s": "HEY"}
    sys.modules.pop("wfe_shout", None)


def test_a_broken_plugin_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_plugin(tmp_path, "wfe_shout:Missing")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match="cannot load node type plugin 'wfe_shout:Missing'"):
        NodeRegistry.default()
    sys.modules.pop("wfe_shout", None)
